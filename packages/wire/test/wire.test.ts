import { describe, it, expect, afterEach } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { z } from 'zod';
import { wire, handler, WireClient, WireError, defineOperation, encodeValue, decodeDocument, sign, HDR, WIRE_PATH, encodeEnvelope, mapTargetSecret, volumeTarget, WIRE_VERSION, wireVersionFrom, type WireHandler } from '../src/index.js';

const Echo = defineOperation('Echo',
  z.object({ text: z.string(), n: z.number(), flag: z.boolean(), list: z.array(z.object({ k: z.string() })), opt: z.string().optional() }),
  z.object({ text: z.string(), n: z.number(), flag: z.boolean(), list: z.array(z.object({ k: z.string() })) }));
const Boom = defineOperation('Boom', z.object({}), z.object({}));

const KEY = 'k'.repeat(64);
let app: FastifyInstance | undefined;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function serve(opts: { version?: number; handlers?: WireHandler<any, any>[] } = {}): Promise<string> {
  app = Fastify({ logger: false });
  await app.register(wire, {
    keyFor: (from) => (from === 'clc' ? KEY : undefined),
    handlers: opts.handlers ?? [
      handler(Echo, (req) => ({ text: req.text, n: req.n, flag: req.flag, list: req.list })),
      handler(Boom, () => { throw new WireError('InsufficientInstanceCapacity', 'no room'); }),
    ],
    ...(opts.version !== undefined ? { version: opts.version } : {}),
  });
  return app.listen({ port: 0, host: '127.0.0.1' });
}

afterEach(async () => { await app?.close(); app = undefined; });

describe('wire codec', () => {
  it('round-trips strings with markup, control characters, numbers, booleans, empty and one-element lists', () => {
    const value = { a: '<b>&"x"\'', ctl: 'bell\u0007\r\n', n: -1.5, t: true, f: false, one: [{ k: '' }], none: [], nested: { deep: ['x'] } };
    const [node] = decodeDocument(encodeValue('V', value));
    expect(node!.value).toEqual(value);
  });

  it('refuses mismatched tags, lists of non-items and bad numbers', () => {
    expect(() => decodeDocument('<a t="s"><b>x</c></a>')).toThrow(/malformed/);
    expect(() => decodeDocument('<a t="l"><b>x</b></a>')).toThrow(/item/);
    expect(() => decodeDocument('<a t="n">1e</a>')).toThrow(/number/);
    expect(() => decodeDocument('<a t="s"><b>x</b>')).toThrow(/malformed/);
  });

  it('decodes a 10,000-instance reply intact', () => {
    const instances = Array.from({ length: 10_000 }, (_, i) => ({ instanceId: `i-${i}`, state: 'running', vmType: { name: 'm1.small', cores: 1, memoryMiB: 512, diskGiB: 5 } }));
    const xml = encodeValue('R', { instances });
    const [node] = decodeDocument(xml);
    expect((node!.value as { instances: unknown[] }).instances).toEqual(instances);
  });

  it('refuses DTDs (entity expansion)', () => {
    expect(() => decodeDocument('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')).toThrow(/DTD/);
  });
});

describe('wire protocol', () => {
  it('carries a typed request and a signed, typed reply', async () => {
    const url = await serve();
    const client = new WireClient({ url, from: 'clc', key: KEY });
    const req = { text: 'héllo <x>', n: 42, flag: false, list: [{ k: 'only one' }] };
    expect(await client.call(Echo, req)).toEqual(req);
  });

  it('surfaces a handler error code to the caller', async () => {
    const client = new WireClient({ url: await serve(), from: 'clc', key: KEY });
    await expect(client.call(Boom, {})).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
  });

  it('refuses a wrong key and an unknown sender', async () => {
    const url = await serve();
    await expect(new WireClient({ url, from: 'clc', key: 'x'.repeat(64) }).call(Boom, {})).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(new WireClient({ url, from: 'intruder', key: KEY }).call(Boom, {})).rejects.toMatchObject({ code: 'UnknownComponent' });
  });

  it('refuses a replayed message and a stale timestamp', async () => {
    const url = await serve();
    const body = encodeEnvelope('Boom', {});
    const post = (ts: string, nonce: string) => fetch(url + WIRE_PATH, {
      method: 'POST', body,
      headers: { 'content-type': 'application/xml', [HDR.from]: 'clc', [HDR.timestamp]: ts, [HDR.nonce]: nonce, [HDR.version]: String(WIRE_VERSION), [HDR.signature]: sign(KEY, ts, nonce, WIRE_PATH, body) },
    });
    const ts = String(Date.now());
    const nonce = 'ab'.repeat(16);
    expect((await post(ts, nonce)).status).toBe(400); // reaches the handler: InsufficientInstanceCapacity
    const replay = await post(ts, nonce);
    expect(replay.status).toBe(403);
    expect(await replay.text()).toContain('replayed');
    const stale = await post(String(Date.now() - 10 * 60_000), 'cd'.repeat(16));
    expect(await stale.text()).toContain('clock skew');
  });

  it('answers malformed envelopes with a fault, not a crash', async () => {
    const url = await serve();
    const body = '<Envelope><Body><Echo t="s"><n t="n">oops</n></Echo></Body>';
    const ts = String(Date.now());
    const nonce = 'ef'.repeat(16);
    const res = await fetch(url + WIRE_PATH, { method: 'POST', body, headers: { 'content-type': 'application/xml', [HDR.from]: 'clc', [HDR.timestamp]: ts, [HDR.nonce]: nonce, [HDR.version]: '1', [HDR.signature]: sign(KEY, ts, nonce, WIRE_PATH, body) } });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/<Fault/);
  });
});

