// The internal protocol under malformed input, against the real cc and nc (simulated) and the clc's
// /wire: envelopes signed with the right key but holding any operation, any typed value and broken
// XML; damaged signatures, timestamps, nonces and versions. Every reply must be a wire Fault with a 4xx
// (or the operation's response), the daemons must stay up with bounded RSS and serve correctly after.
// The codec itself is checked in-process too (decode never throws anything but WireDecodeError,
// encode → decode round-trips every value).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cc, decodeDocument, encodeEnvelope, encodeValue, HDR, newNonce, nc, sign, WireClient, WireDecodeError, WIRE_PATH, WIRE_VERSION, type WireValue } from '@mallee/wire';
import { alive, expectNoProblem, params, rssOf, send, sendableHeader, startFuzzCloud, wireReplyProblem, type FuzzCloud, type RawRequest } from './helpers/harness.js';

let f: FuzzCloud;
let rssBefore: { cc: number; nc: number };
beforeAll(async () => {
  f = await startFuzzCloud();
  rssBefore = { cc: rssOf(f.pid('cc')), nc: rssOf(f.pid('nc')) };
});
afterAll(async () => {
  await f?.stop();
});

interface Peer { name: 'cc' | 'nc' | 'clc'; url: () => string; from: string; key: () => string; ops: string[] }
const peers = (): Peer[] => [
  { name: 'cc', url: () => f.ccUrl, from: 'clc', key: () => f.key('cloud'), ops: ['RunInstances', 'TerminateInstances', 'DescribeInstances', 'RebootInstances', 'GetConsoleOutput', 'DescribeResources', 'RegisterNode', 'DeregisterNode', 'DescribeNodes'] },
  { name: 'nc', url: () => f.ncUrl, from: 'cc', key: () => f.key('node'), ops: ['ncRunInstance', 'ncTerminateInstance', 'ncDescribeInstances', 'ncDescribeResource', 'ncRebootInstance', 'ncGetConsoleOutput'] },
  { name: 'clc', url: () => f.ec2Url, from: 'admin', key: () => f.key('admin'), ops: ['DescribeServices', 'DescribeAccounts', 'DescribeProperties', 'DescribeClusters'] },
];

/** Values of every wire type, shaped like the real operations' fields often enough to get past the first check. */
const scalar: fc.Arbitrary<WireValue> = fc.oneof(
  fc.string({ maxLength: 30 }), fc.constantFrom('', 'i-00000000', 'm1.small', 'running', 'http://127.0.0.1:1/', 'emi-00000000', '__proto__', 'constructor'),
  fc.integer({ min: -2, max: 1_000_000 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null),
);
const FIELDS = ['instances', 'instanceId', 'instanceIds', 'minCount', 'force', 'vmTypes', 'node', 'url', 'spec', 'vmType', 'name', 'cores', 'memoryMiB', 'diskGiB', 'imageId', 'ownerId', 'reservationId', 'keyName', 'userData', 'prefix', 'zone', '__proto__', 'x'];
const value: fc.Arbitrary<WireValue> = fc.letrec<{ v: WireValue }>((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(fc.constantFrom(...FIELDS), tie('v'), { maxKeys: 5 })),
})).v;

function signed(peer: Peer, body: string, over: Partial<Record<'from' | 'timestamp' | 'nonce' | 'version' | 'signature' | 'requestId', string>> = {}): RawRequest {
  const timestamp = over.timestamp ?? String(Date.now());
  const nonce = over.nonce ?? newNonce();
  return {
    method: 'POST',
    path: WIRE_PATH,
    headers: {
      'content-type': 'application/xml',
      [HDR.from]: over.from ?? peer.from,
      [HDR.timestamp]: timestamp,
      [HDR.nonce]: nonce,
      [HDR.version]: over.version ?? String(WIRE_VERSION),
      [HDR.requestId]: over.requestId ?? 'fuzz',
      [HDR.signature]: over.signature ?? sign(peer.key(), timestamp, nonce, WIRE_PATH, body),
    },
    body,
  };
}

async function check(peer: Peer, req: RawRequest): Promise<void> {
  if (Object.values(req.headers ?? {}).some((v) => !sendableHeader(v))) return;
  const r = await send(peer.url(), req);
  expectNoProblem(`${peer.name} ${String(req.body).slice(0, 400)} ${JSON.stringify(req.headers).slice(0, 300)}`, wireReplyProblem(r));
}

async function stillServing(): Promise<void> {
  for (const svc of ['clc', 'cc', 'nc'] as const) expect(alive(f.pid(svc)), svc).toBe(true);
  const ccc = new WireClient({ url: f.ccUrl, from: 'clc', key: f.key('cloud') });
  expect((await ccc.call(cc.DescribeNodes, {})).nodes.map((n) => n.state)).toEqual(['ENABLED']);
  const ncc = new WireClient({ url: f.ncUrl, from: 'cc', key: f.key('node') });
  expect((await ncc.call(nc.ncDescribeResource, {})).cores.max).toBeGreaterThan(0);
}

