// The Storage Controller's logic (Eucalyptus storage/): volumes on the backend, their iSCSI exports,
// snapshots into Walrus; limits; and what a restart must put right (nothing left half-done).
import type { Logger } from 'pino';
import type { Db } from '@mallee/store';
import { sealSecret, WireError, type Operation, type sc } from '@mallee/wire';
import type { VolumeBackend } from './backends/index.js';
import type { Exports } from './exports.js';
import type { S3Client } from './s3.js';
import type { SnapshotEngine } from './snapshots.js';

type Req<O> = O extends Operation<infer R, unknown> ? R : never;
type Res<O> = O extends Operation<unknown, infer R> ? R : never;

const GiB = 1024 ** 3;

interface VolumeRow { volume_id: string; size_gib: number; status: sc.ScVolume['status']; reason: string | null; snapshot_id: string | null; snapshot_location: string | null; created_at: string }

export interface StorageLimits {
  /** GiB, 0 = unlimited. */
  maxVolumeGiB: number;
  maxTotalGiB: number;
}

export interface StorageControllerOptions {
  db: Db;
  backend: VolumeBackend;
  exports: Exports;
  snapshots: SnapshotEngine;
  s3: S3Client;
  /** The zone's current limits (cloud properties storage.*, read from the clc with a short cache). */
  limits: () => Promise<StorageLimits> | StorageLimits;
  /** The portal NCs connect to. */
  portal: { address: string; port: number };
  /** The key shared with the clc: CHAP secrets leave sealed with it. */
  wireKey: () => string;
  log: Logger;
}

export class StorageController {
  private readonly restoring = new Map<string, Promise<void>>();
  private readonly restoreProgress = new Map<string, number>();
  private stopping = false;

  constructor(private readonly o: StorageControllerOptions) {}

  private row(volumeId: string): VolumeRow | undefined {
    return this.o.db.prepare('SELECT * FROM volumes WHERE volume_id = ?').get(volumeId) as VolumeRow | undefined;
  }

  private view(r: VolumeRow): sc.ScVolume {
    return {
      volumeId: r.volume_id,
      sizeGiB: r.size_gib,
      status: r.status,
      progress: r.status === 'creating' ? Math.round(this.restoreProgress.get(r.volume_id) ?? 0) : 100,
      ...(r.reason ? { reason: r.reason } : {}),
      exportedTo: this.o.exports.initiatorsOf(r.volume_id),
      createdAt: r.created_at,
    };
  }

  totalGiB(): number {
    return this.o.db.prepare("SELECT COALESCE(SUM(size_gib), 0) FROM volumes WHERE status IN ('creating', 'available')").pluck().get() as number;
  }

  async createVolume(req: Req<typeof sc.CreateStorageVolume>): Promise<Res<typeof sc.CreateStorageVolume>> {
    const known = this.row(req.volumeId);
    if (known) return { volume: this.view(known) };
    const { maxVolumeGiB, maxTotalGiB } = await this.o.limits();
    if (maxVolumeGiB > 0 && req.sizeGiB > maxVolumeGiB) {
      throw new WireError('VolumeSizeExceeded', `a ${req.sizeGiB} GiB volume is larger than this zone allows (${maxVolumeGiB} GiB, property storage.maxvolumesizeingb)`);
    }
    const total = this.totalGiB();
    if (maxTotalGiB > 0 && total + req.sizeGiB > maxTotalGiB) {
      throw new WireError('VolumeLimitExceeded', `a ${req.sizeGiB} GiB volume would exceed this zone's storage: ${total} of ${maxTotalGiB} GiB in use (property storage.maxtotalvolumesizeingb)`);
    }
    const createdAt = new Date().toISOString();
    this.o.db.prepare(`INSERT INTO volumes (volume_id, size_gib, status, snapshot_id, snapshot_location, created_at) VALUES (?, ?, 'creating', ?, ?, ?)`)
      .run(req.volumeId, req.sizeGiB, req.snapshot?.snapshotId ?? null, req.snapshot ? JSON.stringify(req.snapshot.location) : null, createdAt);
    if (!req.snapshot) {
      try {
        await this.o.backend.create(req.volumeId, req.sizeGiB * GiB);
        this.setStatus(req.volumeId, 'available');
      } catch (err) {
        this.setStatus(req.volumeId, 'failed', (err as Error).message);
      }
      this.o.log.info({ volumeId: req.volumeId, sizeGiB: req.sizeGiB }, 'volume created');
    } else {
      this.startRestore(this.row(req.volumeId)!);
    }
    return { volume: this.view(this.row(req.volumeId)!) };
  }

