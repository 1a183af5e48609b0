// The Storage Controller with the real tgtd and an in-process Walrus. No guest here: the tests write
// to a volume's backing file directly, standing in for a guest writing through iSCSI (the guest path
// is test/e2e/volumes-guests.test.ts); everything else is the real thing.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSecret, sc, WireError } from '@mallee/wire';
import { S3Client, tgt } from '../src/index.js';
import { BLOCKSTORAGE, startTestSc, tgtHere, type TestSc } from './harness.js';

const here = tgtHere();
if (!here) console.warn('sc.test.ts skipped: tgtd is not running (deploy/lib.sh ensure_tgt starts it)');

const MiB = 1024 * 1024;
let t: TestSc;
let s3: S3Client;
beforeAll(async () => {
  if (!here) return;
  t = await startTestSc({ SC_MAX_VOLUME_SIZE_GB: 4, SC_MAX_TOTAL_STORAGE_GB: 6 });
  s3 = new S3Client(() => ({ walrusUrl: t.walrus.url, bucket: 'mallee-snapshots', accessKeyId: BLOCKSTORAGE.accessKeyId, secretAccessKey: BLOCKSTORAGE.secretAccessKey }));
});
afterAll(async () => {
  await t?.close();
});

const volFile = (id: string) => join(t.home, 'sc', 'volumes', `${id}.img`);
function writeAt(id: string, offset: number, data: Buffer): void {
  const fd = openSync(volFile(id), 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}
/** ExportVolume on this (file-backend) SC: always an iSCSI target. */
async function exportIscsi(req: { volumeId: string; initiatorAddress: string }): Promise<{ target: sc.IscsiTarget }> {
  const { target } = await t.client.call(sc.ExportVolume, req);
  if (target.kind !== 'iscsi') throw new Error(`expected an iSCSI target, got ${target.kind}`);
  return { target };
}
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const until = async <T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
const snapshotDone = (id: string) => until(`${id} completed`, async () => {
  const s = (await t.client.call(sc.DescribeStorageSnapshots, { snapshotIds: [id] })).snapshots[0];
  if (s?.status === 'failed') throw new Error(`${id} failed: ${s.reason}`);
  return s?.status === 'completed' ? s : undefined;
});
const chunkObjects = async () => (await s3.list('mallee-snapshots', `${t.sc.prefix}/chunks/`));

describe.skipIf(!here)('storage controller', () => {
  it('creates a sparse volume, exports it with CHAP and an initiator ACL in tgtd, unexports it', async () => {
    const { volume } = await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000000a', sizeGiB: 1 });
    expect(volume.status).toBe('available');
    expect(existsSync(volFile('vol-0000000a'))).toBe(true);
    const { target } = await exportIscsi({ volumeId: 'vol-0000000a', initiatorAddress: '127.0.0.1' });
    expect(target.iqn).toContain(`:${t.sc.prefix}.vol-0000000a`);
    expect(openSecret(t.key, target.chapSecret)).toMatch(/^[0-9a-f]{24}$/);
    const found = (await tgt.targets()).find((x) => x.iqn === target.iqn)!;
    expect(found.luns.get(1)).toBe(volFile('vol-0000000a'));
    expect(found.accounts).toEqual([target.chapUser]);
    expect(found.acls).toEqual(['127.0.0.1']);
    // Exporting again is idempotent: same target, no second one.
    const again = await exportIscsi({ volumeId: 'vol-0000000a', initiatorAddress: '127.0.0.1' });
    expect(again.target.iqn).toBe(target.iqn);
    expect((await tgt.targets()).filter((x) => x.iqn === target.iqn)).toHaveLength(1);
    await t.client.call(sc.UnexportVolume, { volumeId: 'vol-0000000a', initiatorAddress: '127.0.0.1' });
    expect((await tgt.targets()).some((x) => x.iqn === target.iqn)).toBe(false);
    expect((await tgt.accounts()).includes(target.chapUser)).toBe(false);
  });

  it('the target lets in only the exported initiator address with the right CHAP secret (QEMU\'s own iSCSI initiator)', async () => {
    const vol = 'vol-0000000f';
    await t.client.call(sc.CreateStorageVolume, { volumeId: vol, sizeGiB: 1 });
    const url = (user: string, secret: string, iqn: string) => `iscsi://${user}%${secret}@127.0.0.1:3260/${iqn}/1`;
    const qemuImg = (u: string) => { try { execFileSync('qemu-img', ['info', u], { stdio: 'pipe', timeout: 30_000 }); return true; } catch { return false; } };
    const { target } = await exportIscsi({ volumeId: vol, initiatorAddress: '127.0.0.1' });
    const secret = openSecret(t.key, target.chapSecret);
    expect(qemuImg(url(target.chapUser, secret, target.iqn))).toBe(true);
    expect(qemuImg(url(target.chapUser, 'wrongsecret12345', target.iqn))).toBe(false);
    await t.client.call(sc.UnexportVolume, { volumeId: vol });
    // Exported to another address only: this host (127.0.0.1) is not let in, even with the right secret.
    const other = await exportIscsi({ volumeId: vol, initiatorAddress: '127.0.0.2' });
    expect(qemuImg(url(other.target.chapUser, openSecret(t.key, other.target.chapSecret), other.target.iqn))).toBe(false);
    await t.client.call(sc.DeleteStorageVolume, { volumeId: vol });
    expect((await tgt.targets()).some((x) => x.iqn === other.target.iqn)).toBe(false);
  });

  it('refuses volumes above the size limit and beyond the total storage', async () => {
    await expect(t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000000b', sizeGiB: 5 })).rejects.toMatchObject({ code: 'VolumeSizeExceeded' });
    await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000000c', sizeGiB: 4 });
    await expect(t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000000d', sizeGiB: 2 })).rejects.toMatchObject({ code: 'VolumeLimitExceeded' });
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-0000000c' });
    expect(existsSync(volFile('vol-0000000c'))).toBe(false);
  });

  it('snapshots incrementally: the second snapshot after changing 1% uploads about 1%, identical chunks are stored once, a restore is byte-identical', async () => {
    const vol = 'vol-0000000a';
    const data = randomBytes(8 * MiB);
    writeAt(vol, 100 * MiB, data);
    const s1 = await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-00000001', volumeId: vol, consistency: 'detached' });
    expect(s1.snapshot.status).toBe('pending');
    const done1 = await snapshotDone('snap-00000001');
    expect(done1.uploadedBytes).toBe(8 * MiB);
    expect(done1.cutMs).toBeGreaterThan(0);
    const before = await chunkObjects();
    expect(before).toHaveLength(8);

    // 1% of 1 GiB, in a new place, plus one chunk that repeats existing content (stored once).
    const change = randomBytes(Math.ceil(1024 * MiB / 100 / MiB) * MiB);
    writeAt(vol, 500 * MiB, change);
    writeAt(vol, 900 * MiB, data.subarray(0, MiB));
    await t.client.call(sc.CreateStorageSnapshot, { snapshotId: 'snap-00000002', volumeId: vol, consistency: 'detached' });
    const done2 = await snapshotDone('snap-00000002');
    expect(done2.parentSnapshotId).toBe('snap-00000001');
    const after = await chunkObjects();
    const added = after.filter((o) => !before.some((b) => b.key === o.key)).reduce((n, o) => n + o.size, 0);
    // Measured in Walrus: what the second snapshot added is the changed 1% (11 MiB), not the 1 GiB volume.
    expect(added).toBe(change.length);
    expect(done2.uploadedBytes).toBe(change.length);
    expect(done2.reusedChunks).toBe(9);

    const loc = done2.location;
    await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000000e', sizeGiB: 1, snapshot: { snapshotId: 'snap-00000002', location: loc } });
    await until('restored', async () => ((await t.client.call(sc.DescribeStorageVolumes, { volumeIds: ['vol-0000000e'] })).volumes[0]?.status === 'available' ? true : undefined));
    expect(md5(readFileSync(volFile('vol-0000000e')))).toBe(md5(readFileSync(volFile(vol))));

    // Deleting the first snapshot frees nothing the second still uses; deleting the second frees everything.
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-00000001' });
    expect((await chunkObjects()).length).toBe(after.length);
    await t.client.call(sc.CopyStorageSnapshot, { snapshotId: 'snap-00000003', sourceSnapshotId: 'snap-00000002' });
    await snapshotDone('snap-00000003');
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-00000002' });
    expect((await chunkObjects()).length).toBe(after.length);
    await t.client.call(sc.DeleteStorageSnapshot, { snapshotId: 'snap-00000003' });
    expect(await chunkObjects()).toEqual([]);
    expect(await s3.list('mallee-snapshots', `${t.sc.prefix}/manifests/`)).toEqual([]);
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-0000000e' });
  }, 180_000);

  it('after a restart, tgtd matches the exports: an orphan target of ours is removed, a missing one recreated', async () => {
    const { target } = await exportIscsi({ volumeId: 'vol-0000000a', initiatorAddress: '127.0.0.2' });
    // Simulate tgtd losing the target, and a stray target with our prefix that no export records.
    const mine = (await tgt.targets()).find((x) => x.iqn === target.iqn)!;
    await tgt.deleteTarget(mine.tid);
    const strayTid = Math.max(...(await tgt.targets()).map((x) => x.tid), 0) + 7;
    await tgt.createTarget(strayTid, `iqn.2010-05.org.mallee:${t.sc.prefix}.vol-deadbeef.stray`);
    await t.restart();
    const after = (await tgt.targets()).filter((x) => x.iqn.includes(`:${t.sc.prefix}.`));
    expect(after.map((x) => x.iqn)).toEqual([target.iqn]);
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-0000000a' });
    expect((await tgt.targets()).some((x) => x.iqn === target.iqn)).toBe(false);
  });

  it('a half-made target (an SC killed between making the target and adding its LUN) is made whole: by a restart, and by exporting again', async () => {
    await t.client.call(sc.CreateStorageVolume, { volumeId: 'vol-0000000c', sizeGiB: 1 });
    const whole = async (iqn: string, initiator: string) => {
      const found = (await tgt.targets()).filter((x) => x.iqn === iqn);
      expect(found).toHaveLength(1);
      expect([found[0]!.luns.get(1), found[0]!.acls, found[0]!.accounts.length]).toEqual([volFile('vol-0000000c'), [initiator], 1]);
    };
    // What the kill leaves: the export's row, and a target of its IQN with no LUN, account or ACL.
    const halfMake = async (initiator: string) => {
      const { target } = await exportIscsi({ volumeId: 'vol-0000000c', initiatorAddress: initiator });
      const mine = (await tgt.targets()).find((x) => x.iqn === target.iqn)!;
      await tgt.deleteTarget(mine.tid);
      await tgt.createTarget(mine.tid, target.iqn);
      expect((await tgt.targets()).find((x) => x.iqn === target.iqn)!.luns.size).toBe(0);
      return target.iqn;
    };
    const a = await halfMake('127.0.0.3');
    await t.restart();
    await whole(a, '127.0.0.3');
    const b = await halfMake('127.0.0.4');
    const again = await exportIscsi({ volumeId: 'vol-0000000c', initiatorAddress: '127.0.0.4' });
    expect(again.target.iqn).toBe(b);
    await whole(b, '127.0.0.4');
    await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-0000000c' });
    expect((await tgt.targets()).some((x) => x.iqn === a || x.iqn === b)).toBe(false);
  });

  it('answers unknown volumes and bad states with precise codes', async () => {
    await expect(t.client.call(sc.ExportVolume, { volumeId: 'vol-00000099', initiatorAddress: '127.0.0.1' })).rejects.toMatchObject({ code: 'InvalidVolume.NotFound' });
    await expect(t.client.call(sc.CopyStorageSnapshot, { snapshotId: 'snap-00000098', sourceSnapshotId: 'snap-00000099' })).rejects.toBeInstanceOf(WireError);
    expect((await t.client.call(sc.DeleteStorageVolume, { volumeId: 'vol-00000099' })).deleted).toBe(true);
  });
});
