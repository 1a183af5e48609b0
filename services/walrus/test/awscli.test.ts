// awscli v1 (SigV4) against a real Walrus: buckets, small and multipart copies, listings, sync,
// presigned URLs and removal, all byte-exact.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aws, awsFails, startWalrus, tempDir, type TestWalrus } from './harness.js';

const run = promisify(execFile);
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

let w: TestWalrus;
let work: string;

beforeAll(async () => {
  w = await startWalrus();
  work = tempDir('mallee-awscli-');
});
afterAll(async () => {
  await w?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

// Each awscli run costs ~1.5 s of CPU: a test of several runs needs more than vitest's default 30 s beside
// other suites on a loaded 2-core host ("lists with prefixes" is nine runs, ~15 s alone).
describe('awscli s3 against walrus', { timeout: 120_000 }, () => {
  it('makes a bucket, lists it, and refuses a second one with the same name', async () => {
    expect(await aws(w, 'alice', ['s3', 'mb', 's3://cli-bucket'])).toContain('make_bucket: cli-bucket');
    expect(await aws(w, 'alice', ['s3', 'ls'])).toMatch(/cli-bucket/);
    expect(await awsFails(w, 'alice', ['s3', 'mb', 's3://cli-bucket'])).toContain('BucketAlreadyOwnedByYou');
    expect(await awsFails(w, 'bob', ['s3', 'mb', 's3://cli-bucket'])).toContain('BucketAlreadyExists');
    expect(await aws(w, 'bob', ['s3', 'ls'])).not.toMatch(/cli-bucket/);
  });

  it('copies a 1 KiB file up and down byte-exact', async () => {
    const data = randomBytes(1024);
    writeFileSync(join(work, 'small'), data);
    await aws(w, 'alice', ['s3', 'cp', join(work, 'small'), 's3://cli-bucket/docs/small.bin']);
    await aws(w, 'alice', ['s3', 'cp', 's3://cli-bucket/docs/small.bin', join(work, 'small.back')]);
    expect(readFileSync(join(work, 'small.back')).equals(data)).toBe(true);
    const head = JSON.parse(await aws(w, 'alice', ['s3api', 'head-object', '--bucket', 'cli-bucket', '--key', 'docs/small.bin']));
    expect(head.ETag).toBe(`"${md5(data)}"`);
    expect(head.ContentLength).toBe(1024);
  });

  it('copies a 100 MiB file as a multipart upload and reads it back byte-exact', async () => {
    const file = join(work, 'big');
    const hash = createHash('md5');
    const out = createWriteStream(file);
    for (let i = 0; i < 100; i++) {
      const chunk = randomBytes(1024 * 1024);
      hash.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const want = hash.digest('hex');
    await aws(w, 'alice', ['s3', 'cp', file, 's3://cli-bucket/big/100m.bin', '--only-show-errors']);
    const head = JSON.parse(await aws(w, 'alice', ['s3api', 'head-object', '--bucket', 'cli-bucket', '--key', 'big/100m.bin']));
    expect(head.ContentLength).toBe(100 * 1024 * 1024);
    expect(head.ETag).toMatch(/^"[0-9a-f]{32}-\d+"$/);
    await aws(w, 'alice', ['s3', 'cp', 's3://cli-bucket/big/100m.bin', join(work, 'big.back'), '--only-show-errors']);
    const back = createHash('md5').update(readFileSync(join(work, 'big.back'))).digest('hex');
    expect(back).toBe(want);
    rmSync(file);
    rmSync(join(work, 'big.back'));
  }, 180_000);

  it('lists with prefixes and delimiters', async () => {
    for (const k of ['tree/a/1', 'tree/a/2', 'tree/b/1', 'tree/c', 'tree/d e']) {
      await aws(w, 'alice', ['s3api', 'put-object', '--bucket', 'cli-bucket', '--key', k, '--body', join(work, 'small')]);
    }
    const top = await aws(w, 'alice', ['s3', 'ls', 's3://cli-bucket/tree/']);
    expect(top).toMatch(/PRE a\//);
    expect(top).toMatch(/PRE b\//);
    expect(top).toMatch(/1024 c\n/);
    expect(top).toMatch(/1024 d e\n/);
    expect(top).not.toMatch(/tree\/a\/1/);
    const listed = JSON.parse(await aws(w, 'alice', ['s3api', 'list-objects-v2', '--bucket', 'cli-bucket', '--prefix', 'tree/', '--delimiter', '/']));
    expect(listed.CommonPrefixes.map((p: { Prefix: string }) => p.Prefix)).toEqual(['tree/a/', 'tree/b/']);
    expect(listed.Contents.map((c: { Key: string }) => c.Key)).toEqual(['tree/c', 'tree/d e']);
    const paged = JSON.parse(await aws(w, 'alice', ['s3api', 'list-objects-v2', '--bucket', 'cli-bucket', '--prefix', 'tree/', '--page-size', '2']));
    expect(paged.Contents.map((c: { Key: string }) => c.Key)).toEqual(['tree/a/1', 'tree/a/2', 'tree/b/1', 'tree/c', 'tree/d e']);
    const v1 = JSON.parse(await aws(w, 'alice', ['s3api', 'list-objects', '--bucket', 'cli-bucket', '--prefix', 'tree/a', '--max-items', '10']));
    expect(v1.Contents.map((c: { Key: string }) => c.Key)).toEqual(['tree/a/1', 'tree/a/2']);
  });

  it('syncs a directory up and back', async () => {
    const src = join(work, 'syncsrc');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'one.txt'), 'one');
    writeFileSync(join(src, 'sub', 'two.txt'), 'two');
    await aws(w, 'alice', ['s3', 'sync', src, 's3://cli-bucket/sync/']);
    const dst = join(work, 'syncdst');
    await aws(w, 'alice', ['s3', 'sync', 's3://cli-bucket/sync/', dst]);
    expect(readFileSync(join(dst, 'one.txt'), 'utf8')).toBe('one');
    expect(readFileSync(join(dst, 'sub', 'two.txt'), 'utf8')).toBe('two');
    // A second sync with nothing changed uploads nothing.
    expect((await aws(w, 'alice', ['s3', 'sync', src, 's3://cli-bucket/sync/'])).trim()).toBe('');
  });

  it('presigns a GET that curl can fetch, and a tampered one is refused', async () => {
    const url = (await aws(w, 'alice', ['s3', 'presign', 's3://cli-bucket/docs/small.bin', '--expires-in', '300'])).trim();
    const { stdout } = await run('curl', ['-sf', url], { encoding: 'buffer' });
    expect(stdout.equals(readFileSync(join(work, 'small')))).toBe(true);
    const tampered = url.replace('small.bin', 'small.bin2');
    const bad = await run('curl', ['-s', '-w', '%{http_code}', tampered]);
    expect(bad.stdout).toContain('<Code>SignatureDoesNotMatch</Code>');
    expect(bad.stdout.endsWith('403')).toBe(true);
  });

  it('removes objects and buckets; a non-empty bucket is not removed', async () => {
    expect(await awsFails(w, 'alice', ['s3', 'rb', 's3://cli-bucket'])).toContain('BucketNotEmpty');
    await aws(w, 'alice', ['s3', 'rm', 's3://cli-bucket/docs/small.bin']);
    expect(await awsFails(w, 'alice', ['s3api', 'head-object', '--bucket', 'cli-bucket', '--key', 'docs/small.bin'])).toContain('404');
    await aws(w, 'alice', ['s3', 'rm', '--recursive', 's3://cli-bucket/']);
    expect((await aws(w, 'alice', ['s3', 'ls', 's3://cli-bucket/'])).trim()).toBe('');
    await aws(w, 'alice', ['s3', 'rb', 's3://cli-bucket']);
    expect(await aws(w, 'alice', ['s3', 'ls'])).not.toMatch(/cli-bucket/);
    expect(await awsFails(w, 'alice', ['s3', 'ls', 's3://cli-bucket/'])).toContain('NoSuchBucket');
  });
});