  private setStatus(volumeId: string, status: sc.ScVolume['status'], reason?: string): void {
    this.o.db.prepare('UPDATE volumes SET status = ?, reason = ? WHERE volume_id = ?').run(status, reason ?? null, volumeId);
  }

  private startRestore(r: VolumeRow): void {
    if (this.restoring.has(r.volume_id)) return;
    const location = JSON.parse(r.snapshot_location!) as sc.SnapshotLocation;
    const work = this.o.snapshots
      .restore(location, r.volume_id, r.size_gib, (pct) => this.restoreProgress.set(r.volume_id, pct))
      .then(() => {
        this.setStatus(r.volume_id, 'available');
        this.o.log.info({ volumeId: r.volume_id, snapshotId: r.snapshot_id }, 'volume restored from snapshot');
      }, async (err: unknown) => {
        // Stopped while waiting for Walrus: still creating, the next start's recover() restores it again.
        if (this.stopping) return;
        this.o.log.error({ volumeId: r.volume_id, err }, 'restoring a volume from its snapshot failed');
        await this.o.backend.remove(r.volume_id).catch(() => undefined);
        this.setStatus(r.volume_id, 'failed', `restore from ${r.snapshot_id} failed: ${(err as Error).message}`);
      })
      .finally(() => {
        this.restoring.delete(r.volume_id);
        this.restoreProgress.delete(r.volume_id);
      });
    this.restoring.set(r.volume_id, work);
  }

  async deleteVolume(volumeId: string): Promise<Res<typeof sc.DeleteStorageVolume>> {
    const r = this.row(volumeId);
    if (!r) return { volumeId, deleted: true };
    this.setStatus(volumeId, 'deleting');
    await this.restoring.get(volumeId);
    await this.finishDelete(volumeId);
    return { volumeId, deleted: true };
  }

  private async finishDelete(volumeId: string): Promise<void> {
    await this.o.exports.unexport(volumeId);
    await this.o.backend.remove(volumeId);
    this.o.db.prepare('DELETE FROM volumes WHERE volume_id = ?').run(volumeId);
    this.o.log.info({ volumeId }, 'volume deleted');
  }

  async describeVolumes(req: Req<typeof sc.DescribeStorageVolumes>): Promise<Res<typeof sc.DescribeStorageVolumes>> {
    const rows = this.o.db.prepare('SELECT * FROM volumes ORDER BY created_at').all() as VolumeRow[];
    const wanted = req.volumeIds.length ? new Set(req.volumeIds) : undefined;
    const { maxVolumeGiB, maxTotalGiB } = await this.o.limits();
    return { volumes: rows.filter((r) => !wanted || wanted.has(r.volume_id)).map((r) => this.view(r)), totalGiB: this.totalGiB(), maxTotalGiB, maxVolumeGiB };
  }

  private usable(volumeId: string): VolumeRow {
    const r = this.row(volumeId);
    if (!r) throw new WireError('InvalidVolume.NotFound', `volume ${volumeId} is not on this storage controller`, 404);
    if (r.status !== 'available') throw new WireError('IncorrectState', `volume ${volumeId} is ${r.status}`, 409);
    return r;
  }

