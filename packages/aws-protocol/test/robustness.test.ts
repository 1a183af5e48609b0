// Whatever arrives, the EC2 endpoint answers with an EC2 XML error (never a 5xx, never a crash).
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { z } from 'zod';
import { defineEc2Action, ec2Api, q, signV4, type Principal } from '../src/index.js';

const KEY = 'AKIDFUZZ00000000001';
const SECRET = 'fuzz-secret';
const principal: Principal = { accountId: '6', accountName: 'fuzz', userId: 'u', accessKeyId: KEY, isAdmin: false };

let app: FastifyInstance;
beforeAll(async () => {
  app = Fastify({ logger: false });
  const act = defineEc2Action('RunInstances', z.object({ ImageId: z.string(), MinCount: q.int(), MaxCount: q.int(), InstanceType: z.string().optional(), BlockDeviceMapping: q.list(z.object({ DeviceName: z.string(), Ebs: z.object({ VolumeSize: q.int() }).optional() })) }), (i) => ({ ok: i.ImageId }));
  await app.register(ec2Api, { actions: [act], credentials: (id) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined) });
  await app.ready();
});
afterAll(async () => {
  await app.close();
});

// A small deterministic PRNG so a failure can be replayed.
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ['A', 'a', '1', '.', '=', '&', '%', '+', '%2', '%FF', '%C3', '%00', 'Action', 'RunInstances', 'ImageId', 'MinCount', 'BlockDeviceMapping', '.1', '.Ebs', '.VolumeSize', 'Filter', '\u00e9', '\uD800', ' ', '__proto__', 'Version', '2016-11-15', 'X-Amz-Algorithm', 'AWS4-HMAC-SHA256', 'SignatureVersion', '2', 'AWSAccessKeyId', KEY];

function randomString(rand: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  return s;
}

/** Keeps `%`, `&`, `=` raw (the point is malformed input) but makes the URL transmittable. */
function rawUrlSafe(s: string): string {
  return s.replace(/[^\x21-\x7e]|#/gu, (c) => [...Buffer.from(c, 'utf8')].map((b) => '%' + b.toString(16).padStart(2, '0')).join(''));
}

function expectXmlError(res: { statusCode: number; body: string }, what: string) {
  expect(res.statusCode, what).toBeGreaterThanOrEqual(400);
  expect(res.statusCode, what).toBeLessThan(500);
  expect(res.body, what).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><Response><Errors><Error><Code>[\w.]+<\/Code><Message>[^<]*<\/Message><\/Error><\/Errors><RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/);
}

test('random form bodies and query strings, unsigned, get XML 4xx errors', async () => {
  const rand = prng(20261125);
  for (let i = 0; i < 300; i++) {
    const body = randomString(rand, Math.floor(rand() * 40));
    const query = randomString(rand, Math.floor(rand() * 20)).replace(/[#\s]/g, '');
    const res = await app.inject({ method: rand() < 0.5 ? 'POST' : 'GET', url: `/services/compute?${rawUrlSafe(query)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
    expectXmlError(res, JSON.stringify({ body, query }));
  }
});

test('random bodies correctly signed with SigV4 get XML 4xx errors or a 200, never a 5xx', async () => {
  const rand = prng(7);
  let ok = 0;
  for (let i = 0; i < 300; i++) {
    const body = 'Action=RunInstances&ImageId=emi-1&' + randomString(rand, Math.floor(rand() * 30));
    const signed = signV4({ method: 'POST', path: '/', headers: { host: 'localhost', 'content-type': 'application/x-www-form-urlencoded' }, body, accessKeyId: KEY, secretAccessKey: SECRET, region: 'r', service: 'ec2' });
    const res = await app.inject({ method: 'POST', url: '/', headers: signed.headers, payload: body });
    if (res.statusCode === 200) ok++;
    else expectXmlError(res, body);
  }
  expect(ok).toBeLessThan(300);
});

test('malformed signature material in headers and query gets XML errors', async () => {
  const cases: { url: string; headers: Record<string, string> }[] = [
    { url: '/', headers: { authorization: 'AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;;, Signature=zz' } },
    { url: '/', headers: { authorization: 'AWS4-HMAC-SHA256 Credential=AKIDFUZZ00000000001/20260101/r/ec2/aws4_request, SignedHeaders=host, Signature=00', 'x-amz-date': 'not-a-date' } },
    { url: '/', headers: { authorization: 'AWS4-HMAC-SHA256 Credential=AKIDFUZZ00000000001/20260101/r/ec2/aws4_request, SignedHeaders=host, Signature=00', 'x-amz-date': '20261399T999999Z' } },
    { url: '/', headers: { authorization: 'AWS AKID:c2lnbmF0dXJl' } },
    { url: '/', headers: { authorization: 'Bearer xyz' } },
    { url: '/', headers: { authorization: '' } },
    { url: '/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%FF', headers: {} },
    { url: '/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a/b/c/d/aws4_request&X-Amz-Date=20260101T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires=-5', headers: {} },
    { url: '/?X-Amz-Algorithm=HMAC-MD5', headers: {} },
    { url: '/?SignatureVersion=2&AWSAccessKeyId=AKIDFUZZ00000000001&Signature=%%%', headers: {} },
    { url: '/?SignatureVersion=2&AWSAccessKeyId=AKIDFUZZ00000000001&Signature=abc&Timestamp=2026-01-01T00:00:00Z', headers: {} },
    { url: '/?SignatureVersion=2&AWSAccessKeyId=AKIDFUZZ00000000001&Signature=abc&Timestamp=' + encodeURIComponent(new Date().toISOString()), headers: { host: '' } },
    { url: '/?Action=RunInstances&Action.1=x', headers: {} },
  ];
  for (const c of cases) {
    const res = await app.inject({ method: 'GET', url: c.url, headers: c.headers });
    expectXmlError(res, JSON.stringify(c));
  }
});
