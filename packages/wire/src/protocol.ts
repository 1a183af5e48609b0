// The signed internal protocol between Mallee daemons (DESIGN.md "Internal"): an XML envelope
// POSTed to /wire, HMAC-SHA256-signed over timestamp, nonce, path and body with the key the
// receiving component issued at registration. Replies are signed with the same key.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { encodeValue, decodeDocument, WireDecodeError, escapeXml, type WireValue } from './codec.js';

/** The protocol version of this build. */
export const BUILD_WIRE_VERSION = 1;

/**
 * The version this process speaks: the build's, unless MALLEE_WIRE_VERSION pins another (a rolling
 * upgrade can keep upgraded daemons on the older version until all are upgraded; the skew tests run a
 * real daemon as a build one version newer or older would).
 */
export const WIRE_VERSION = wireVersionFrom(process.env.MALLEE_WIRE_VERSION);
/** Oldest peer version this process still talks to: one version of skew is tolerated either way. */
export const WIRE_MIN_VERSION = WIRE_VERSION - 1;

export function wireVersionFrom(text: string | undefined): number {
  if (text === undefined || text === '') return BUILD_WIRE_VERSION;
  if (!/^\d{1,6}$/.test(text)) throw new Error(`MALLEE_WIRE_VERSION must be a wire version number, not ${JSON.stringify(text)}`);
  return Number(text);
}

/** Whether a peer announcing `peer` may talk to one speaking `own` (equal, or one apart). */
export function versionsCompatible(own: number, peer: number): boolean {
  return Number.isInteger(peer) && Math.abs(own - peer) <= 1;
}
export const WIRE_PATH = '/wire';
export const HDR = {
  from: 'x-mallee-from',
  timestamp: 'x-mallee-timestamp',
  nonce: 'x-mallee-nonce',
  signature: 'x-mallee-signature',
  version: 'x-mallee-wire-version',
  requestId: 'x-mallee-request-id',
} as const;

/** One operation: its name (as in Eucalyptus), typed request and typed response. */
export interface Operation<Req, Res> {
  readonly name: string;
  readonly request: z.ZodType<Req>;
  readonly response: z.ZodType<Res>;
}

export function defineOperation<Req, Res>(name: string, request: z.ZodType<Req>, response: z.ZodType<Res>): Operation<Req, Res> {
  return { name, request, response };
}

/** A failure that crosses the wire with a code the caller can act on (e.g. InsufficientInstanceCapacity). */
export class WireError extends Error {
  constructor(public readonly code: string, message: string, public readonly status = 400) {
    super(message);
    this.name = 'WireError';
  }
}

export function sign(key: Buffer | string, timestamp: string, nonce: string, path: string, body: string): string {
  return createHmac('sha256', key).update(`${timestamp}\n${nonce}\n${path}\n`).update(body).digest('hex');
}

export function signaturesEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ba.length === bb.length && ba.length > 0 && timingSafeEqual(ba, bb);
}

export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

export function encodeEnvelope(op: string, body: WireValue, header: Record<string, string> = {}): string {
  const hdr = Object.entries(header).map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`).join('');
  const inner = encodeValue(op, body ?? {});
  return `<?xml version="1.0" encoding="UTF-8"?><Envelope xmlns="urn:mallee:wire"><Header>${hdr}</Header><Body>${inner}</Body></Envelope>`;
}

export interface DecodedEnvelope {
  op: string;
  body: WireValue;
  fault?: { code: string; message: string };
}

export function decodeEnvelope(xml: string): DecodedEnvelope {
  const roots = decodeDocument(xml).filter((n) => n.name === 'Envelope');
  if (roots.length !== 1) throw new WireDecodeError('expected one Envelope');
  const body = roots[0]!.children.find((n) => n.name === 'Body');
  if (!body) throw new WireDecodeError('Envelope has no Body');
  if (body.children.length !== 1) throw new WireDecodeError('Body must hold exactly one operation');
  const opNode = body.children[0]!;
  const op = opNode.name;
  const value = opNode.value ?? {};
  if (op === 'Fault') {
    const f = (typeof value === 'object' && !Array.isArray(value) ? value : {}) as Record<string, WireValue>;
    return { op, body: f, fault: { code: String(f.code ?? 'InternalError'), message: String(f.message ?? '') } };
  }
  return { op, body: value };
}

export function encodeFault(code: string, message: string): string {
  return encodeEnvelope('Fault', { code, message });
}

/** Remembers nonces inside the skew window so a captured message cannot be replayed. */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  /** Messages stamped before this guard existed may predate a restart that forgot their nonces. */
  readonly notBefore: number;

  constructor(private readonly windowMs: number, now = Date.now()) {
    this.notBefore = now - 1000;
  }

  /** Returns a reason to refuse, or undefined when the message is fresh. */
  check(timestampMs: number, nonce: string, now = Date.now()): string | undefined {
    if (!Number.isFinite(timestampMs)) return 'missing or malformed timestamp';
    if (Math.abs(now - timestampMs) > this.windowMs) return 'timestamp outside the allowed clock skew';
    if (timestampMs < this.notBefore) return 'message predates this process';
    if (!/^[0-9a-f]{16,64}$/.test(nonce)) return 'missing or malformed nonce';
    if (this.seen.has(nonce)) return 'replayed message';
    this.seen.set(nonce, timestampMs);
    if (this.seen.size > 10_000) this.prune(now);
    return undefined;
  }

  private prune(now: number): void {
    for (const [n, ts] of this.seen) if (Math.abs(now - ts) > this.windowMs) this.seen.delete(n);
  }
}
