// Fastify plugin serving the wire endpoint: verifies signature, skew, replay and version, decodes
// the envelope, validates the request against the operation's schema and dispatches to its handler.
import { randomUUID } from 'node:crypto';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { labelRequest, withRequestId } from '@mallee/telemetry';
import type { WireValue } from './codec.js';
import { WireDecodeError } from './codec.js';
import { decodeEnvelope, encodeEnvelope, encodeFault, sign, signaturesEqual, versionsCompatible, HDR, WIRE_PATH, WIRE_VERSION, ReplayGuard, WireError, type Operation } from './protocol.js';

export interface WireContext {
  /** The authenticated sender's component id. */
  from: string;
  requestId: string;
  log: FastifyRequest['log'];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyOperation = Operation<any, any>;

export interface WireHandler<Req, Res> {
  op: Operation<Req, Res>;
  handle(req: Req, ctx: WireContext): Promise<Res> | Res;
  /** Component ids allowed to call this operation; default: any authenticated sender. */
  allow?: (from: string) => boolean;
}

export function handler<Req, Res>(op: Operation<Req, Res>, handle: (req: Req, ctx: WireContext) => Promise<Res> | Res, allow?: (from: string) => boolean): WireHandler<Req, Res> {
  return allow ? { op, handle, allow } : { op, handle };
}

export interface WirePluginOptions {
  /** Key shared with a sender, looked up by the sender's id; undefined refuses the sender. */
  keyFor: (from: string) => Buffer | string | undefined;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  handlers: readonly WireHandler<any, any>[];
  maxSkewMs?: number;
  /** The wire version this receiver speaks (default WIRE_VERSION); it accepts one version of skew either way. */
  version?: number;
  /** Where the endpoint is served (default /wire). */
  path?: string;
}

async function wirePlugin(app: FastifyInstance, opts: WirePluginOptions): Promise<void> {
  const table = new Map(opts.handlers.map((h) => [h.op.name, h]));
  const guard = new ReplayGuard(opts.maxSkewMs ?? 5 * 60_000);
  const own = opts.version ?? WIRE_VERSION;

  app.addContentTypeParser(['application/xml', 'text/xml'], { parseAs: 'string', bodyLimit: 8 * 1024 * 1024 }, (_req, body, done) => done(null, body));

  const path = opts.path ?? WIRE_PATH;
  app.post(path, async (request, reply) => {
    const h = (name: string) => String(request.headers[name] ?? '');
    const from = h(HDR.from);
    const nonce = h(HDR.nonce);
    const refuse = (status: number, code: string, message: string) => {
      request.log.warn({ from, code }, `wire request refused: ${message}`);
      return reply.code(status).type('application/xml').send(encodeFault(code, message));
    };
    if (!versionsCompatible(own, Number(h(HDR.version) || NaN))) {
      return refuse(400, 'UnsupportedVersion', `wire version ${h(HDR.version) || '(none)'} not supported; this component speaks ${own} and accepts ${own - 1}..${own + 1}: upgrade the older side`);
    }
    const key = from ? opts.keyFor(from) : undefined;
    if (!key) return refuse(403, 'UnknownComponent', `component ${JSON.stringify(from)} is not registered here`);
    const body = typeof request.body === 'string' ? request.body : '';
    const timestamp = h(HDR.timestamp);
    if (!signaturesEqual(h(HDR.signature), sign(key, timestamp, nonce, path, body))) {
      return refuse(403, 'SignatureDoesNotMatch', 'wire signature does not verify with the registered key');
    }
    const stale = guard.check(Number(timestamp), nonce);
    if (stale) return refuse(403, 'StaleRequest', stale);

    // The caller's request id (the user request that led here), if it sent a sane one.
    const sent = h(HDR.requestId);
    const requestId = /^[A-Za-z0-9._:-]{1,128}$/.test(sent) ? sent : randomUUID();
    const log = request.log.child({ requestId, from });
    const signedReply = (status: number, xml: string) => {
      const ts = String(Date.now());
      return reply.code(status).type('application/xml').header(HDR.timestamp, ts).header(HDR.signature, sign(key, ts, nonce, path, xml)).send(xml);
    };
    let op = '(unknown)';
    try {
      const env = decodeEnvelope(body);
      op = env.op;
      const hd = table.get(op);
      if (!hd) return signedReply(400, encodeFault('InvalidAction', `operation ${op.slice(0, 100)} is not served by this component`));
      labelRequest(request, 'wire', op, requestId);
      if (hd.allow && !hd.allow(from)) return signedReply(403, encodeFault('AccessDenied', `${from} may not call ${op}`));
      const parsed = hd.op.request.safeParse(env.body);
      if (!parsed.success) return signedReply(400, encodeFault('InvalidParameterValue', `${op}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`));
      const result = await withRequestId(requestId, () => hd.handle(parsed.data, { from, requestId, log }));
      const checked = hd.op.response.parse(result);
      return signedReply(200, encodeEnvelope(`${op}Response`, checked as WireValue, { Version: String(own) }));
    } catch (e) {
      if (e instanceof WireError) return signedReply(e.status, encodeFault(e.code, e.message));
      if (e instanceof WireDecodeError) return signedReply(400, encodeFault('MalformedEnvelope', e.message));
      log.error({ err: e, op }, 'wire handler failed');
      return signedReply(500, encodeFault('InternalError', `${op} failed inside the component; see its log (request ${requestId})`));
    }
  });
}

export const wire = fp(wirePlugin, { name: 'mallee-wire', fastify: '5.x' });
