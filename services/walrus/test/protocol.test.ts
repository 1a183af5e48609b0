// Raw HTTP against Walrus: S3 error envelopes for bad input (signatures, names, keys, digests),
// aws-chunked uploads with chunk signatures, virtual-host and /services/Walrus addressing.
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkSignature, s3SignV2, s3StringToSign, signV4 } from '@mallee/aws-protocol';
import { ACCOUNTS, rawS3, startWalrus, type RawRequest, type Sent, type TestWalrus } from './harness.js';

let w: TestWalrus;
let host: string;

beforeAll(async () => {
  w = await startWalrus();
  host = new URL(w.url).host;
  const r = await send({ method: 'PUT', path: '/proto' });
  expect(r.status).toBe(200);
});
afterAll(async () => {
  await w?.close();
});

const send = (opts: RawRequest) => rawS3(w, opts);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

const code = (r: Sent) => /<Code>([^<]*)<\/Code>/.exec(r.body)?.[1];

function expectS3Error(r: Sent, status: number, errorCode: string) {
  expect({ status: r.status, code: code(r) }).toEqual({ status, code: errorCode });
  expect(r.body).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>/);
  expect(r.body).toMatch(/<RequestId>[0-9A-F]{16}<\/RequestId><\/Error>$/);
  expect(r.headers['x-amz-request-id']).toBe(/<RequestId>([^<]*)</.exec(r.body)?.[1]);
}