// The same operation as a build one version newer defines it: a field more in the request and the reply.
// New fields are optional (the rule that makes one version of skew work: never rename or require).
const EchoV2 = defineOperation('Echo',
  z.object({ text: z.string(), n: z.number(), flag: z.boolean(), list: z.array(z.object({ k: z.string() })), opt: z.string().optional(), priority: z.number().optional() }),
  z.object({ text: z.string(), n: z.number(), flag: z.boolean(), list: z.array(z.object({ k: z.string() })), servedBy: z.string().optional() }));

describe('wire version skew', () => {
  const req = { text: 't', n: 1, flag: true, list: [] };
  const codeOf = (p: Promise<unknown>) => p.then(() => 'accepted', (e: unknown) => (e as WireError).code);

  it('a component speaking version N talks to peers speaking N-1 and N+1, and refuses N-2 and N+2 with UnsupportedVersion', async () => {
    const N = 5;
    const url = await serve({ version: N });
    const at = (version: number) => codeOf(new WireClient({ url, from: 'clc', key: KEY, version }).call(Echo, req));
    expect(await Promise.all([N - 2, N - 1, N, N + 1, N + 2].map(at))).toEqual(['UnsupportedVersion', 'accepted', 'accepted', 'accepted', 'UnsupportedVersion']);
    const refused = await new WireClient({ url, from: 'clc', key: KEY, version: N + 2 }).call(Echo, req).catch((e: Error) => e.message);
    expect(refused).toMatch(/speaks 5 and accepts 4\.\.6: upgrade the older side/);
  });

  it("fields a newer peer adds are ignored by an older receiver, and an older client reads a newer receiver's reply", async () => {
    const older = await serve({ version: 1 });
    const newer = new WireClient({ url: older, from: 'clc', key: KEY, version: 2 });
    expect(await newer.call(EchoV2, { ...req, priority: 9 })).toEqual(req); // the older side never saw priority, and sent no servedBy
    await app!.close();
    const newerUrl = await serve({ version: 2, handlers: [handler(EchoV2, (r) => ({ text: r.text, n: r.n, flag: r.flag, list: r.list, servedBy: `v2 (priority ${r.priority ?? 'none'})` }))] });
    expect(await new WireClient({ url: newerUrl, from: 'clc', key: KEY, version: 2 }).call(EchoV2, req)).toMatchObject({ servedBy: 'v2 (priority none)' });
    expect(await new WireClient({ url: newerUrl, from: 'clc', key: KEY, version: 1 }).call(Echo, req)).toEqual(req); // servedBy dropped by the older schema
  });

  it('MALLEE_WIRE_VERSION pins the version a process speaks; nonsense is refused at start', () => {
    expect(wireVersionFrom(undefined)).toBe(WIRE_VERSION);
    expect(wireVersionFrom('2')).toBe(2);
    expect(() => wireVersionFrom('two')).toThrow(/MALLEE_WIRE_VERSION/);
  });
});

describe('volume targets (iSCSI | RBD)', () => {
  const iscsi = { iqn: 'iqn.2010-05.org.mallee:sc-1.vol-1.x', portal: '10.0.0.1', port: 3260, lun: 1, chapUser: 'u', chapSecret: 'sealed' };
  const rbd = { kind: 'rbd' as const, pool: 'rbd', image: 'sc-1.vol-1', monitors: [{ host: '10.0.0.2', port: 3300 }], user: 'mallee', secret: 'sealed' };

  it('a target of the version before RBD (no kind) reads as iSCSI; an RBD target keeps its fields; half of each is refused', () => {
    expect(volumeTarget.parse(iscsi)).toEqual({ kind: 'iscsi', ...iscsi });
    expect(volumeTarget.parse(rbd)).toEqual(rbd);
    expect(volumeTarget.safeParse({ ...rbd, monitors: [] }).success).toBe(false);
    expect(volumeTarget.safeParse({ kind: 'rbd', ...iscsi }).success).toBe(false);
    // An older receiver (iSCSI only) ignores the kind a newer sender adds to an iSCSI target.
    expect(z.object({ iqn: z.string(), chapSecret: z.string() }).parse({ kind: 'iscsi', ...iscsi })).toEqual({ iqn: iscsi.iqn, chapSecret: 'sealed' });
  });

  it('mapTargetSecret maps the CHAP secret of an iSCSI target and the cephx key of an RBD one, nothing else', () => {
    const up = (s: string) => s.toUpperCase();
    expect(mapTargetSecret(volumeTarget.parse(iscsi), up)).toEqual({ kind: 'iscsi', ...iscsi, chapSecret: 'SEALED' });
    expect(mapTargetSecret(volumeTarget.parse(rbd), up)).toEqual({ ...rbd, secret: 'SEALED' });
  });
});
