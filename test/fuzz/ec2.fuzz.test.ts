// The EC2 Query endpoint under malformed input: structure-aware parameters from the botocore model
// with hostile values, byte-level damage to query strings and form bodies, damaged SigV2 and SigV4
// (header and presigned), and oversize input. Every reply must be a well-formed EC2 error envelope
// with a 4xx (or a real answer), the clc's RSS must stay bounded and it must go on serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { signV2, signV4 } from '@mallee/aws-protocol';
import { alive, ec2ReplyProblem, expectNoProblem, params, rssOf, send, sendablePath, sendableHeader, startFuzzCloud, type FuzzCloud, type RawRequest } from './helpers/harness.js';
import { damage, ec2Request, formEncode, type Pair } from './helpers/ec2-model.js';

let f: FuzzCloud;
let host: string;
let rssBefore: number;
beforeAll(async () => {
  f = await startFuzzCloud();
  host = new URL(f.ec2Url).host;
  // Warm up (JIT, caches) before the baseline.
  for (let i = 0; i < 50; i++) await send(f.ec2Url, signedPost('Action=DescribeRegions&Version=2016-11-15'));
  rssBefore = rssOf(f.pid('clc'));
});
afterAll(async () => {
  await f?.stop();
});

function signedPost(body: string, creds = f.user, date?: Date): RawRequest {
  const s = signV4({
    method: 'POST', path: '/', headers: { host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body,
    accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, region: f.region, service: 'ec2', ...(date ? { date } : {}),
  });
  return { method: 'POST', path: '/', headers: s.headers, body };
}

/** A signed GET, or unsigned when the damaged query cannot even be canonicalized (the server must still refuse it cleanly). */
function signedGet(query: string): RawRequest {
  try {
    const s = signV4({ method: 'GET', path: '/', query, headers: { host }, accessKeyId: f.user.accessKeyId, secretAccessKey: f.user.secretAccessKey, region: f.region, service: 'ec2' });
    return { method: 'GET', path: `/?${s.query}`, headers: s.headers };
  } catch {
    return { method: 'GET', path: `/?${query}`, headers: { host } };
  }
}

async function check(req: RawRequest): Promise<void> {
  if (!sendablePath(req.path) || Object.values(req.headers ?? {}).some((v) => !sendableHeader(v))) return;
  // Request lines beyond Node's 16 KiB header limit go as a POST body instead (oversize is tested on its own).
  if (req.path.length > 12_000) return;
  const r = await send(f.ec2Url, req);
  expectNoProblem(`${req.method} ${req.path.slice(0, 300)} ${typeof req.body === 'string' ? req.body.slice(0, 300) : ''}`, ec2ReplyProblem(r));
}

async function stillServing(): Promise<void> {
  expect(alive(f.pid('clc'))).toBe(true);
  const r = await send(f.ec2Url, signedPost('Action=DescribeInstances&Version=2016-11-15'));
  expect(r.status, r.body).toBe(200);
  expect(r.body).toContain('<DescribeInstancesResponse');
}

describe('EC2 Query fuzzing (clc)', () => {
  it('model-shaped requests with hostile values, as signed form bodies', async () => {
    await fc.assert(fc.asyncProperty(ec2Request(), async (pairs) => check(signedPost(formEncode(pairs)))), params(600));
    await stillServing();
  });

  it('the same, with byte-level damage, as query strings and bodies', async () => {
    const arb = ec2Request().chain((pairs) => fc.tuple(damage(formEncode(pairs)), fc.boolean()));
    await fc.assert(fc.asyncProperty(arb, async ([encoded, asGet]) => check(asGet ? signedGet(encoded) : signedPost(encoded))), params(500));
    await stillServing();
  });

  it('unsigned and wrongly typed bodies (JSON, XML, binary, odd content types)', async () => {
    const arb = fc.record({
      contentType: fc.constantFrom('application/json', 'text/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded; charset=latin1', '', ';;;', 'a/b/c'),
      body: fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.constant('{"Action":"DescribeInstances"}'), fc.constant('<Action>x</Action>')),
      method: fc.constantFrom('POST', 'GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
      path: fc.constantFrom('/', '/services/compute', '/services/Eucalyptus/', '/services/compute/', '/services//compute'),
    });
    await fc.assert(fc.asyncProperty(arb, async (c) => {
      const r = await send(f.ec2Url, { method: c.method, path: c.path, headers: { host, ...(c.contentType ? { 'content-type': c.contentType } : {}) }, body: c.method === 'GET' || c.method === 'HEAD' ? undefined : c.body });
      if (c.method === 'HEAD') {
        expect(r.status).toBeLessThan(500);
        return;
      }
      expectNoProblem(`${c.method} ${c.path} ${c.contentType}`, ec2ReplyProblem(r));
    }), params(200));
    await stillServing();
  });
});

describe('damaged signatures (clc)', () => {
  const body = 'Action=DescribeInstances&Version=2016-11-15';

  it('SigV4 Authorization headers with any part changed or missing', async () => {
    const part = fc.constantFrom('algorithm', 'credential', 'signedHeaders', 'signature', 'date', 'separator', 'whole');
    const junk = fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('', '/', '//////', 'AKIA/20200101/r/ec2/aws4_request', `${'x'.repeat(5000)}`, 'host;;x-amz-date', 'host;x-amz-date;content-type;nothere', '00', 'zz', '20991231T235959Z', '20200101T000000Z', '2020', 'aws4_request', 'Credential=', ','));
    await fc.assert(fc.asyncProperty(part, junk, fc.boolean(), async (which, value, expired) => {
      const good = signedPost(body, f.user, expired ? new Date(Date.now() - 3600_000) : undefined);
      const h = { ...good.headers! };
      const auth = h.authorization!;
      const m = /^(\S+) Credential=([^,]+), SignedHeaders=([^,]+), Signature=(\S+)$/.exec(auth)!;
      const [alg, cred, sh, sig] = [m[1]!, m[2]!, m[3]!, m[4]!];
      switch (which) {
        case 'algorithm': h.authorization = `${value} Credential=${cred}, SignedHeaders=${sh}, Signature=${sig}`; break;
        case 'credential': h.authorization = `${alg} Credential=${value}, SignedHeaders=${sh}, Signature=${sig}`; break;
        case 'signedHeaders': h.authorization = `${alg} Credential=${cred}, SignedHeaders=${value}, Signature=${sig}`; break;
        case 'signature': h.authorization = `${alg} Credential=${cred}, SignedHeaders=${sh}, Signature=${value}`; break;
        case 'date': h['x-amz-date'] = value; break;
        case 'separator': h.authorization = auth.replace(/, /g, value); break;
        case 'whole': h.authorization = value; break;
      }
      const r = await send(f.ec2Url, { ...good, headers: h });
      const problem = ec2ReplyProblem(r);
      expectNoProblem(`${which}=${value.slice(0, 100)}`, problem);
      // Whatever was changed, the request must not be served (a changed value equal to the original aside).
      // ", " and "," between the components are both what clients send.
      const sameMeaning = which === 'separator' && /^\s*,\s*$/.test(value);
      if (!sameMeaning && (h.authorization !== auth || h['x-amz-date'] !== good.headers!['x-amz-date'] || expired)) expect(r.status, `${which}=${value}: ${r.body}`).toBeGreaterThanOrEqual(400);
    }), params(300));
    await stillServing();
  });

  it('SigV4 presigned queries with damaged X-Amz-* parameters', async () => {
    const param = fc.constantFrom('X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature');
    const value = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', '-1', '0', '604801', '99999999999999999999', '1e3', 'host', '', '%', 'AWS4-HMAC-SHA512'));
    await fc.assert(fc.asyncProperty(param, value, fc.constantFrom('replace', 'drop', 'duplicate'), async (p, v, how) => {
      const s = signV4({ method: 'GET', path: '/', query: 'Action=DescribeRegions&Version=2016-11-15', headers: { host }, accessKeyId: f.user.accessKeyId, secretAccessKey: f.user.secretAccessKey, region: f.region, service: 'ec2', presignExpires: 300 });
      const parts = s.query.split('&');
      const i = parts.findIndex((x) => x.startsWith(`${p}=`));
      const enc = encodeURIComponent(v);
      if (how === 'replace') parts[i] = `${p}=${enc}`;
      else if (how === 'drop') parts.splice(i, 1);
      else parts.push(`${p}=${enc}`);
      const query = parts.join('&');
      const r = await send(f.ec2Url, { method: 'GET', path: `/?${query}`, headers: { host } });
      expectNoProblem(`${how} ${p}=${v}`, ec2ReplyProblem(r));
      if (query !== s.query) expect(r.status, `${how} ${p}=${v}: ${r.body}`).toBeGreaterThanOrEqual(400);
    }), params(300));
    await stillServing();
  });

  it('SigV2 with damaged parameters', async () => {
    const param = fc.constantFrom('AWSAccessKeyId', 'Signature', 'SignatureMethod', 'SignatureVersion', 'Timestamp', 'Expires', 'Action');
    const value = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', '1', '2', '3', 'HmacSHA1', 'HmacSHA256', 'HmacMD5', '2009-01-01T00:00:00Z', '2999-01-01T00:00:00Z', 'x', '====', 'a'.repeat(2000)));
    await fc.assert(fc.asyncProperty(param, value, fc.constantFrom('replace', 'drop', 'add'), async (p, v, how) => {
      const pairs: Pair[] = [['Action', 'DescribeRegions'], ['Version', '2016-11-15'], ['AWSAccessKeyId', f.user.accessKeyId], ['SignatureMethod', 'HmacSHA256'], ['SignatureVersion', '2'], ['Timestamp', new Date().toISOString()]];
      pairs.push(['Signature', signV2('POST', host, '/', pairs, f.user.secretAccessKey)]);
      const good = formEncode(pairs);
      const i = pairs.findIndex(([k]) => k === p);
      if (how === 'replace' && i >= 0) pairs[i] = [p, v];
      else if (how === 'drop' && i >= 0) pairs.splice(i, 1);
      else pairs.push([p, v]);
      const sent = formEncode(pairs);
      const r = await send(f.ec2Url, { method: 'POST', path: '/', headers: { host, 'content-type': 'application/x-www-form-urlencoded' }, body: sent });
      expectNoProblem(`${how} ${p}=${v.slice(0, 80)}`, ec2ReplyProblem(r));
      if (sent !== good) expect(r.status, `${how} ${p}=${v}: ${r.body}`).toBeGreaterThanOrEqual(400);
    }), params(300));
    await stillServing();
  });
});

