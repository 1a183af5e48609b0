// Two Walrus front ends, each with its own home, on one PostgreSQL database (DB_URL) and one radosgw
// bucket (WALRUS_BACKEND=s3): what one is told, the other serves — buckets, objects (also multipart),
// versions, deletes — and the bytes are in Ceph, not in either home. Needs MALLEE_TEST_PG_URL and
// MALLEE_TEST_RGW_* (backends.sh up all).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client, CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, DeleteObjectCommand, PutBucketVersioningCommand, PutObjectCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { loadConfig } from '@mallee/config';
import { startDaemon, staticCredentials, type RunningDaemon } from '@mallee/walrus';
import { dropDatabase, freshDatabase } from './helpers.js';

const pgUrl = process.env.MALLEE_TEST_PG_URL;
const rgw = process.env.MALLEE_TEST_RGW_URL;
const alice = { accessKeyId: 'AKIAALICE0000000001', secretAccessKey: 'alice/secret+key0000000000000000000000', accountId: '100000000001', accountName: 'alice' };
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const client = (endpoint: string, creds: { accessKeyId: string; secretAccessKey: string }) =>
  new S3Client({ endpoint, region: 'mallee', forcePathStyle: true, credentials: creds, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
const body = async (r: { Body?: unknown }) => Buffer.from(await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());

describe.skipIf(!pgUrl || !rgw)('two Walrus front ends on one PostgreSQL and one radosgw bucket', () => {
  const database = `mallee_two_walrus_${process.pid}`;
  const bucket = `walrus-two-${process.pid}`;
  const homes: string[] = [];
  const daemons: RunningDaemon[] = [];
  let a: S3Client;
  let b: S3Client;

  beforeAll(async () => {
    const dbUrl = freshDatabase(pgUrl!, database);
    for (let i = 0; i < 2; i++) {
      const home = mkdtempSync(join(tmpdir(), 'mallee-walrus-fe-'));
      homes.push(home);
      const config = loadConfig({ env: {}, overrides: {
        LOG_LEVEL: 'silent', BIND_ADDRESS: '127.0.0.1', DB_URL: dbUrl, WALRUS_BACKEND: 's3', WALRUS_S3_ENDPOINT: rgw!,
        WALRUS_S3_ACCESS_KEY: process.env.MALLEE_TEST_RGW_ACCESS_KEY!, WALRUS_S3_SECRET_KEY: process.env.MALLEE_TEST_RGW_SECRET_KEY!, WALRUS_S3_BUCKET: bucket,
      } });
      daemons.push(await startDaemon({ home, config, port: 0, credentials: staticCredentials({ [alice.accessKeyId]: alice }) }));
    }
    a = client(daemons[0]!.url, alice);
    b = client(daemons[1]!.url, alice);
  });

  afterAll(async () => {
    for (const d of daemons) await d.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
    dropDatabase(pgUrl!, database);
  });

  it('objects written through one front end are read, listed, versioned and deleted through the other', async () => {
    await a.send(new CreateBucketCommand({ Bucket: 'shared' }));
    const big = randomBytes(13 * 1024 * 1024);
    await new Upload({ client: a, params: { Bucket: 'shared', Key: 'big.bin', Body: big }, partSize: 5 * 1024 * 1024 }).done();
    await a.send(new PutObjectCommand({ Bucket: 'shared', Key: 'small.txt', Body: 'hello from a' }));

    const listed = await b.send(new ListObjectsV2Command({ Bucket: 'shared' }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([['big.bin', big.length], ['small.txt', 12]]);
    expect((await body(await b.send(new GetObjectCommand({ Bucket: 'shared', Key: 'big.bin' })))).equals(big)).toBe(true);
    const range = await b.send(new GetObjectCommand({ Bucket: 'shared', Key: 'big.bin', Range: 'bytes=5242870-5242889' }));
    expect((await body(range)).equals(big.subarray(5242870, 5242890))).toBe(true); // across the first part's end

    await b.send(new PutBucketVersioningCommand({ Bucket: 'shared', VersioningConfiguration: { Status: 'Enabled' } }));
    await a.send(new PutObjectCommand({ Bucket: 'shared', Key: 'small.txt', Body: 'second' }));
    const versions = await b.send(new ListObjectVersionsCommand({ Bucket: 'shared', Prefix: 'small.txt' }));
    expect(versions.Versions?.length).toBe(2);
    expect((await body(await b.send(new GetObjectCommand({ Bucket: 'shared', Key: 'small.txt' })))).toString()).toBe('second');

    await b.send(new DeleteObjectCommand({ Bucket: 'shared', Key: 'big.bin' }));
    await expect(a.send(new GetObjectCommand({ Bucket: 'shared', Key: 'big.bin' }))).rejects.toMatchObject({ name: 'NoSuchKey' });
  });

  it('keeps the bytes in the radosgw bucket, none in the homes', async () => {
    const ceph = client(rgw!, { accessKeyId: process.env.MALLEE_TEST_RGW_ACCESS_KEY!, secretAccessKey: process.env.MALLEE_TEST_RGW_SECRET_KEY! });
    const stored = await ceph.send(new ListObjectsV2Command({ Bucket: bucket }));
    // small.txt twice (two versions); big.bin's blobs wait out the delayed delete of replaced blobs.
    expect(stored.Contents?.length).toBeGreaterThanOrEqual(3);
    expect(stored.Contents!.every((o) => /^[0-9a-f]{2}\/[0-9a-f]{32}$/.test(o.Key!))).toBe(true);
    for (const home of homes) expect(readdirSync(home).sort()).toEqual(['run', 'walrus']);
    for (const home of homes) expect(readdirSync(join(home, 'walrus'))).toEqual(['images']);
  });
});
