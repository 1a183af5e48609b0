// Snapshots (uploads and restores) while Walrus goes away: the SC's requests for chunk objects go through a proxy that, while
// "down", drops the connection as a killed Walrus does (the proxy stands in for kill -9 of an in-process
// Walrus, which a test cannot do to itself); everything else is the real SC, Walrus and tgtd.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDaemonDatabase } from '@mallee/store';
import { sc, WireError } from '@mallee/wire';
import { blockStorageFile, S3Client } from '../src/index.js';
import { BLOCKSTORAGE, startTestSc, tgtHere, type TestSc } from './harness.js';

const here = tgtHere();
if (!here) console.warn('walrus-outage.test.ts skipped: tgtd is not running (deploy/lib.sh ensure_tgt starts it)');

const MiB = 1024 * 1024;
let t: TestSc;
let s3: S3Client;
let proxy: Server;
/** While set, chunk requests (PUT, GET or DELETE of <prefix>/chunks/…) lose their connection; counts those dropped. */
const outage = { down: false, dropped: 0 };

beforeAll(async () => {
  if (!here) return;
  t = await startTestSc();
  const walrus = new URL(t.walrus.url);
  proxy = createServer((req, res) => {
    if (outage.down && req.url?.includes('/chunks/')) {
      outage.dropped++;
      req.socket.destroy();
      return;
    }
    const up = request({ host: walrus.hostname, port: walrus.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  // The SC reads its Walrus credentials per use: from now on it reaches Walrus through the proxy.
  writeFileSync(blockStorageFile(t.home), JSON.stringify({ walrusUrl: url, bucket: 'mallee-snapshots', accessKeyId: BLOCKSTORAGE.accessKeyId, secretAccessKey: BLOCKSTORAGE.secretAccessKey }));
  s3 = new S3Client(() => ({ walrusUrl: t.walrus.url, bucket: 'mallee-snapshots', accessKeyId: BLOCKSTORAGE.accessKeyId, secretAccessKey: BLOCKSTORAGE.secretAccessKey }));
});
afterAll(async () => {
  outage.down = false;
  await t?.close();
  await new Promise((r) => proxy?.close(r));
});

function writeAt(id: string, offset: number, data: Buffer): void {
  const fd = openSync(join(t.home, 'sc', 'volumes', `${id}.img`), 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const describeSnap = async (id: string) => (await t.client.call(sc.DescribeStorageSnapshots, { snapshotIds: [id] })).snapshots[0];
async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
/** What the SC's own database says is being deleted (read-only, beside the running SC; PostgreSQL in test:scale-out). */
function scRows(): { deleting: number; doomedChunks: number } {
  const db = openDaemonDatabase('', join(t.home, 'sc.sqlite'), 'sc', { migrations: [], readonly: true });
  try {
    return {
      deleting: db.prepare("SELECT COUNT(*) FROM snapshots WHERE status = 'deleting'").pluck().get() as number,
      doomedChunks: db.prepare("SELECT COUNT(*) FROM chunks WHERE state = 'deleting'").pluck().get() as number,
    };
  } finally {
    db.close();
  }
}
const chunkKeys = async () => (await s3.list('mallee-snapshots', `${t.sc.prefix}/chunks/`)).map((o) => o.key).sort();
const manifestChunks = async (id: string) => {
  const m = JSON.parse((await s3.get('mallee-snapshots', `${t.sc.prefix}/manifests/${id}.json`)).toString('utf8')) as { chunks: [number, string][]; chunkPrefix: string };
  return m.chunks.map(([, h]) => `${m.chunkPrefix}${h}`);
};

describe.skipIf(!here)('snapshots while Walrus is down', () => {
  it('an upload cut off by Walrus going away completes once it is back (not failed), holding exactly its chunks', async () => {
    const vol = 'vol-0000001a';
    await t.client.call(sc.CreateStorageVolume, { volumeId: vol, sizeGiB: 1 });
    writeAt(vol, 10 * MiB, randomBytes(6 * MiB));
    outage.down = true;
    outage.dropped = 0;
    const s = await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-0000001a', volumeId: vol, consistency: 'detached' });
    expect(s.snapshot.status).toBe('pending');
    await until('chunk uploads tried and dropped', async () => (outage.dropped >= 2 ? true : undefined));
    // Still pending while Walrus is away (before the fix: failed, "Walrus … unreachable").
    await sleep(1500);
    expect((await describeSnap('snap-0000001a'))?.status).toBe('pending');
    outage.down = false;
    const done = await until('snap-0000001a settled', async () => {
      const x = await describeSnap('snap-0000001a');
      return x?.status === 'pending' ? undefined : x;
    });
    expect([done?.status, done?.reason]).toEqual(['completed', undefined]);
    const named = await manifestChunks('snap-0000001a');
    expect(named).toHaveLength(6);
    expect(await chunkKeys()).toEqual([...new Set(named)].sort());
  }, 120_000);

  it('a restore cut off by Walrus going away completes once it is back (not failed): the volume is the snapshot\'s data', async () => {
    outage.down = true;
    outage.dropped = 0;
    const loc = { bucket: 'mallee-snapshots', manifestKey: `${t.sc.prefix}/manifests/snap-0000001a.json` };
    const v = await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000001c', sizeGiB: 1, snapshot: { snapshotId: 'snap-0000001a', location: loc } });
    expect(v.volume.status).toBe('creating');
    await until('chunk reads tried and dropped', async () => (outage.dropped >= 2 ? true : undefined));
    // Still creating while Walrus is away (before the fix: failed, "restore from snap-0000001a failed: Walrus … unreachable").
    await sleep(1500);
    const during = (await t.client.call(sc.DescribeStorageVolumes, { volumeIds: ['vol-0000001c'] })).volumes[0];
    expect(during?.status).toBe('creating');
    outage.down = false;
    const done = await until('vol-0000001c settled', async () => {
      const x = (await t.client.call(sc.DescribeStorageVolumes, { volumeIds: ['vol-0000001c'] })).volumes[0];
      return x?.status === 'creating' ? undefined : x;
    });
    expect([done?.status, done?.reason]).toEqual(['available', undefined]);
    const read = (id: string) => readFileSync(join(t.home, 'sc', 'volumes', `${id}.img`)).subarray(10 * MiB, 16 * MiB);
    expect(read('vol-0000001c').equals(read('vol-0000001a'))).toBe(true);
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-0000001c' });
  }, 120_000);

  it('a delete during the outage ends the retrying upload at once; left half done, a restart finishes it: chunks no manifest names are freed, the others stay', async () => {
    const vol = 'vol-0000001a';
    writeAt(vol, 40 * MiB, randomBytes(3 * MiB));
    const kept = await manifestChunks('snap-0000001a');
    outage.down = true;
    outage.dropped = 0;
    await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-0000001b', volumeId: vol, consistency: 'detached' });
    await until('chunk uploads tried and dropped', async () => (outage.dropped >= 1 ? true : undefined));
    // Walrus is still away: the delete stops the upload; freeing the new chunks needs Walrus, so it may not finish now.
    const started = Date.now();
    const first = await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-0000001b' }).then(() => 'deleted', (err: unknown) => (err instanceof WireError ? err.code : String(err)));
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await describeSnap('snap-0000001b')).toBeUndefined();
    // Half done: the SC's row says deleting, the new chunks' rows are marked deleting (their objects unknown to it).
    expect(first).not.toBe('deleted');
    expect(scRows()).toEqual({ deleting: 1, doomedChunks: 3 });
    outage.down = false;
    // A restart (as after kill -9 mid-delete) finishes it once Walrus answers: only the chunks of snap-0000001a stay.
    await t.restart();
    await until('the restarted SC finished the delete', async () => ((await chunkKeys()).length === new Set(kept).size ? true : undefined));
    expect(await chunkKeys()).toEqual([...new Set(kept)].sort());
    expect(await describeSnap('snap-0000001b')).toBeUndefined();
    await until('the restarted SC finished the delete in its database', async () => (scRows().deleting === 0 ? true : undefined));
    expect(scRows()).toEqual({ deleting: 0, doomedChunks: 0 });
    // The clc asks again (storage_deletions) too: a delete of what is gone answers, changing nothing.
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-0000001b' });
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-0000001a' });
    expect(await chunkKeys()).toEqual([]);
    await t.client.call(sc.DeleteStorageVolume, { volumeId: vol });
  }, 120_000);
});