  async exportVolume(req: Req<typeof sc.ExportVolume>): Promise<Res<typeof sc.ExportVolume>> {
    this.usable(req.volumeId);
    const direct = this.o.backend.diffs;
    if (direct) {
      // RBD: the node opens the image itself as the cephx user; nothing to set up per initiator.
      const t = direct.target(req.volumeId);
      return { target: { ...t, secret: sealSecret(this.o.wireKey(), t.secret) } };
    }
    const t = await this.o.exports.export(req.volumeId, req.initiatorAddress);
    return {
      target: { kind: 'iscsi', iqn: t.iqn, portal: this.o.portal.address, port: this.o.portal.port, lun: t.lun, chapUser: t.chapUser, chapSecret: sealSecret(this.o.wireKey(), t.chapSecret) },
    };
  }

  async unexportVolume(req: Req<typeof sc.UnexportVolume>): Promise<Res<typeof sc.UnexportVolume>> {
    await this.o.exports.unexport(req.volumeId, req.initiatorAddress);
    return {};
  }

  async createSnapshot(req: Req<typeof sc.CreateStorageSnapshot>): Promise<Res<typeof sc.CreateStorageSnapshot>> {
    const known = this.o.snapshots.row(req.snapshotId);
    if (known) return { snapshot: this.o.snapshots.view(known) };
    const v = this.usable(req.volumeId);
    await this.o.s3.ensureBucket(this.o.s3.bucket);
    return { snapshot: this.o.snapshots.view(await this.o.snapshots.create(req.snapshotId, req.volumeId, v.size_gib, req.consistency)) };
  }

  async copySnapshot(req: Req<typeof sc.CopyStorageSnapshot>): Promise<Res<typeof sc.CopyStorageSnapshot>> {
    return { snapshot: this.o.snapshots.view(await this.o.snapshots.copy(req.snapshotId, req.sourceSnapshotId)) };
  }

  async deleteSnapshot(snapshotId: string): Promise<Res<typeof sc.DeleteStorageSnapshot>> {
    await this.o.snapshots.delete(snapshotId);
    return { snapshotId, deleted: true };
  }

  describeSnapshots(req: Req<typeof sc.DescribeStorageSnapshots>): Res<typeof sc.DescribeStorageSnapshots> {
    const wanted = req.snapshotIds.length ? new Set(req.snapshotIds) : undefined;
    return { snapshots: this.o.snapshots.rows().filter((r) => !wanted || wanted.has(r.snapshot_id)).map((r) => this.o.snapshots.view(r)) };
  }

  /** After a (crash) restart: no volume left in a transitional state, tgtd matching the exports (disk and tgtd only). */
  async recover(): Promise<void> {
    const db = this.o.db;
    for (const r of db.prepare("SELECT * FROM volumes WHERE status = 'deleting'").all() as VolumeRow[]) await this.finishDelete(r.volume_id);
    for (const r of db.prepare("SELECT * FROM volumes WHERE status = 'creating'").all() as VolumeRow[]) {
      this.o.log.info({ volumeId: r.volume_id }, 'creating a volume again after a restart');
      if (r.snapshot_location) this.startRestore(r);
      else {
        await this.o.backend.create(r.volume_id, r.size_gib * GiB);
        this.setStatus(r.volume_id, 'available');
      }
    }
    // Exports of volumes that are gone cannot be served.
    db.prepare("DELETE FROM exports WHERE volume_id NOT IN (SELECT volume_id FROM volumes WHERE status = 'available')").run();
    // RBD volumes have no iSCSI exports: such an SC needs no tgtd.
    if (!this.o.backend.diffs) await this.o.exports.reconcile();
  }

  /** The part of recovery that needs Walrus (run once the SC serves, retried until it succeeds). */
  async recoverSnapshots(): Promise<void> {
    await this.o.snapshots.recover();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.o.snapshots.stop();
    await Promise.allSettled(this.restoring.values());
  }
}
