// Wire client: signs a typed request, checks the signed reply, validates it against the operation.
import { randomUUID } from 'node:crypto';
import { currentRequestId } from '@mallee/telemetry';
import { decodeEnvelope, encodeEnvelope, sign, signaturesEqual, newNonce, HDR, WIRE_PATH, WIRE_VERSION, WireError, type Operation } from './protocol.js';
import type { WireValue } from './codec.js';

export interface WireClientOptions {
  /** Base URL of the peer, e.g. http://127.0.0.1:8774 */
  url: string;
  /** This component's id as the peer knows it (e.g. "clc", "cc:mallee-1a"). */
  from: string;
  /** Shared key, or a function returning the current one (keys can be re-issued). */
  key: Buffer | string | (() => Buffer | string);
  timeoutMs?: number;
  /** The wire version to announce (default WIRE_VERSION). */
  version?: number;
  /** Path of the peer's wire endpoint (default /wire; Walrus serves it at /_mallee/wire, clear of bucket names). */
  path?: string;
}

export class WireClient {
  constructor(private readonly opts: WireClientOptions) {}

  get url(): string {
    return this.opts.url;
  }

  async call<Req, Res>(op: Operation<Req, Res>, req: Req, ctx: { requestId?: string; timeoutMs?: number } = {}): Promise<Res> {
    const parsedReq = op.request.parse(req);
    const version = String(this.opts.version ?? WIRE_VERSION);
    const body = encodeEnvelope(op.name, parsedReq as WireValue, { Version: version });
    const key = typeof this.opts.key === 'function' ? this.opts.key() : this.opts.key;
    const timestamp = String(Date.now());
    const nonce = newNonce();
    // The user request being served (EC2 action or wire operation) lends its id to every call it makes.
    const requestId = ctx.requestId ?? currentRequestId() ?? randomUUID();
    const path = this.opts.path ?? WIRE_PATH;
    const init: RequestInit = {
      method: 'POST',
      headers: {
        'content-type': 'application/xml',
        [HDR.from]: this.opts.from,
        [HDR.timestamp]: timestamp,
        [HDR.nonce]: nonce,
        [HDR.version]: version,
        [HDR.requestId]: requestId,
        [HDR.signature]: sign(key, timestamp, nonce, path, body),
      },
      body,
      signal: AbortSignal.timeout(ctx.timeoutMs ?? this.opts.timeoutMs ?? 30_000),
    };
    let res: Response;
    try {
      res = await fetch(new URL(path, this.opts.url), init).catch((e: unknown) => {
        // A kept-alive connection the peer closed (it restarted) fails before any answer: send the
        // same signed message once more on a new one. Had the peer seen it, its replay guard refuses it.
        if (!closedConnection(e)) throw e;
        return fetch(new URL(path, this.opts.url), init);
      });
    } catch (e) {
      throw new WireError('ServiceUnavailable', `${this.opts.url} unreachable for ${op.name}: ${(e as Error).message}`, 503);
    }
    const text = await res.text();
    const replySig = res.headers.get(HDR.signature) ?? '';
    const replyTs = res.headers.get(HDR.timestamp) ?? '';
    // Refusals of our own signature come back unsigned: the peer could not trust us, so it says why plainly.
    const trusted = signaturesEqual(replySig, sign(key, replyTs, nonce, path, text));
    let env;
    try {
      env = decodeEnvelope(text);
    } catch {
      throw new WireError('InvalidReply', `${op.name}: ${res.status} from ${this.opts.url} with an unreadable body`, 502);
    }
    if (env.fault) {
      if (!trusted && !(UNSIGNED_REFUSALS.has(env.fault.code) && res.status >= 400 && res.status < 500)) throw new WireError('InvalidReply', `${op.name}: unsigned fault from ${this.opts.url}`, 502);
      throw new WireError(env.fault.code, env.fault.message, res.status);
    }
    if (!trusted) throw new WireError('InvalidReply', `${op.name}: reply signature from ${this.opts.url} does not verify`, 502);
    const parsed = op.response.safeParse(env.body);
    if (!parsed.success) throw new WireError('InvalidReply', `${op.name}: reply does not match its schema: ${parsed.error.message}`, 502);
    return parsed.data;
  }
}

/** What a receiver refuses before it can trust the sender (so unsigned): only ever a failure, safe to report as such. */
const UNSIGNED_REFUSALS = new Set(['UnsupportedVersion', 'UnknownComponent', 'SignatureDoesNotMatch', 'StaleRequest']);

function closedConnection(e: unknown): boolean {
  const cause = (e as { cause?: { code?: string } } | undefined)?.cause;
  return cause?.code === 'UND_ERR_SOCKET' || cause?.code === 'ECONNRESET';
}
