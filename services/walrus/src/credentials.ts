// Who signed a request: Walrus asks the clc (LookupAccessKey over the wire) and remembers answers
// briefly, so a burst of requests costs one round trip and a revoked key stops working within the TTL.
import type { CredentialLookup } from '@mallee/aws-protocol';
import { WireClient, walrus } from '@mallee/wire';

type Found = Awaited<ReturnType<CredentialLookup>>;

export interface CachedLookupOptions {
  ttlMs?: number;
  /** How long an unknown key stays unknown before asking again. */
  negativeTtlMs?: number;
  maxEntries?: number;
}

/** Wraps a lookup with a small TTL cache; concurrent lookups of one key share a request. */
export function cachedLookup(inner: CredentialLookup, opts: CachedLookupOptions = {}): CredentialLookup {
  const ttl = opts.ttlMs ?? 30_000;
  const negativeTtl = opts.negativeTtlMs ?? 5_000;
  const max = opts.maxEntries ?? 10_000;
  const cache = new Map<string, { at: number; value: Promise<Found> }>();
  return (accessKeyId) => {
    const now = Date.now();
    const hit = cache.get(accessKeyId);
    if (hit && now - hit.at < ttl) return hit.value;
    const value = Promise.resolve(inner(accessKeyId));
    if (cache.size >= max) cache.clear();
    cache.set(accessKeyId, { at: now, value });
    value.then(
      (found) => {
        if (found === undefined) cache.set(accessKeyId, { at: now - ttl + negativeTtl, value });
      },
      () => cache.delete(accessKeyId),
    );
    return value;
  };
}

export interface ClcLookupOptions {
  clcUrl: string;
  /** The key the clc issued to Walrus (read per call, so re-registration needs no restart). */
  key: () => string | Buffer;
}

/** Credential lookup served by the clc's LookupAccessKey. */
export function clcLookup(opts: ClcLookupOptions): CredentialLookup {
  const client = new WireClient({ url: opts.clcUrl, from: walrus.WALRUS_SENDER, key: opts.key, timeoutMs: 10_000 });
  return async (accessKeyId) => {
    const { credential } = await client.call(walrus.LookupAccessKey, { accessKeyId });
    if (!credential) return undefined;
    return {
      secretAccessKey: credential.secretAccessKey,
      principal: {
        accountId: credential.accountId,
        accountName: credential.accountName,
        userId: credential.userId ?? credential.accountId,
        accessKeyId,
        isAdmin: credential.isAdmin,
      },
    };
  };
}