describe('bad input gets S3 error XML and the daemon keeps serving', () => {
  it('a wrong secret is SignatureDoesNotMatch; an unknown key is InvalidAccessKeyId; no auth is AccessDenied', async () => {
    expectS3Error(await send({ method: 'GET', path: '/', secret: 'not-the-secret' }), 403, 'SignatureDoesNotMatch');
    const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
    const unknown = await send({ method: 'GET', path: '/', sign: false, headers: { authorization: `AWS4-HMAC-SHA256 Credential=AKIANOBODY/${amzDate.slice(0, 8)}/mallee/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`, 'x-amz-date': amzDate } });
    expectS3Error(unknown, 403, 'InvalidAccessKeyId');
    expectS3Error(await send({ method: 'GET', path: '/', sign: false }), 403, 'AccessDenied');
    expectS3Error(await send({ method: 'GET', path: '/', sign: false, headers: { authorization: 'AWS4-HMAC-SHA256 garbage' } }), 400, 'IncompleteSignature');
    expectS3Error(await send({ method: 'GET', path: '/', sign: false, headers: { authorization: 'AWS AKIAALICE0000000001:bm90LWEtc2lnbmF0dXJl', date: new Date().toUTCString() } }), 403, 'SignatureDoesNotMatch');
  });

  it('missing buckets and keys are NoSuchBucket and NoSuchKey with the resource named', async () => {
    const nb = await send({ method: 'GET', path: '/no-such-bucket/k' });
    expectS3Error(nb, 404, 'NoSuchBucket');
    expect(nb.body).toContain('<BucketName>no-such-bucket</BucketName>');
    expect(nb.body).toContain('<Resource>/no-such-bucket/k</Resource>');
    const nk = await send({ method: 'GET', path: '/proto/missing%20key' });
    expectS3Error(nk, 404, 'NoSuchKey');
    expect(nk.body).toContain('<Key>missing key</Key>');
    const head = await send({ method: 'HEAD', path: '/proto/missing' });
    expect(head.status).toBe(404);
    expect(head.body).toBe('');
  });

  it('a body that does not match Content-MD5 is BadDigest and is not stored; a malformed one is InvalidDigest', async () => {
    const bad = await send({ method: 'PUT', path: '/proto/digest', body: 'abc', headers: { 'content-md5': createHash('md5').update('abd').digest('base64') } });
    expectS3Error(bad, 400, 'BadDigest');
    expectS3Error(await send({ method: 'GET', path: '/proto/digest' }), 404, 'NoSuchKey');
    expectS3Error(await send({ method: 'PUT', path: '/proto/digest', body: 'abc', headers: { 'content-md5': 'bm90IG1kNQ==' } }), 400, 'InvalidDigest');
    const good = await send({ method: 'PUT', path: '/proto/digest', body: 'abc', headers: { 'content-md5': createHash('md5').update('abc').digest('base64') } });
    expect(good.status).toBe(200);
    expect(good.headers.etag).toBe(`"${createHash('md5').update('abc').digest('hex')}"`);
  });

  it('a body that does not match the signed x-amz-content-sha256 is refused and not stored', async () => {
    const r = await send({ method: 'PUT', path: '/proto/sha', body: 'actual', headers: { 'x-amz-content-sha256': sha256('claimed') } });
    expectS3Error(r, 400, 'XAmzContentSHA256Mismatch');
    expectS3Error(await send({ method: 'GET', path: '/proto/sha' }), 404, 'NoSuchKey');
  });

  it.each(['ab', 'UPPER', 'under_score', '-leading', 'trailing-', 'a..b', '192.168.1.1', 'x'.repeat(64)])('bucket name %s is InvalidBucketName', async (name) => {
    expectS3Error(await send({ method: 'PUT', path: `/${encodeURIComponent(name)}` }), 400, 'InvalidBucketName');
  });

  it('traversal, NUL and over-long keys are refused and nothing lands outside the store', async () => {
    for (const path of ['/proto/../../etc/passwd', '/proto/a/%2e%2e/%2e%2e/x', '/proto/..', '/proto/a/../b']) {
      expectS3Error(await send({ method: 'PUT', path, body: 'x' }), 400, 'InvalidArgument');
    }
    expectS3Error(await send({ method: 'PUT', path: '/proto/nul%00key', body: 'x' }), 400, 'InvalidArgument');
    expectS3Error(await send({ method: 'PUT', path: '/proto/' + 'k'.repeat(1025), body: 'x' }), 400, 'KeyTooLongError');
    expectS3Error(await send({ method: 'PUT', path: '/proto/bad%ZZescape', body: 'x' }), 400, 'InvalidURI');
    // Dots inside names are ordinary keys.
    expect((await send({ method: 'PUT', path: '/proto/a..b/.hidden', body: 'ok' })).status).toBe(200);
    expect(readdirSync(w.home).filter((f) => !f.startsWith('walrus.sqlite')).sort()).toEqual(['run', 'walrus']);
    expect(readdirSync(join(w.home, 'walrus')).sort()).toEqual(['data', 'images', 'tmp']);
    expect((await send({ method: 'GET', path: '/' })).status).toBe(200);
  });

  it('unsupported sub-resources are NotImplemented, unknown methods MethodNotAllowed', async () => {
    expectS3Error(await send({ method: 'GET', path: '/proto', query: 'cors' }), 501, 'NotImplemented');
    expectS3Error(await send({ method: 'POST', path: '/proto/key' }), 405, 'MethodNotAllowed');
  });
});