describe('oversize input (clc)', () => {
  it('bodies, parameter counts, nesting and header sizes past every limit are refused with 4xx envelopes', async () => {
    const cases: RawRequest[] = [
      signedPost('Action=DescribeInstances&Version=2016-11-15&' + 'InstanceId.1=' + 'i'.repeat(2 * 1024 * 1024)),
      signedPost('Action=DescribeInstances&Version=2016-11-15&' + Array.from({ length: 20_000 }, (_, i) => `InstanceId.${i + 1}=i-${i.toString(16).padStart(8, '0')}`).join('&')),
      signedPost('Action=DescribeInstances&Version=2016-11-15&' + Array.from({ length: 9_000 }, (_, i) => `InstanceId.${i + 1}=i-${i.toString(16).padStart(8, '0')}`).join('&')),
      signedPost('Action=DescribeInstances&Version=2016-11-15&' + 'A.1.'.repeat(500) + 'B=1'),
      signedPost('Action=RunInstances&Version=2016-11-15&ImageId=emi-00000000&MinCount=1&MaxCount=1&UserData=' + 'A'.repeat(900 * 1024)),
      { method: 'GET', path: '/?Action=DescribeRegions&' + 'x'.repeat(8000), headers: { host, 'x-big': 'y'.repeat(12_000) } },
      { method: 'POST', path: '/', headers: { host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(50 * 1024 * 1024) }, body: Buffer.alloc(2 * 1024 * 1024, 0x41) },
    ];
    // Large but within the limits: answered, not refused, and without a 5xx.
    const allowed = signedPost('Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=instance-id&' + Array.from({ length: 5000 }, (_, i) => `Filter.1.Value.${i + 1}=v${i}`).join('&'));
    expectNoProblem('5,000 filter values', ec2ReplyProblem(await send(f.ec2Url, allowed)));
    for (const c of cases) {
      const r = await send(f.ec2Url, c).catch((e: Error) => ({ status: -1, headers: {}, body: e.message, raw: Buffer.alloc(0) }));
      // A server that stops reading a body it refused may reset the socket before the client has sent it all.
      if (r.status === -1 && /EPIPE|ECONNRESET|socket hang up/.test(r.body)) continue;
      const what = `${c.method} ${c.path.slice(0, 80)} ${String(c.body ?? '').slice(0, 80)} (${(c.body?.length ?? 0)} bytes)`;
      expectNoProblem(what, ec2ReplyProblem(r));
      expect(r.status, `${what}: ${r.body.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
    }
    await stillServing();
  });
});

describe('the clc after the fuzzing', () => {
  it('kept its memory bounded and still answers correctly', async () => {
    // Let the garbage collector catch up with the last bursts before measuring.
    for (let i = 0; i < 20; i++) await send(f.ec2Url, signedPost('Action=DescribeRegions&Version=2016-11-15'));
    const rss = rssOf(f.pid('clc'));
    expect(rss - rssBefore, `clc RSS ${Math.round(rssBefore / 2 ** 20)} → ${Math.round(rss / 2 ** 20)} MiB`).toBeLessThan(160 * 2 ** 20);
    await stillServing();
  });
});
