// boto 2 (python3-boto from apt) signs S3 with SigV2: header and presigned-query forms, path-style and
// under /services/Walrus through boto.connect_walrus (checks in clients/boto2_s3.py).
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { python, startWalrus, type TestWalrus } from './harness.js';

let w: TestWalrus;
beforeAll(async () => {
  w = await startWalrus();
});
afterAll(async () => {
  await w?.close();
});

// Debian's python3-boto lives in the system interpreter, not in pyenv's.
const SYSTEM_PYTHON = '/usr/bin/python3';

it.runIf(existsSync(SYSTEM_PYTHON))('boto 2: buckets, objects, metadata, listings, presigned GET, multipart, canned ACLs, wrong secret', async () => {
  expect((await python(w, 'boto2_s3.py', SYSTEM_PYTHON)).trim()).toBe('OK');
}, 120_000);
