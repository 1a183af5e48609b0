// The SC on Ceph RBD (SC_BACKEND=ceph-rbd) against the harness's throwaway Ceph: volumes are RBD images
// of the SC's prefix in the pool, ExportVolume hands out the image and the cephx user (key sealed) that a
// node's QEMU opens it with, snapshots are RBD snapshots uploaded as export-diff incrementals into the
// content-addressed chunk store, restores clone while the RBD snapshot exists and import the diffs from
// Walrus once it is gone. QEMU (qemu-io, the same librbd a guest's disk uses) stands in for the guest
// here; the guest path is rbd-guests.test.ts. Needs MALLEE_TEST_CEPH_* (backends.sh up ceph) and tgtd.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { openSecret, sc } from '@mallee/wire';
import { keyOf, S3Client } from '../../services/sc/src/index.js';
import { BLOCKSTORAGE, startTestSc, tgtHere, type TestSc } from '../../services/sc/test/harness.js';

const run = promisify(execFile);
const conf = process.env.MALLEE_TEST_CEPH_CONF;
const keyring = process.env.MALLEE_TEST_CEPH_KEYRING;
const user = process.env.MALLEE_TEST_CEPH_ID ?? 'mallee';
const pool = process.env.MALLEE_TEST_CEPH_POOL ?? 'rbd';
const rbd = async (...args: string[]) => (await run('rbd', ['-c', conf!, '--id', user, '--keyring', keyring!, ...args], { maxBuffer: 1 << 26 })).stdout;
const qemuPath = (image: string) => `rbd:${pool}/${image}:id=${user}:keyring=${keyring}:conf=${conf}`;
const qemuIo = async (image: string, ...cmds: string[]) => (await run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), qemuPath(image)])).stdout;
/** md5 of a whole image as `rbd export` streams it (holes read as zeros). */
const md5Of = async (image: string) => {
  const child = spawn('rbd', ['-c', conf!, '--id', user, '--keyring', keyring!, 'export', '--no-progress', `${pool}/${image}`, '-'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const hash = createHash('md5');
  for await (const piece of child.stdout) hash.update(piece as Buffer);
  return hash.digest('hex');
};

let t: TestSc;
let s3: S3Client;
const image = (volumeId: string) => `${t.sc.prefix}.${volumeId}`;
const until = async <T>(what: string, f: () => Promise<T | undefined>, ms = 120_000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};
const snapshotDone = (id: string) => until(`${id} completed`, async () => {
  const s = (await t.client.call(sc.DescribeStorageSnapshots, { snapshotIds: [id] })).snapshots[0];
  if (s?.status === 'failed') throw new Error(`${id} failed: ${s.reason}`);
  return s?.status === 'completed' ? s : undefined;
});
const volumeAvailable = (id: string) => until(`${id} available`, async () => {
  const v = (await t.client.call(sc.DescribeStorageVolumes, { volumeIds: [id] })).volumes[0];
  if (v?.status === 'failed') throw new Error(`${id} failed: ${v.reason}`);
  return v?.status === 'available' ? v : undefined;
});
const ours = async () => (JSON.parse(await rbd('ls', '--format', 'json', pool)) as string[]).filter((n) => n.startsWith(`${t.sc.prefix}.`));

describe.skipIf(!conf || !tgtHere())('storage controller on Ceph RBD', () => {
  beforeAll(async () => {
    t = await startTestSc({ LOG_LEVEL: 'error', SC_BACKEND: 'ceph-rbd', SC_CEPH_CONF: conf!, SC_CEPH_KEYRING: keyring!, SC_CEPH_USER: user, SC_CEPH_POOL: pool });
    s3 = new S3Client(() => ({ walrusUrl: t.walrus.url, bucket: 'mallee-snapshots', accessKeyId: BLOCKSTORAGE.accessKeyId, secretAccessKey: BLOCKSTORAGE.secretAccessKey }));
  });
  afterAll(async () => {
    if (!t) return;
    const prefix = t.sc.prefix;
    await t.close();
    // Whatever a failed test left in the pool under this SC's prefix.
    for (const name of (JSON.parse(await rbd('ls', '--format', 'json', pool)) as string[]).filter((n) => n.startsWith(`${prefix}.`))) {
      for (const s of JSON.parse(await rbd('snap', 'ls', '--format', 'json', `${pool}/${name}`)) as { name: string; protected: string }[]) {
        if (s.protected === 'true') await rbd('snap', 'unprotect', `${pool}/${name}@${s.name}`).catch(() => undefined);
      }
      await rbd('snap', 'purge', `${pool}/${name}`).catch(() => undefined);
      await rbd('rm', `${pool}/${name}`).catch(() => undefined);
    }
  });

  it('creates a volume as an RBD image and exports it as the image, the monitors and the cephx user with its key sealed', async () => {
    const { volume } = await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-000000a1', sizeGiB: 1 });
    expect(volume.status).toBe('available');
    const info = JSON.parse(await rbd('info', '--format', 'json', `${pool}/${image('vol-000000a1')}`)) as { size: number };
    expect(info.size).toBe(1024 ** 3);
    const { target } = await t.client.call(sc.ExportVolume, { volumeId: 'vol-000000a1', initiatorAddress: '127.0.0.1' });
    if (target.kind !== 'rbd') throw new Error(`expected an RBD target, got ${target.kind}`);
    expect(target).toMatchObject({ pool, image: image('vol-000000a1'), user });
    const port = Number(/mon host = .*:(\d+)/.exec(readFileSync(conf!, 'utf8'))![1]);
    expect(target.monitors).toEqual([{ host: '127.0.0.1', port }]);
    expect(target.secret).not.toBe(keyOf(readFileSync(keyring!, 'utf8'), user));
    expect(openSecret(t.key, target.secret)).toBe(keyOf(readFileSync(keyring!, 'utf8'), user));
    // QEMU opens it with exactly what the target says (the key on the command line, as libvirt passes it).
    const mon = target.monitors.map((m) => `${m.host}\\:${m.port}`).join(';');
    const viaTarget = `rbd:${target.pool}/${target.image}:id=${target.user}:key=${openSecret(t.key, target.secret)}:auth_supported=cephx:mon_host=${mon}:conf=/dev/null`;
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 4M', viaTarget]);
    expect(await qemuIo(image('vol-000000a1'), 'read -P 0x5a 0 4M')).toMatch(/read 4194304\/4194304 bytes/);
  });

  it('snapshots incrementally with export-diff: after 64 scattered 4 KiB writes the second snapshot uploads about 256 KiB, not the volume', async () => {
    const v = 'vol-000000a1';
    await qemuIo(image(v), 'write -P 0x11 16M 8M');
    await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-000000b1', volumeId: v, consistency: 'crash' });
    const first = await snapshotDone('snap-000000b1');
    // 12 MiB written so far (4 + 8): the full diff carries them, and nothing of the 1 GiB of holes; its
    // chunks that hold only the repeated pattern are one object (content-addressed).
    const full = JSON.parse((await s3.get('mallee-snapshots', first.location.manifestKey)).toString()) as { segments: { bytes: number; chunks: string[] }[] };
    expect(full.segments[0]!.bytes).toBeGreaterThanOrEqual(12 * 1024 * 1024);
    expect(full.segments[0]!.bytes).toBeLessThan(12 * 1024 * 1024 + 64 * 1024);
    expect(first.uploadedBytes).toBeLessThanOrEqual(full.segments[0]!.bytes);
    expect(first.uploadedChunks).toBe(new Set(full.segments[0]!.chunks).size);
    expect(JSON.parse(await rbd('snap', 'ls', '--format', 'json', `${pool}/${image(v)}`))).toEqual([expect.objectContaining({ name: 'snap-000000b1' })]);
    await qemuIo(image(v), ...Array.from({ length: 64 }, (_, i) => `write -P 0x${(i + 0x20).toString(16)} ${(i * 8 + 100) * 1024 * 1024} 4k`));
    await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-000000b2', volumeId: v, consistency: 'crash' });
    const second = await snapshotDone('snap-000000b2');
    expect(second.parentSnapshotId).toBe('snap-000000b1');
    expect(second.uploadedBytes).toBeGreaterThanOrEqual(64 * 4096);
    expect(second.uploadedBytes).toBeLessThan(2 * 64 * 4096);
    const manifest = JSON.parse((await s3.get('mallee-snapshots', second.location.manifestKey)).toString()) as { format: string; segments: { snapshotId: string; fromSnapshotId?: string }[] };
    expect(manifest.format).toBe('mallee-rbd-diff-1');
    expect(manifest.segments.map((s) => [s.snapshotId, s.fromSnapshotId])).toEqual([['snap-000000b1', undefined], ['snap-000000b2', 'snap-000000b1']]);

    // Two 4 KiB writes 1 MiB apart in an object never written before: rbd's own export-diff carries the MiB
    // between them (zeros); what the sc uploads carries the 8 KiB.
    await qemuIo(image(v), 'write -P 0x66 700M 4k', 'write -P 0x67 701M 4k');
    await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-000000b3', volumeId: v, consistency: 'crash' });
    const third = await snapshotDone('snap-000000b3');
    const raw = (await run('sh', ['-c', `rbd -c '${conf}' --id '${user}' --keyring '${keyring}' export-diff --no-progress --from-snap snap-000000b2 '${pool}/${image(v)}@snap-000000b3' - | wc -c`])).stdout;
    expect(Number(raw)).toBeGreaterThan(1024 * 1024);
    const m3 = JSON.parse((await s3.get('mallee-snapshots', third.location.manifestKey)).toString()) as { segments: { bytes: number }[] };
    expect(m3.segments.at(-1)!.bytes).toBeGreaterThanOrEqual(8192);
    expect(m3.segments.at(-1)!.bytes).toBeLessThan(16384);
    expect(third.uploadedBytes).toBeLessThan(16384);
  });

  it('restores by cloning the RBD snapshot while it exists, by importing the diffs from Walrus once it is gone; both byte-identical', async () => {
    const location = (await snapshotDone('snap-000000b2')).location;
    await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-000000a2', sizeGiB: 2, snapshot: { snapshotId: 'snap-000000b2', location } });
    await volumeAvailable('vol-000000a2');
    const clone = JSON.parse(await rbd('info', '--format', 'json', `${pool}/${image('vol-000000a2')}`)) as { size: number; parent?: { image: string; snapshot: string } };
    expect(clone.parent).toMatchObject({ image: image('vol-000000a1'), snapshot: 'snap-000000b2' });
    expect(clone.size).toBe(2 * 1024 ** 3);
    expect(await qemuIo(image('vol-000000a2'), 'read -P 0x5a 0 4M', 'read -P 0x11 16M 8M', 'read -P 0x20 100M 4k', 'read -P 0x5f 604M 4k', 'read -P 0 1G 1M')).not.toMatch(/Pattern verification failed/);
    // A write to the source after the snapshot is not in the clone.
    await qemuIo(image('vol-000000a1'), 'write -P 0x77 0 4k');
    expect(await qemuIo(image('vol-000000a2'), 'read -P 0x5a 0 4k')).not.toMatch(/Pattern verification failed/);

    // The first snapshot goes: its chain stays restorable through the second (it holds the first diff's chunks).
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-000000b1' });
    // The source volume goes with its RBD snapshots: the clone is flattened first and keeps its data.
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-000000a1' });
    expect(await ours()).toEqual([image('vol-000000a2')]);
    expect((JSON.parse(await rbd('info', '--format', 'json', `${pool}/${image('vol-000000a2')}`)) as { parent?: unknown }).parent).toBeUndefined();
    await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-000000a3', sizeGiB: 2, snapshot: { snapshotId: 'snap-000000b2', location } });
    await volumeAvailable('vol-000000a3');
    expect((JSON.parse(await rbd('info', '--format', 'json', `${pool}/${image('vol-000000a3')}`)) as { parent?: unknown }).parent).toBeUndefined();
    expect(JSON.parse(await rbd('snap', 'ls', '--format', 'json', `${pool}/${image('vol-000000a3')}`))).toEqual([]);
    expect(await md5Of(image('vol-000000a3'))).toBe(await md5Of(image('vol-000000a2')));
  });

  it('DeleteStorageVolume waits out a watcher that closes the image within seconds, and fails naming the watcher while one holds on', async () => {
    // qemu-io reading commands from its stdin keeps the image open (a watch), as a guest's QEMU does until its disk is unplugged.
    const holdOpen = (volumeId: string) => {
      const child = spawn('qemu-io', ['-f', 'raw', qemuPath(image(volumeId))], { stdio: ['pipe', 'ignore', 'ignore'] });
      return { child, closed: new Promise((r) => child.once('exit', r)) };
    };
    const watched = async (volumeId: string) => (JSON.parse(await rbd('status', '--format', 'json', `${pool}/${image(volumeId)}`)) as { watchers: unknown[] }).watchers.length > 0;
    for (const v of ['vol-000000b1', 'vol-000000b2']) await t.client.call(sc.CreateStorageVolume, { volumeId: v, sizeGiB: 1 });

    const brief = holdOpen('vol-000000b1');
    await until('a watcher on vol-000000b1', async () => ((await watched('vol-000000b1')) ? true : undefined), 20_000);
    setTimeout(() => brief.child.stdin.end('quit\n'), 1500);
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-000000b1' });
    await brief.closed;
    expect((await ours()).includes(image('vol-000000b1'))).toBe(false);

    const stays = holdOpen('vol-000000b2');
    await until('a watcher on vol-000000b2', async () => ((await watched('vol-000000b2')) ? true : undefined), 20_000);
    const err = await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-000000b2' }).then(() => undefined, (e: Error) => e);
    expect(err).toMatchObject({ code: 'VolumeInUse' });
    expect(err?.message).toContain('"watchers":[{');
    expect((await ours()).includes(image('vol-000000b2'))).toBe(true);
    stays.child.stdin.end('quit\n');
    await stays.closed;
    // Asked again (as the clc's poller does), it goes.
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-000000b2' });
    expect((await ours()).includes(image('vol-000000b2'))).toBe(false);
  }, 120_000);

  it('deleting every snapshot and volume leaves no chunk in Walrus and no image of this SC in the pool', async () => {
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-000000b2' });
    expect((await s3.list('mallee-snapshots', `${t.sc.prefix}/chunks/`)).length).toBeGreaterThan(0); // snap-000000b3's chain
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-000000b3' });
    expect(await s3.list('mallee-snapshots', `${t.sc.prefix}/chunks/`)).toEqual([]);
    for (const v of ['vol-000000a2', 'vol-000000a3']) await t.client.call(sc.DeleteStorageVolume, { volumeId: v });
    expect(await ours()).toEqual([]);
  });
});
