// The published AWS SigV4 test-suite vectors (AKIDEXAMPLE, 20150830T123600Z, us-east-1, service "service"):
// the verifier must accept each request as signed, and signV4 must produce the same Authorization header.
import { describe, expect, test } from 'vitest';
import { signV4, verifySigV4, type Principal } from '../src/index.js';

const KEY = 'AKIDEXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const NOW = new Date('2015-08-30T12:36:00Z');
const principal: Principal = { accountId: '1', accountName: 'suite', userId: 'u', accessKeyId: KEY, isAdmin: false };
const credentials = (id: string) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined);

interface Vector {
  name: string;
  method: string;
  path: string;
  query?: string;
  headers?: Record<string, string | string[]>;
  body?: string;
  signedHeaders: string;
  signature: string;
}

const HOST = 'example.amazonaws.com';
const DATE = '20150830T123600Z';

const vectors: Vector[] = [
  { name: 'get-vanilla', method: 'GET', path: '/', signedHeaders: 'host;x-amz-date', signature: '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31' },
  { name: 'get-vanilla-query-order-key-case', method: 'GET', path: '/', query: 'Param2=value2&Param1=value1', signedHeaders: 'host;x-amz-date', signature: 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500' },
  {
    name: 'get-vanilla-query-unreserved', method: 'GET', path: '/',
    query: '-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
    signedHeaders: 'host;x-amz-date', signature: '9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197',
  },
  { name: 'get-vanilla-utf8-query', method: 'GET', path: '/', query: '%E1%88%B4=bar', signedHeaders: 'host;x-amz-date', signature: '2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04' },
  { name: 'get-unreserved', method: 'GET', path: '/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', signedHeaders: 'host;x-amz-date', signature: '07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f' },
  { name: 'get-utf8', method: 'GET', path: '/ሴ', signedHeaders: 'host;x-amz-date', signature: '8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85' },
  { name: 'get-header-key-duplicate', method: 'GET', path: '/', headers: { 'My-Header1': ['value2', 'value2', 'value1'] }, signedHeaders: 'host;my-header1;x-amz-date', signature: 'c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea' },
  { name: 'get-header-value-order', method: 'GET', path: '/', headers: { 'My-Header1': ['value4', 'value1', 'value3', 'value2'] }, signedHeaders: 'host;my-header1;x-amz-date', signature: '08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01' },
  { name: 'get-header-value-trim', method: 'GET', path: '/', headers: { 'My-Header1': ' value1', 'My-Header2': ' "a   b   c"' }, signedHeaders: 'host;my-header1;my-header2;x-amz-date', signature: 'acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736' },
  { name: 'post-vanilla', method: 'POST', path: '/', signedHeaders: 'host;x-amz-date', signature: '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b' },
  { name: 'post-vanilla-query', method: 'POST', path: '/', query: 'Param1=value1', signedHeaders: 'host;x-amz-date', signature: '28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11' },
  { name: 'post-header-key-sort', method: 'POST', path: '/', headers: { 'My-Header1': 'value1' }, signedHeaders: 'host;my-header1;x-amz-date', signature: 'c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c' },
  { name: 'post-header-value-case', method: 'POST', path: '/', headers: { 'My-Header1': 'VALUE1' }, signedHeaders: 'host;my-header1;x-amz-date', signature: 'cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d' },
  {
    name: 'post-sts-header-before', method: 'POST', path: '/',
    headers: { 'X-Amz-Security-Token': 'AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==' },
    signedHeaders: 'host;x-amz-date;x-amz-security-token', signature: '85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead',
  },
  { name: 'post-x-www-form-urlencoded', method: 'POST', path: '/', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'Param1=value1', signedHeaders: 'content-type;host;x-amz-date', signature: 'ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a' },
  { name: 'post-x-www-form-urlencoded-parameters', method: 'POST', path: '/', headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf8' }, body: 'Param1=value1', signedHeaders: 'content-type;host;x-amz-date', signature: '1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe' },
];

const authz = (v: Vector) => `AWS4-HMAC-SHA256 Credential=${KEY}/20150830/us-east-1/service/aws4_request, SignedHeaders=${v.signedHeaders}, Signature=${v.signature}`;

describe('AWS SigV4 test suite', () => {
  for (const v of vectors) {
    test(`the verifier accepts ${v.name} as published`, async () => {
      const headers = { Host: HOST, 'X-Amz-Date': DATE, ...v.headers, Authorization: authz(v) };
      const ok = await verifySigV4({ method: v.method, path: v.path, query: v.query ?? '', headers, body: v.body ?? '' }, { credentials, services: ['service'], now: NOW });
      expect(ok.accessKeyId).toBe(KEY);
      expect(ok.region).toBe('us-east-1');
      expect(ok.signedHeaders.join(';')).toBe(v.signedHeaders);
    });

    test(`the verifier rejects ${v.name} with one signature digit changed`, async () => {
      const wrong = { ...v, signature: v.signature.slice(0, -1) + (v.signature.endsWith('0') ? '1' : '0') };
      const headers = { Host: HOST, 'X-Amz-Date': DATE, ...v.headers, Authorization: authz(wrong) };
      await expect(verifySigV4({ method: v.method, path: v.path, query: v.query ?? '', headers, body: v.body ?? '' }, { credentials, services: ['service'], now: NOW }))
        .rejects.toMatchObject({ code: 'SignatureDoesNotMatch', status: 403 });
    });

    // Repeated headers are one joined value for the signer (how a client library would hold them).
    if (Object.values(v.headers ?? {}).some(Array.isArray)) continue;
    test(`signV4 reproduces ${v.name}`, () => {
      const out = signV4({
        method: v.method, path: v.path, query: v.query ?? '', headers: { Host: HOST, 'X-Amz-Date': DATE, ...(v.headers as Record<string, string>) }, body: v.body ?? '',
        accessKeyId: KEY, secretAccessKey: SECRET, region: 'us-east-1', service: 'service', date: NOW,
      });
      expect(out.headers['authorization']).toBe(authz(v));
    });
  }
});
