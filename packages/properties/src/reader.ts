// A daemon's view of the cloud properties that concern it: DescribeProperties from the clc (filtered
// by prefix, and by zone for per-zone ones), cached for a short TTL. A clc that does not answer does
// not stop the daemon: it keeps the last values it had, or until it had any, its own mallee.conf
// settings and the built-in defaults (defaultFor), and asks again after a short back-off.
import type { MalleeConfig } from '@mallee/config';
import { WireClient, properties as ops } from '@mallee/wire';
import { defaultFor, type PropertyDefinition } from './define.js';

export type FetchProperties = () => Promise<ops.PropertyValue[]>;

export interface PropertyReaderOptions {
  fetch: FetchProperties;
  /** How long fetched values are used before asking again (default 10 s). */
  ttlMs?: number;
  /** After a failed fetch, how long before trying again (default min(ttl, 5 s)). */
  retryMs?: number;
  /** This host's mallee.conf: the fallback while the clc has not answered. */
  config?: MalleeConfig;
  /**
   * Only values the admin set at the clc count; an unset property takes this host's mallee.conf (or the
   * built-in default), not the clc host's. For daemons that may run on another host than the clc and
   * whose conf the property replaces (the cc's SCHEDPOLICY).
   */
  ownConfUnlessSet?: boolean;
  onError?: (err: Error) => void;
}

export class PropertyReader {
  private values = new Map<string, { value: string; source: ops.PropertyValue['source'] }>();
  private fetchedAt = -Infinity;
  private failedAt = -Infinity;
  private inflight: Promise<void> | undefined;
  private lastError: Error | undefined;

  constructor(private readonly o: PropertyReaderOptions) {}

  /** The property's current value (fetching when the cached set is older than the TTL). */
  async get<T>(def: PropertyDefinition<T>): Promise<T> {
    await this.refresh();
    return this.peek(def);
  }

  /** The value from the last fetch, without asking the clc (the fallback when there was none). */
  peek<T>(def: PropertyDefinition<T>): T {
    const got = this.values.get(def.name);
    const text = got && (!this.o.ownConfUnlessSet || got.source === 'set') ? got.value : undefined;
    if (text !== undefined) {
      try {
        return def.parse(text);
      } catch {
        // a value this build cannot read (a newer clc's type): fall back as if unset
      }
    }
    return defaultFor(def, this.o.config).value;
  }

  /** Whether the values come from the clc (false until a fetch succeeded), and the last failure. */
  status(): { fresh: boolean; fetchedAt?: number; lastError?: string } {
    return {
      fresh: Number.isFinite(this.fetchedAt),
      ...(Number.isFinite(this.fetchedAt) ? { fetchedAt: this.fetchedAt } : {}),
      ...(this.lastError ? { lastError: this.lastError.message } : {}),
    };
  }

  /** Forget the cached values' age so the next get asks the clc (after a change the caller knows of). */
  invalidate(): void {
    this.fetchedAt = -Infinity;
    this.failedAt = -Infinity;
  }

  private refresh(): Promise<void> {
    const now = Date.now();
    const ttl = this.o.ttlMs ?? 10_000;
    if (now - this.fetchedAt < ttl || now - this.failedAt < (this.o.retryMs ?? Math.min(ttl, 5000))) return Promise.resolve();
    this.inflight ??= this.o.fetch().then(
      (list) => {
        this.values = new Map(list.map((p) => [p.name, { value: p.value, source: p.source }]));
        this.fetchedAt = Date.now();
        this.lastError = undefined;
      },
      (err: unknown) => {
        this.failedAt = Date.now();
        this.lastError = err instanceof Error ? err : new Error(String(err));
        this.o.onError?.(this.lastError);
      },
    ).finally(() => (this.inflight = undefined));
    return this.inflight;
  }
}

export interface WireReaderOptions extends Omit<PropertyReaderOptions, 'fetch'> {
  /** The clc's base URL. */
  clcUrl: string;
  /** This daemon's sender id with the clc (walrus, sc:<zone>, cc:<zone>) and the key the clc issued it (read per call). */
  from: string;
  key: () => string | Buffer;
  /** Only properties under this prefix, e.g. `walrus.` or `storage.`. */
  prefix?: string;
  /** For per-zone properties: the value that applies in this zone. */
  zone?: string;
  timeoutMs?: number;
}

/** A PropertyReader over the clc's DescribeProperties. */
export function clcPropertyReader(o: WireReaderOptions): PropertyReader {
  const client = new WireClient({ url: o.clcUrl, from: o.from, key: o.key, timeoutMs: o.timeoutMs ?? 5000 });
  const req = { ...(o.prefix ? { prefix: o.prefix } : {}), ...(o.zone ? { zone: o.zone } : {}) };
  return new PropertyReader({ ...o, fetch: async () => (await client.call(ops.DescribeProperties, req)).properties });
}
