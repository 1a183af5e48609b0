// The Storage Controller on a full disk (issue 8): its home is a small tmpfs (needs root, as CI runs),
// its Walrus elsewhere, tgtd the host's. A snapshot whose point-in-time copy does not fit and a restore
// that does not fit fail cleanly (InsufficientStorage; the volume `failed` with the reason), keep no
// partial file, harm no volume's data, and both work once space is freed. No guest here: the test
// writes to the volumes' backing files, standing in for a guest writing through iSCSI.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sc } from '@mallee/wire';
import { startTestSc, tgtHere, type TestSc } from './harness.js';

const MiB = 1024 * 1024;
const root = process.getuid?.() === 0;
const here = tgtHere() && root;
if (!here) console.warn(`disk-full.test.ts skipped: ${root ? 'tgtd is not running (deploy/lib.sh ensure_tgt starts it)' : 'mounting a tmpfs needs root'}`);

let dir = '';
let mounted = false;
let t: TestSc | undefined;

beforeAll(async () => {
  if (!here) return;
  dir = mkdtempSync(join(tmpdir(), 'mallee-sc-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'mallee-sc-full', dir]);
  mounted = true;
  t = await startTestSc({}, { home: dir });
}, 60_000);
afterAll(async () => {
  await t?.close();
  if (mounted) execFileSync('umount', ['-l', dir]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const volFile = (id: string) => join(dir, 'sc', 'volumes', `${id}.img`);
const cutsDir = () => join(dir, 'sc', 'cuts');
const freeBytes = () => { const s = statfsSync(dir); return s.bavail * s.bsize; };
function writeAt(id: string, offset: number, data: Buffer): void {
  const fd = openSync(volFile(id), 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}
function md5At(file: string, offset: number, length: number): string {
  const buf = Buffer.alloc(length);
  const fd = openSync(file, 'r');
  readSync(fd, buf, 0, length, offset);
  closeSync(fd);
  return createHash('md5').update(buf).digest('hex');
}
async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const snapshot = async (id: string) => (await t!.client.call(sc.DescribeStorageSnapshots, { snapshotIds: [id] })).snapshots[0];
const volume = async (id: string) => (await t!.client.call(sc.DescribeStorageVolumes, { volumeIds: [id] })).volumes[0];
const settled = (id: string) => until(`${id} restored or failed`, async () => {
  const v = await volume(id);
  return v && v.status !== 'creating' ? v : undefined;
});

describe.skipIf(!here)('storage controller on a full disk', () => {
  it('a snapshot copy and a restore that do not fit fail cleanly (no partial file, data intact) and work once space is freed', async () => {
    const c = t!.client;
    // vol-a holds 12 MiB; its first snapshot is taken while there is room (the cut goes once uploaded).
    await c.call(sc.CreateStorageVolume, { volumeId: 'vol-000000a1', sizeGiB: 1 });
    const dataA = randomBytes(12 * MiB);
    writeAt('vol-000000a1', 100 * MiB, dataA);
    await c.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-000000a1', volumeId: 'vol-000000a1', consistency: 'detached' });
    const first = await until('snap-000000a1 completed', async () => ((await snapshot('snap-000000a1'))?.status === 'completed' ? snapshot('snap-000000a1') : undefined));
    await until('the first cut dropped', async () => (readdirSync(cutsDir()).length === 0 ? true : undefined));

    // vol-b fills the disk: what is left is less than another copy of vol-a's 12 MiB.
    await c.call(sc.CreateStorageVolume, { volumeId: 'vol-000000b1', sizeGiB: 1 });
    const fill = Math.floor((freeBytes() - 6 * MiB) / MiB) * MiB;
    writeAt('vol-000000b1', 0, randomBytes(fill));
    writeAt('vol-000000a1', 300 * MiB, randomBytes(MiB));
    const free = freeBytes();
    expect(free, 'the tmpfs is nearly full').toBeLessThan(12 * MiB);

    // The snapshot: refused with the reason, its row failed, no partial cut, the space back, vol-a intact.
    const refused = await c.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-000000a2', volumeId: 'vol-000000a1', consistency: 'detached' }).then(() => undefined, (err: unknown) => err);
    expect(refused).toMatchObject({ code: 'InsufficientStorage' });
    expect((refused as Error).message).toMatch(/no room for the point-in-time copy of vol-000000a1 .*No space left on device/);
    expect(await snapshot('snap-000000a2')).toMatchObject({ status: 'failed' });
    expect(readdirSync(cutsDir())).toEqual([]);
    expect(Math.abs(freeBytes() - free)).toBeLessThan(MiB);
    expect(md5At(volFile('vol-000000a1'), 100 * MiB, 12 * MiB)).toBe(createHash('md5').update(dataA).digest('hex'));

    // The restore: the volume fails with the reason, nothing of it stays on disk.
    await c.call(sc.CreateStorageVolume, { volumeId: 'vol-000000c1', sizeGiB: 1, snapshot: { snapshotId: 'snap-000000a1', location: first!.location } });
    const failed = await settled('vol-000000c1');
    expect(failed.status).toBe('failed');
    expect(failed.reason).toMatch(/restore from snap-000000a1 failed: .*(ENOSPC|no space left)/i);
    expect(existsSync(volFile('vol-000000c1'))).toBe(false);
    expect(existsSync(`${volFile('vol-000000c1')}.partial`)).toBe(false);
    expect(Math.abs(freeBytes() - free)).toBeLessThan(MiB);

    // The SC still serves; with vol-b deleted both work, and the restore is byte-identical.
    await c.call(sc.DeleteStorageVolume, { volumeId: 'vol-000000c1' });
    await c.call(sc.DeleteStorageVolume, { volumeId: 'vol-000000b1' });
    await c.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-000000a3', volumeId: 'vol-000000a1', consistency: 'detached' });
    await until('snap-000000a3 completed', async () => ((await snapshot('snap-000000a3'))?.status === 'completed' ? true : undefined));
    await c.call(sc.CreateStorageVolume, { volumeId: 'vol-000000c2', sizeGiB: 1, snapshot: { snapshotId: 'snap-000000a1', location: first!.location } });
    expect((await settled('vol-000000c2')).status).toBe('available');
    expect(md5At(volFile('vol-000000c2'), 100 * MiB, 12 * MiB)).toBe(createHash('md5').update(dataA).digest('hex'));

    for (const s of ['snap-000000a1', 'snap-000000a2', 'snap-000000a3']) await c.call(sc.DeleteStorageSnapshot, { snapshotId: s });
    for (const v of ['vol-000000a1', 'vol-000000c2']) await c.call(sc.DeleteStorageVolume, { volumeId: v });
  }, 180_000);
});
