// s3cmd (Debian's) against Walrus, with SigV4 and with --signature-v2: mb, put, ls, get, multipart
// put (5 MiB chunks), del, rb; byte-exact.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNTS, startWalrus, tempDir, type TestWalrus } from './harness.js';

const run = promisify(execFile);
const S3CMD = '/usr/bin/s3cmd';
let w: TestWalrus;
let work: string;

beforeAll(async () => {
  w = await startWalrus();
  work = tempDir('mallee-s3cmd-');
  const hostPort = new URL(w.url).host;
  const a = ACCOUNTS.alice!;
  writeFileSync(join(work, 's3cfg'), [
    '[default]',
    `access_key = ${a.accessKeyId}`,
    `secret_key = ${a.secretAccessKey}`,
    `host_base = ${hostPort}`,
    `host_bucket = ${hostPort}`,
    'use_https = False',
    'bucket_location = mallee',
    '',
  ].join('\n'));
});
afterAll(async () => {
  await w?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const s3cmd = async (args: string[]) => (await run(S3CMD, ['-c', join(work, 's3cfg'), ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

describe.runIf(existsSync(S3CMD))('s3cmd', () => {
  it.each([['SigV4', []], ['SigV2', ['--signature-v2']]] as const)('%s: mb, put, ls, get, multipart put, del, rb', async (_name, extra) => {
    const bucket = `s3cmd-${extra.length ? 'v2' : 'v4'}`;
    await s3cmd([...extra, 'mb', `s3://${bucket}`]);
    const small = randomBytes(3000);
    writeFileSync(join(work, 'small'), small);
    await s3cmd([...extra, 'put', join(work, 'small'), `s3://${bucket}/dir/small`]);
    expect(await s3cmd([...extra, 'ls', `s3://${bucket}/`])).toMatch(/DIR\s+s3:\/\/s3cmd-v.\/dir\//);
    expect(await s3cmd([...extra, 'ls', `s3://${bucket}/dir/`])).toMatch(/3000\s+s3:\/\/s3cmd-v.\/dir\/small/);
    await s3cmd([...extra, 'get', '--force', `s3://${bucket}/dir/small`, join(work, 'small.back')]);
    expect(readFileSync(join(work, 'small.back')).equals(small)).toBe(true);
    const big = randomBytes(12 * 1024 * 1024 + 123);
    writeFileSync(join(work, 'big'), big);
    await s3cmd([...extra, 'put', '--multipart-chunk-size-mb=5', join(work, 'big'), `s3://${bucket}/big`]);
    const info = await s3cmd([...extra, 'info', `s3://${bucket}/big`]);
    expect(info).toMatch(/MD5 sum:\s+[0-9a-f]{32}/);
    await s3cmd([...extra, 'get', '--force', `s3://${bucket}/big`, join(work, 'big.back')]);
    expect(md5(readFileSync(join(work, 'big.back')))).toBe(md5(big));
    await s3cmd([...extra, 'del', `s3://${bucket}/dir/small`, `s3://${bucket}/big`]);
    expect((await s3cmd([...extra, 'ls', `s3://${bucket}/`])).trim()).toBe('');
    await s3cmd([...extra, 'rb', `s3://${bucket}`]);
    expect(await s3cmd([...extra, 'ls'])).not.toContain(bucket);
  }, 120_000);
});
