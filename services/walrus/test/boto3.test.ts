// boto3 drives versioning, cross-account ACLs, ranges, conditionals, copy, multipart, multi-delete
// and presigned URLs (the checks are in clients/boto3_s3.py; any failed assert fails this test).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { python, startWalrus, type TestWalrus } from './harness.js';

let w: TestWalrus;
beforeAll(async () => {
  w = await startWalrus();
});
afterAll(async () => {
  await w?.close();
});

it('boto3: versioning, ACLs between accounts, ranges, conditionals, copy, multipart, multi-delete, presigned URLs', async () => {
  expect((await python(w, 'boto3_s3.py')).trim()).toBe('OK');
}, 120_000);