describe('wire codec (in-process)', () => {
  it('decodeDocument refuses what it cannot read with WireDecodeError only', () => {
    const xmlish = fc.array(fc.oneof(fc.constantFrom('<', '>', '/', '</', '/>', '<a>', '</a>', '<a t="s">', '<a t="l">', '<item>', '</item>', '<a t="n">', '<a t="b64">', '<a t="zz">', '<!DOCTYPE', '<![CDATA[', ']]>', '&amp;', '&#0;', '&#xFFFF;', '&bogus;', '<?xml?>', '"', '=', ' t="s"', '<Envelope>', '<Body>'), fc.string({ maxLength: 5 })), { maxLength: 30 }).map((p) => p.join(''));
    fc.assert(fc.property(xmlish, (x) => {
      try {
        decodeDocument(x);
      } catch (e) {
        if (!(e instanceof WireDecodeError)) throw e;
      }
    }), params(3000));
  });

  it('every encodable value round-trips', () => {
    const encodable = value.filter((v) => v !== null && v !== undefined);
    fc.assert(fc.property(encodable, (v) => {
      const [node] = decodeDocument(encodeValue('V', v));
      // null list items stay null; struct fields that were null are dropped (absent), as the encoder writes them.
      const drop = (x: WireValue): WireValue => (Array.isArray(x) ? x.map((i) => (i === null ? null : drop(i))) : x !== null && typeof x === 'object' ? Object.fromEntries(Object.entries(x).filter(([, y]) => y !== null && y !== undefined).map(([k, y]) => [k, drop(y)])) : x);
      expect(JSON.stringify(node!.value)).toBe(JSON.stringify(drop(v)));
    }), params(2000));
  });
});

describe('wire fuzzing (cc, nc, clc)', () => {
  it('authenticated envelopes with any operation and any typed body', async () => {
    const arb = fc.tuple(fc.constantFrom(...peers()), fc.nat(), fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 6 }), fc.boolean());
    await fc.assert(fc.asyncProperty(arb, async ([peer, i, body, known]) => {
      const op = known ? peer.ops[i % peer.ops.length]! : ['Fault', 'Envelope', 'ncRunInstanceResponse', 'x', 'Op.With.Dots'][i % 5]!;
      // Mutating operations with random fields almost always fail validation; a valid-looking RegisterNode
      // or DeregisterNode would change the cluster, so those keep their names out of reach.
      const b = op === 'RegisterNode' || op === 'DeregisterNode' ? { ...body, node: 'fuzz-not-a-node', url: 'not a url' } : body;
      await check(peer, signed(peer, encodeEnvelope(op, b as WireValue, { Version: String(WIRE_VERSION) })));
    }), params(800));
    await stillServing();
  });

  it('authenticated bodies that are broken XML', async () => {
    const broken = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.constantFrom('', '<Envelope/>', '<Envelope><Body/></Envelope>', '<Envelope><Body><A/><B/></Body></Envelope>', '<Envelope><Header/></Envelope>', '<Envelope><Body><ncDescribeResource t="l"><x/></ncDescribeResource></Body></Envelope>',
        '<Envelope><Body><ncDescribeResource t="s"><a t="n">1e999</a></ncDescribeResource></Body></Envelope>', '<!DOCTYPE x [<!ENTITY a "b">]><Envelope/>', `<Envelope><Body>${'<a t="s">'.repeat(10_000)}</Body></Envelope>`,
        `<Envelope><Body><ncDescribeInstances t="s"><instanceIds t="l">${'<item>i-1</item>'.repeat(50_000)}</instanceIds></ncDescribeInstances></Body></Envelope>`),
      fc.tuple(fc.string(), fc.nat()).map(([s, n]) => encodeEnvelope('ncDescribeResource', {}).slice(0, n % 120) + s),
    );
    await fc.assert(fc.asyncProperty(fc.constantFrom(...peers()), broken, async (peer, body) => check(peer, signed(peer, body))), params(400));
    await stillServing();
  });

  it('damaged signatures, timestamps, nonces, senders and versions are refused', async () => {
    const part = fc.constantFrom('from', 'timestamp', 'nonce', 'version', 'signature', 'replay', 'stale', 'body');
    const junk = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', '0', '-1', '1e20', 'NaN', 'admin', 'cc', 'clc', 'walrus', '00'.repeat(32), 'g'.repeat(64), String(WIRE_VERSION + 2), String(WIRE_VERSION - 2)));
    await fc.assert(fc.asyncProperty(fc.constantFrom(...peers()), part, junk, async (peer, which, v) => {
      const body = encodeEnvelope(peer.name === 'nc' ? 'ncDescribeResource' : peer.name === 'cc' ? 'DescribeNodes' : 'DescribeServices', {}, { Version: String(WIRE_VERSION) });
      const good = signed(peer, body);
      let req: RawRequest;
      if (which === 'replay') {
        await send(peer.url(), good);
        req = good;
      } else if (which === 'stale') {
        const ts = String(Date.now() - 10 * 60_000);
        const nonce = newNonce();
        req = signed(peer, body, { timestamp: ts, nonce, signature: sign(peer.key(), ts, nonce, WIRE_PATH, body) });
      } else if (which === 'body') req = { ...good, body: body.replace('</Body>', '<x/></Body>') };
      else req = signed(peer, body, { [which]: v, ...(which !== 'signature' ? { signature: good.headers![HDR.signature]! } : {}) });
      const r = await send(peer.url(), req);
      expectNoProblem(`${peer.name} ${which}=${v}`, wireReplyProblem(r));
      // Anything changed after signing, replayed or stale must not be served (an unchanged value aside).
      const unchanged = which !== 'replay' && which !== 'stale' && which !== 'body' && (good.headers as Record<string, string>)[HDR[which as 'from']] === v;
      if (!unchanged && !(which === 'version' && /^\s*[01]\s*$/.test(v))) expect(r.status, `${which}=${v}: ${r.body}`).toBeGreaterThanOrEqual(400);
    }), params(400));
    await stillServing();
  });
});

describe('cc and nc after the fuzzing', () => {
  it('kept their memory bounded and serve correctly', async () => {
    await stillServing();
    for (const svc of ['cc', 'nc'] as const) {
      const rss = rssOf(f.pid(svc));
      expect(rss - rssBefore[svc], `${svc} RSS ${Math.round(rssBefore[svc] / 2 ** 20)} → ${Math.round(rss / 2 ** 20)} MiB`).toBeLessThan(160 * 2 ** 20);
    }
  });
});
