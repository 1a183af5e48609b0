// What a clc killed in the middle of AttachVolume/DetachVolume leaves (`attaching`/`detaching` rows no call
// will finish) and how its storage poller settles it: at the next round, not minutes later — while a call of
// this clc (or, on PostgreSQL, of another clc: its mark in the database) that is still running keeps its row, and a listing older than
// the row is not acted on. And a CreateSnapshot whose thaw or SC answer is lost: kept once cut, or deleted at the
// SC. Against the clc's real schema with stand-ins for the cc (FakeCc) and the SC, built with the real `wire`
// plugin; the real daemons killed with -9 mid-call run in test/faults/faults.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dialectOf, markWorking, type Db } from '@mallee/store';
import type { Ec2Action, Principal } from '@mallee/aws-protocol';
import { handler, sc, sealSecret, wire, WireError } from '@mallee/wire';
import { openClcDatabase } from '../src/daemon.js';
import { Clusters } from '../src/clusters.js';
import { ADMIN_ACCOUNT, accountByName } from '../src/accounts.js';
import { StorageControllers, StoragePoller, storageActions } from '../src/storage/index.js';
import { attachmentWorkKey, workingOnVolumes } from '../src/storage/attach.js';
import type { StorageContext } from '../src/storage/volume-actions.js';
import { FakeCc, recordRunning } from './fake-cc.js';

