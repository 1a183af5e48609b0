// Quotas: buckets per account, bytes per bucket and per account, counted over every stored version
// and released by deletes.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { rawS3, startWalrus, type TestWalrus } from './harness.js';

let w: TestWalrus;
beforeAll(async () => {
  w = await startWalrus({ quotas: { maxBucketsPerAccount: 2, maxBucketBytes: 1000, maxAccountBytes: 1500 } });
});
afterAll(async () => {
  await w?.close();
});

const code = (body: string) => /<Code>([^<]*)<\/Code>/.exec(body)?.[1];

it('refuses a third bucket with TooManyBuckets', async () => {
  expect((await rawS3(w, { method: 'PUT', path: '/quota-a' })).status).toBe(200);
  expect((await rawS3(w, { method: 'PUT', path: '/quota-b' })).status).toBe(200);
  const third = await rawS3(w, { method: 'PUT', path: '/quota-c' });
  expect([third.status, code(third.body)]).toEqual([400, 'TooManyBuckets']);
  // Another account has its own allowance.
  expect((await rawS3(w, { method: 'PUT', path: '/quota-bob', account: 'bob' })).status).toBe(200);
});

it('counts bytes per bucket and per account, overwrites replace, deletes release', async () => {
  expect((await rawS3(w, { method: 'PUT', path: '/quota-a/one', body: Buffer.alloc(600) })).status).toBe(200);
  const over = await rawS3(w, { method: 'PUT', path: '/quota-a/two', body: Buffer.alloc(500) });
  expect([over.status, code(over.body)]).toEqual([403, 'QuotaExceeded']);
  // Replacing 'one' with 900 bytes fits: the old 600 are released.
  expect((await rawS3(w, { method: 'PUT', path: '/quota-a/one', body: Buffer.alloc(900) })).status).toBe(200);
  expect((await rawS3(w, { method: 'PUT', path: '/quota-b/x', body: Buffer.alloc(500) })).status).toBe(200);
  const account = await rawS3(w, { method: 'PUT', path: '/quota-b/y', body: Buffer.alloc(200) });
  expect([account.status, code(account.body)]).toEqual([403, 'QuotaExceeded']);
  expect((await rawS3(w, { method: 'GET', path: '/quota-b/y' })).status).toBe(404);
  expect((await rawS3(w, { method: 'DELETE', path: '/quota-a/one' })).status).toBe(204);
  expect((await rawS3(w, { method: 'PUT', path: '/quota-b/y', body: Buffer.alloc(200) })).status).toBe(200);
});