/** Encodes a body as signed aws-chunked, as the AWS SDKs do for STREAMING-AWS4-HMAC-SHA256-PAYLOAD. */
function awsChunked(data: Buffer, chunkSize: number, seed: { signingKey: Buffer; amzDate: string; scope: string; seedSignature: string }, tamper = false): Buffer {
  const parts: Buffer[] = [];
  let prev = seed.seedSignature;
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunkSize) chunks.push(data.subarray(i, i + chunkSize));
  chunks.push(Buffer.alloc(0));
  for (const c of chunks) {
    const sig = chunkSignature(seed, prev, c);
    prev = sig;
    const sent = tamper && c.length > 0 ? Buffer.from(c).fill(0x41, 0, 1) : c;
    parts.push(Buffer.from(`${c.length.toString(16)};chunk-signature=${sig}\r\n`), sent, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

async function chunkedPut(key: string, data: Buffer, tamper: boolean): Promise<Sent> {
  const { deriveSigningKey } = await import('@mallee/aws-protocol');
  const a = ACCOUNTS.alice!;
  const date = new Date();
  const headers: Record<string, string> = {
    host,
    'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'content-encoding': 'aws-chunked',
    'x-amz-decoded-content-length': String(data.length),
  };
  const s = signV4({ method: 'PUT', path: `/proto/${key}`, headers, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', date });
  const amzDate = s.headers['x-amz-date']!;
  const seed = { signingKey: deriveSigningKey(a.secretAccessKey, amzDate.slice(0, 8), 'mallee', 's3'), amzDate, scope: `${amzDate.slice(0, 8)}/mallee/s3/aws4_request`, seedSignature: s.signature };
  return send({ method: 'PUT', path: `/proto/${key}`, headers: s.headers, body: awsChunked(data, 64 * 1024, seed, tamper), sign: false });
}

describe('aws-chunked uploads', () => {
  it('a signed chunked body is stored decoded; a tampered chunk is SignatureDoesNotMatch and nothing is stored', async () => {
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const ok = await chunkedPut('chunked', data, false);
    expect(ok.status).toBe(200);
    expect(ok.headers.etag).toBe(`"${createHash('md5').update(data).digest('hex')}"`);
    const back = await send({ method: 'GET', path: '/proto/chunked' });
    expect(back.raw.equals(data)).toBe(true);
    expectS3Error(await chunkedPut('tampered', data, true), 403, 'SignatureDoesNotMatch');
    expectS3Error(await send({ method: 'GET', path: '/proto/tampered' }), 404, 'NoSuchKey');
  });
});

describe('request times', () => {
  // Found by test/e2e/security.test.ts: S3 answers RequestTimeTooSkewed (403) for a SigV4 header whose
  // x-amz-date is off by more than 15 minutes, and AccessDenied only for a presigned URL past its expiry.
  it('a SigV4 header signed 20 minutes ago (or ahead) is RequestTimeTooSkewed; an expired presigned URL is AccessDenied', async () => {
    for (const offset of [-20, 20]) {
      const a = ACCOUNTS.alice!;
      const s = signV4({ method: 'GET', path: '/proto', headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD', date: new Date(Date.now() + offset * 60_000) });
      expectS3Error(await send({ method: 'GET', path: '/proto', headers: s.headers, sign: false }), 403, 'RequestTimeTooSkewed');
    }
    const a = ACCOUNTS.alice!;
    const pre = signV4({ method: 'GET', path: '/proto', headers: { host }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, presignExpires: 60, date: new Date(Date.now() - 120_000) });
    const r = await send({ method: 'GET', path: `/proto?${pre.query}`, sign: false });
    expectS3Error(r, 403, 'AccessDenied');
    expect(r.body).toContain('Request has expired');
  });
});

describe('malformed query strings', () => {
  // Found by test/fuzz: a stray % or invalid UTF-8 in the query was InternalError (500).
  it('a query that does not percent-decode is InvalidURI (400), signed or not', async () => {
    for (const query of ['acl&%', 'prefix=%ZZ', 'prefix=%C0%AF', 'X-Amz-A%lgorithm=x']) {
      expectS3Error(await send({ method: 'GET', path: `/proto?${query}`, sign: false }), 400, 'InvalidURI');
    }
  });
});

describe('malformed aws-chunked bodies', () => {
  // Found by test/fuzz: a chunk the decoder refused before the action read the body emitted 'error' on a
  // stream nobody listened to yet, and the uncaught error killed Walrus.
  it('a chunk header that is not a size, in the first bytes, is InvalidRequest and Walrus serves on', async () => {
    for (const body of ['zz\r\n', '5\nabc\nxx\r\n', '-1\r\n']) {
      const r = await send({ method: 'PUT', path: '/proto/bad-chunks', body, headers: { 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '5' } });
      expectS3Error(r, 400, 'InvalidRequest');
    }
    expectS3Error(await send({ method: 'GET', path: '/proto/bad-chunks' }), 404, 'NoSuchKey');
  });
});

describe('addressing', () => {
  it('serves virtual-host style (bucket.localhost) and under /services/Walrus', async () => {
    const port = new URL(w.url).port;
    const vh = await send({ method: 'PUT', path: '/vh/key.txt', body: 'virtual', headers: { host: `proto.localhost:${port}` } });
    expect(vh.status).toBe(200);
    expect((await send({ method: 'GET', path: '/proto/vh/key.txt' })).body).toBe('virtual');
    const prefixed = await send({ method: 'GET', path: '/services/Walrus/proto/vh/key.txt' });
    expect(prefixed.body).toBe('virtual');
    const list = await send({ method: 'GET', path: '/', headers: { host: `proto.localhost:${port}` }, query: 'list-type=2&prefix=vh%2F' });
    expect(list.body).toContain('<Key>vh/key.txt</Key>');
  });

  it('accepts S3 SigV2 in the Authorization header for virtual-host requests', async () => {
    const port = new URL(w.url).port;
    const a = ACCOUNTS.alice!;
    const headers: Record<string, string> = { host: `proto.localhost:${port}`, date: new Date().toUTCString(), 'content-type': 'text/plain', 'x-amz-meta-via': 'sigv2' };
    const sts = s3StringToSign('PUT', headers, headers.date!, '/proto/v2.txt', '');
    headers.authorization = `AWS ${a.accessKeyId}:${s3SignV2(sts, a.secretAccessKey)}`;
    expect((await send({ method: 'PUT', path: '/v2.txt', body: 'two', headers, sign: false })).status).toBe(200);
    const got = await send({ method: 'GET', path: '/proto/v2.txt' });
    expect(got.body).toBe('two');
    expect(got.headers['x-amz-meta-via']).toBe('sigv2');
  });
});

describe('health and metrics', () => {
  it('serves /_mallee/healthz and Prometheus metrics counting requests by action and status', async () => {
    const health = await fetch(new URL('/_mallee/healthz', w.url));
    expect(await health.json()).toEqual({ service: 'walrus', status: 'ok' });
    await send({ method: 'GET', path: '/proto/not-there' });
    const text = await (await fetch(new URL('/_mallee/metrics', w.url))).text();
    expect(text).toMatch(/^mallee_requests_total\{api="s3",action="GetObject",status="404"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_requests_total\{api="s3",action="CreateBucket",status="200"\} 1$/m);
    expect(text).toMatch(/^mallee_walrus_buckets 1$/m);
    expect(text).toMatch(/^mallee_walrus_stored_bytes [1-9]\d*$/m);
  });
});

describe('interrupted uploads', () => {
  it('a client that hangs up mid-body leaves no temp file and no object, and the daemon serves on', async () => {
    const { createConnection } = await import('node:net');
    const u = new URL(w.url);
    const a = ACCOUNTS.alice!;
    const s = signV4({ method: 'PUT', path: '/proto/aborted', headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'content-length': String(10 * 1024 * 1024) }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
    const sock = createConnection({ host: u.hostname, port: Number(u.port) });
    await new Promise((r) => sock.once('connect', r));
    sock.write(`PUT /proto/aborted HTTP/1.1\r\n${Object.entries(s.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
    sock.write(Buffer.alloc(1024 * 1024, 1));
    await new Promise((r) => setTimeout(r, 200));
    expect(readdirSync(join(w.home, 'walrus', 'tmp'))).toHaveLength(1);
    sock.destroy();
    for (let i = 0; i < 50 && readdirSync(join(w.home, 'walrus', 'tmp')).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(readdirSync(join(w.home, 'walrus', 'tmp'))).toEqual([]);
    expectS3Error(await send({ method: 'GET', path: '/proto/aborted' }), 404, 'NoSuchKey');
  });
});

describe('keep-alive', () => {
  it('a request body the action does not read is drained, so the connection serves the next request', async () => {
    const { Agent, request: httpRequest } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const u = new URL(w.url);
    const a = ACCOUNTS.alice!;
    const go = (method: string, path: string, body: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const s = signV4({ method, path, headers: { host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
        const r = httpRequest({ agent, host: u.hostname, port: u.port, method, path, headers: { ...s.headers, 'content-length': String(body.length) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        r.on('error', reject);
        r.setTimeout(5000, () => r.destroy(new Error('timed out: the connection stalled')));
        r.end(body);
      });
    try {
      expect(await go('DELETE', '/proto/nothing-here', Buffer.alloc(3 * 1024 * 1024, 1))).toBe(204);
      expect(await go('GET', '/proto', Buffer.alloc(0))).toBe(200);
    } finally {
      agent.destroy();
    }
  });
});