let dir: string;
let db: Db;
let fake: FakeCc;
let app: FastifyInstance;
let s: StorageContext;
let principal: Principal;
/** What the stand-in SC was asked to unexport, and an ExportVolume held until the test lets it answer. */
const unexported: string[] = [];
/** Where the stand-in SC says each volume is exported (DescribeStorageVolumes), and each UnexportVolume as volume@initiator. */
const exportedTo = new Map<string, string[]>();
const unexportedFrom: string[] = [];
/** DeleteStorageVolume calls the stand-in SC got; while `refuseDeletes`, it refuses them as an SC on RBD does for an image still open. */
let deleteCalls = 0;
let refuseDeletes = false;
let exportHeld: Promise<void> | undefined;
let scKey = '';
/** Snapshots the stand-in SC holds; while `loseAnswer`, it makes one and then fails the call (its answer lost). */
const scSnapshots = new Set<string>();
let loseAnswer = false;
const log = pino({ level: 'silent' });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-clc-attach-settle-'));
  db = openClcDatabase(join(dir, 'clc.sqlite'));
  fake = new FakeCc();
  await fake.start();
  const clusters = new Clusters(db);
  fake.key = clusters.register('zone-a', fake.url);
  const controllers = new StorageControllers(db, 5000);
  unexported.length = 0;
  unexportedFrom.length = 0;
  exportedTo.clear();
  deleteCalls = 0;
  refuseDeletes = false;
  exportHeld = undefined;
  scSnapshots.clear();
  loseAnswer = false;
  app = Fastify({ logger: false });
  app.register(wire, {
    keyFor: (from) => (from === 'clc' ? scKey : undefined),
    handlers: [
      handler(sc.DescribeStorageVolumes, () => ({
        volumes: (db.prepare('SELECT volume_id FROM volumes').pluck().all() as string[]).map((volumeId) => ({ volumeId, sizeGiB: 1, status: 'available' as const, progress: 100, exportedTo: exportedTo.get(volumeId) ?? [], createdAt: new Date().toISOString() })),
        totalGiB: 0, maxTotalGiB: 0, maxVolumeGiB: 0,
      })),
      handler(sc.ExportVolume, async (req) => {
        await exportHeld;
        return { target: { kind: 'iscsi' as const, iqn: `iqn.test:${req.volumeId}`, portal: '127.0.0.1', port: 3260, lun: 1, chapUser: 'u', chapSecret: sealSecret(scKey, 'chap-secret') } };
      }),
      handler(sc.CreateStorageSnapshot, (req) => {
        scSnapshots.add(req.snapshotId);
        if (loseAnswer) throw new WireError('ServiceUnavailable', 'the answer was lost', 503);
        return { snapshot: { snapshotId: req.snapshotId, volumeId: req.volumeId, status: 'pending' as const, progress: 0, sizeGiB: 1, location: { bucket: 'b', manifestKey: `m/${req.snapshotId}` }, consistency: req.consistency, uploadedBytes: 0, uploadedChunks: 0, reusedChunks: 0, createdAt: new Date().toISOString() } };
      }),
      handler(sc.DeleteStorageSnapshot, (req) => ({ snapshotId: req.snapshotId, deleted: scSnapshots.delete(req.snapshotId) })),
      handler(sc.DescribeStorageSnapshots, () => ({ snapshots: [] })),
      handler(sc.DeleteStorageVolume, (req) => {
        deleteCalls++;
        if (refuseDeletes) throw new WireError('VolumeInUse', `RBD image of ${req.volumeId} is still open by a client`, 409);
        return { volumeId: req.volumeId, deleted: true };
      }),
      handler(sc.UnexportVolume, (req) => {
        unexported.push(req.volumeId);
        unexportedFrom.push(`${req.volumeId}@${req.initiatorAddress ?? '*'}`);
        exportedTo.set(req.volumeId, (exportedTo.get(req.volumeId) ?? []).filter((i) => req.initiatorAddress !== undefined && i !== req.initiatorAddress));
        return {};
      }),
    ],
  });
  scKey = controllers.register('zone-a', await app.listen({ host: '127.0.0.1', port: 0 }));
  s = { db, controllers, clusters };
  const accountId = accountByName(db, ADMIN_ACCOUNT)!.accountId;
  principal = { accountId, accountName: ADMIN_ACCOUNT, userId: 'admin', accessKeyId: 'AKIATEST', isAdmin: true };
  recordRunning(db, fake, principal.accountId, 'i-0000000a', 'instance-store');
});
afterEach(async () => {
  await app.close();
  await fake.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A volume as a clc that died mid-call left it: its attachment row in `status`, made a moment ago. */
function leftBehind(volumeId: string, status: 'attaching' | 'detaching', device: string): void {
  const now = new Date().toISOString();
  db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES (?, ?, 'zone-a', 1, 'in-use', ?)").run(volumeId, principal.accountId, now);
  db.prepare("INSERT INTO volume_attachments (volume_id, instance_id, device, status, attach_time, initiator) VALUES (?, 'i-0000000a', ?, ?, ?, '127.0.0.1')").run(volumeId, device, status, now);
}
const stateOf = (volumeId: string) => ({
  volume: db.prepare('SELECT status FROM volumes WHERE volume_id = ?').pluck().get(volumeId),
  attachment: db.prepare('SELECT status FROM volume_attachments WHERE volume_id = ?').pluck().get(volumeId) ?? null,
});
const action = (name: string) => storageActions(s, 'mallee').find((a) => a.name === name) as unknown as Ec2Action<unknown>;
const call = (name: string, params: Record<string, unknown>) => {
  const a = action(name);
  return a.handler(a.input.parse(params), { principal, log, requestId: 'test', apiVersion: '2016-11-15' });
};

describe('attachments a killed clc left half made', () => {
  it('are settled at the next poll: an attach the node has is attached, one it lacks is released, a detach is finished', async () => {
    leftBehind('vol-000000a1', 'attaching', '/dev/sdf'); // the node hot-plugged it before the clc died
    leftBehind('vol-000000a2', 'attaching', '/dev/sdg'); // it died before the cc was asked
    leftBehind('vol-000000a3', 'detaching', '/dev/sdh'); // it died mid-detach, the node still has it
    fake.instances.get('i-0000000a')!.volumes = [{ volumeId: 'vol-000000a1', device: '/dev/sdf', guestDevice: 'vdf' }, { volumeId: 'vol-000000a3', device: '/dev/sdh', guestDevice: 'vdh' }];
    await new StoragePoller(s, log).pollAll();
    expect(stateOf('vol-000000a1')).toEqual({ volume: 'in-use', attachment: 'attached' });
    expect(stateOf('vol-000000a2')).toEqual({ volume: 'available', attachment: null });
    expect(stateOf('vol-000000a3')).toEqual({ volume: 'available', attachment: null });
    // The one the node lacks is dropped there too (the cc's view may be older than the node's).
    expect(fake.calls.filter((c) => c.op === 'DetachVolume').map((c) => c.body)).toEqual([
      { instanceId: 'i-0000000a', volumeId: 'vol-000000a2', force: true }, { instanceId: 'i-0000000a', volumeId: 'vol-000000a3', force: true },
    ]);
    expect(fake.instances.get('i-0000000a')!.volumes!.map((v) => v.volumeId)).toEqual(['vol-000000a1']);
    expect(unexported.sort()).toEqual(['vol-000000a2', 'vol-000000a3']);
  });

  it('a cc that does not answer leaves the row for a later round, which settles it once it does', async () => {
    leftBehind('vol-000000b1', 'attaching', '/dev/sdf');
    fake.down = true;
    const poller = new StoragePoller(s, log);
    await poller.pollAll();
    expect(stateOf('vol-000000b1')).toEqual({ volume: 'in-use', attachment: 'attaching' });
    fake.down = false;
    await poller.pollAll();
    expect(stateOf('vol-000000b1')).toEqual({ volume: 'available', attachment: null });
  });

  it('an AttachVolume of this clc still running keeps its row: the poller neither releases nor completes it', async () => {
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES ('vol-000000c1', ?, 'zone-a', 1, 'available', ?)").run(principal.accountId, new Date().toISOString());
    let letGo!: () => void;
    exportHeld = new Promise((resolve) => (letGo = resolve));
    const attaching = call('AttachVolume', { VolumeId: 'vol-000000c1', InstanceId: 'i-0000000a', Device: '/dev/sdf' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stateOf('vol-000000c1')).toEqual({ volume: 'in-use', attachment: 'attaching' });
    const poller = new StoragePoller(s, log);
    await poller.pollAll();
    await poller.pollAll();
    expect(stateOf('vol-000000c1')).toEqual({ volume: 'in-use', attachment: 'attaching' });
    expect(unexported).toEqual([]);
    letGo();
    expect(await attaching).toMatchObject({ volumeId: 'vol-000000c1', instanceId: 'i-0000000a', status: 'attached' });
    await poller.pollAll();
    expect(stateOf('vol-000000c1')).toEqual({ volume: 'in-use', attachment: 'attached' });
    expect(unexported).toEqual([]);
  });

  it('on PostgreSQL, a row another clc is working on (its mark in the database) is kept; when that clc lets go or dies it is settled', async () => {
    if (dialectOf(db) !== 'postgres') return; // one clc on SQLite: npm run test:scale-out runs this on PostgreSQL
    const other = openClcDatabase(join(dir, 'clc.sqlite')); // another clc: its own session on the same database
    try {
      leftBehind('vol-000000e1', 'attaching', '/dev/sdf');
      leftBehind('vol-000000e2', 'detaching', '/dev/sdg');
      const release = markWorking(other, attachmentWorkKey('vol-000000e1'));
      markWorking(other, attachmentWorkKey('vol-000000e2'));
      fake.instances.get('i-0000000a')!.volumes = [{ volumeId: 'vol-000000e2', device: '/dev/sdg', guestDevice: 'vdg' }];
      const poller = new StoragePoller(s, log);
      await poller.pollAll();
      expect([stateOf('vol-000000e1'), stateOf('vol-000000e2')]).toEqual([{ volume: 'in-use', attachment: 'attaching' }, { volume: 'in-use', attachment: 'detaching' }]);
      release(); // its AttachVolume ended without finishing the row (it cannot, here): settled at the next round
      await poller.pollAll();
      expect(stateOf('vol-000000e1')).toEqual({ volume: 'available', attachment: null });
      expect(stateOf('vol-000000e2')).toEqual({ volume: 'in-use', attachment: 'detaching' });
      other.close(); // that clc died: PostgreSQL ends its session and its marks
      await poller.pollAll();
      expect(stateOf('vol-000000e2')).toEqual({ volume: 'available', attachment: null });
    } finally {
      if (other.open) other.close();
    }
  });

  it('an attach that finishes while a round is under way is not taken for one left behind (the listing is older than the row, the cc\'s view older than the node)', async () => {
    leftBehind('vol-000000d1', 'attaching', '/dev/sdg'); // listed first: the round asks the cc about it
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES ('vol-000000d2', ?, 'zone-a', 1, 'available', ?)").run(principal.accountId, new Date().toISOString());
    let letGo!: () => void;
    exportHeld = new Promise((resolve) => (letGo = resolve));
    const attaching = call('AttachVolume', { VolumeId: 'vol-000000d2', InstanceId: 'i-0000000a', Device: '/dev/sdf' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The cc has not seen the node's new disk yet; while the round waits for its answer about vol-000000d1, the attach ends.
    fake.unreported.add('vol-000000d2');
    fake.beforeDescribe = async () => {
      fake.beforeDescribe = undefined;
      letGo();
      await attaching;
    };
    await new StoragePoller(s, log).pollAll();
    expect(await attaching).toMatchObject({ volumeId: 'vol-000000d2', status: 'attached' });
    expect(stateOf('vol-000000d2')).toEqual({ volume: 'in-use', attachment: 'attached' });
    expect(stateOf('vol-000000d1')).toEqual({ volume: 'available', attachment: null });
    expect(unexported).toEqual(['vol-000000d1']);
  });
});

describe('an attachment a live migration left without its node', () => {
  it('a clc that died mid-migration (initiator unset, exported to both nodes): the poller gives it the instance\'s node and drops the other export', async () => {
    const now = new Date().toISOString();
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES ('vol-000000f1', ?, 'zone-a', 1, 'in-use', ?)").run(principal.accountId, now);
    db.prepare("INSERT INTO volume_attachments (volume_id, instance_id, device, status, attach_time, initiator) VALUES ('vol-000000f1', 'i-0000000a', '/dev/sdf', 'attached', ?, NULL)").run(now);
    // The instance is on node1 (127.0.0.1, as the cc lists its nodes); the source node it left was 10.0.0.9.
    exportedTo.set('vol-000000f1', ['10.0.0.9', '127.0.0.1']);
    const poller = new StoragePoller(s, log);
    await poller.pollAll();
    expect(db.prepare("SELECT initiator FROM volume_attachments WHERE volume_id = 'vol-000000f1'").pluck().get()).toBe('127.0.0.1');
    await poller.pollAll();
    expect(unexportedFrom).toEqual(['vol-000000f1@10.0.0.9']);
    expect(stateOf('vol-000000f1')).toEqual({ volume: 'in-use', attachment: 'attached' });
  });

  it('one a migration of this clc is still moving (marked, as live-migration.ts does) keeps both exports', async () => {
    const now = new Date().toISOString();
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES ('vol-000000f2', ?, 'zone-a', 1, 'in-use', ?)").run(principal.accountId, now);
    db.prepare("INSERT INTO volume_attachments (volume_id, instance_id, device, status, attach_time, initiator) VALUES ('vol-000000f2', 'i-0000000a', '/dev/sdf', 'attached', ?, NULL)").run(now);
    exportedTo.set('vol-000000f2', ['10.0.0.9', '127.0.0.1']);
    let letGo!: () => void;
    const moving = workingOnVolumes(db, ['vol-000000f2'], () => new Promise<void>((resolve) => (letGo = resolve)));
    const poller = new StoragePoller(s, log);
    await poller.pollAll();
    await poller.pollAll();
    expect(db.prepare("SELECT initiator FROM volume_attachments WHERE volume_id = 'vol-000000f2'").pluck().get()).toBeNull();
    expect(unexportedFrom).toEqual([]);
    letGo();
    await moving;
  });
});

describe('a volume delete the SC refuses for now', () => {
  it('is asked again after a pause that grows, not at every round, and the row goes once the SC deletes it', async () => {
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES ('vol-000000ab', ?, 'zone-a', 1, 'available', ?)").run(principal.accountId, new Date().toISOString());
    refuseDeletes = true;
    await call('DeleteVolume', { VolumeId: 'vol-000000ab' });
    expect(deleteCalls).toBe(1);
    expect(stateOf('vol-000000ab').volume).toBe('deleting');
    const poller = new StoragePoller(s, log);
    await poller.pollAll(); // refused again: now paused for 2 s
    expect(deleteCalls).toBe(2);
    await poller.pollAll();
    await poller.pollAll();
    expect(deleteCalls).toBe(2);
    refuseDeletes = false;
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await poller.pollAll();
    expect(deleteCalls).toBe(3);
    expect(stateOf('vol-000000ab').volume).toBeUndefined();
  });
});

describe('CreateSnapshot when an answer is lost', () => {
  it('a thaw that fails after the cut does not fail the snapshot: it is acknowledged and kept', async () => {
    leftBehind('vol-000000e1', 'attaching', '/dev/sdf');
    db.prepare("UPDATE volume_attachments SET status = 'attached' WHERE volume_id = 'vol-000000e1'").run();
    fake.thawDown = true;
    const snap = await call('CreateSnapshot', { VolumeId: 'vol-000000e1' }) as { snapshotId: string; status: string };
    expect(snap.status).toBe('pending');
    expect(fake.calls.filter((c) => c.op === 'FreezeInstance' || c.op === 'ThawInstance').map((c) => c.op)).toEqual(['FreezeInstance', 'ThawInstance']);
    expect(db.prepare('SELECT status FROM snapshots WHERE snapshot_id = ?').pluck().get(snap.snapshotId)).toBe('pending');
    expect([...scSnapshots]).toEqual([snap.snapshotId]);
  });

  it('one the SC made though its answer was lost is deleted there by the poller: nothing no one can see is left', async () => {
    db.prepare("INSERT INTO volumes (volume_id, account_id, zone, size_gib, status, create_time) VALUES ('vol-000000e2', ?, 'zone-a', 1, 'available', ?)").run(principal.accountId, new Date().toISOString());
    loseAnswer = true;
    await expect(call('CreateSnapshot', { VolumeId: 'vol-000000e2' })).rejects.toMatchObject({ code: 'ServiceUnavailable' });
    expect(db.prepare('SELECT COUNT(*) FROM snapshots').pluck().get()).toBe(0);
    expect(scSnapshots.size).toBe(1);
    await new StoragePoller(s, log).pollAll();
    expect(scSnapshots.size).toBe(0);
    expect(db.prepare('SELECT COUNT(*) FROM storage_deletions').pluck().get()).toBe(0);
  });
});
