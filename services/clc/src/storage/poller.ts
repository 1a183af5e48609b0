// The clc's view of its storage controllers, every POLL_INTERVAL: volume and snapshot states from the
// SCs, deletions they missed, exports nothing is attached through any more, and the attachments of
// instances that are gone (or that a crash left half made).
import type { Logger } from 'pino';
import { cc, sc, WireError } from '@mallee/wire';
import { attachmentInFlight, dropAttachment, initiatorOf, releaseAttachment } from './attach.js';
import { finishSnapshotDelete } from './snapshot-actions.js';
import { finishVolumeDelete, type StorageContext } from './volume-actions.js';
import { settlePendingImages } from '../resources/index.js';
import { attachmentOf, snapshotRow, volumeRow, type AttachmentRow, type SnapshotRow, type VolumeRow } from './records.js';
import { unexportStopped } from './boot-volumes.js';
import { instanceRow } from '../instances.js';

/*
 * An `attaching`/`detaching` row no AttachVolume/DetachVolume is working on (of this clc, or — marked in the
 * database, attach.ts — of another clc on the same PostgreSQL) was left by a clc that died mid-call (kill -9,
 * a crash): the poller settles it at its next round. (Before the marks, several clcs on PostgreSQL waited
 * 120 s, since another one might still be working on the row.)
 */

/** The longest pause before a volume delete the SC refused is asked again. */
const REFUSED_DELETE_MAX_PAUSE_MS = 30_000;

export class StoragePoller {
  private running: Promise<void> | undefined;
  /** Volumes whose delete the SC refused, with when to ask again. */
  private readonly refusedDeletes = new Map<string, { tries: number; until: number }>();

  /** `leading`: asked before each round, whether this clc moves states along (PollerLease); else a round only refreshes each SC's contact. */
  constructor(private readonly s: StorageContext, private readonly log: Logger, private readonly leading: () => boolean = () => true) {}

  pollAll(): Promise<void> {
    this.running ??= (async () => {
      try {
        const leading = this.leading();
        await Promise.all(this.s.controllers.list().map((c) => this.pollZone(c.zone, leading)));
        if (!leading) return;
        await this.settleAttachments();
        settlePendingImages(this.s.db, (id) => snapshotRow(this.s.db, id)?.status);
      } catch (err) {
        this.log.error({ err }, 'storage poll failed');
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  async settled(): Promise<void> {
    await this.running;
  }

  private async pollZone(zone: string, leading: boolean): Promise<void> {
    const { db, controllers } = this.s;
    let volumes: sc.ScVolume[];
    let snapshots: sc.ScSnapshot[];
    // Rows made after the SC was asked are not in its answer yet: they are not "missing".
    const askedAt = new Date(Date.now() - 1000).toISOString();
    try {
      const client = controllers.client(zone);
      const pending = db.prepare("SELECT snapshot_id FROM snapshots WHERE zone = ? AND status = 'pending'").pluck().all(zone) as string[];
      const [v, s] = await Promise.all([
        client.call(sc.DescribeStorageVolumes, { volumeIds: [] }),
        pending.length ? client.call(sc.DescribeStorageSnapshots, { snapshotIds: pending }) : Promise.resolve({ snapshots: [] }),
      ]);
      volumes = v.volumes;
      snapshots = s.snapshots;
      controllers.recordContact(zone, true, undefined, { totalGiB: v.totalGiB, maxTotalGiB: v.maxTotalGiB, maxVolumeGiB: v.maxVolumeGiB });
    } catch (err) {
      const detail = err instanceof WireError ? `${err.code}: ${err.message}` : (err as Error).message;
      if (controllers.get(zone)?.state !== 'NOTREADY') this.log.warn({ zone, detail }, 'storage controller not answering; its volumes keep their last known state');
      if (controllers.get(zone)) controllers.recordContact(zone, false, detail);
      return;
    }
    if (!leading) return;
    const byId = new Map(volumes.map((v) => [v.volumeId, v]));
    for (const row of db.prepare("SELECT * FROM volumes WHERE zone = ? AND status = 'creating'").all(zone) as VolumeRow[]) {
      const v = byId.get(row.volume_id);
      // An EBS-backed instance's root volume is attached from the start: it comes out in-use.
      if (v?.status === 'available') {
        db.prepare(`UPDATE volumes SET status = CASE WHEN EXISTS (SELECT 1 FROM volume_attachments a WHERE a.volume_id = volumes.volume_id) THEN 'in-use' ELSE 'available' END
          WHERE volume_id = ? AND status = 'creating'`).run(row.volume_id);
      }
      else if (v?.status === 'failed' || (!v && row.create_time < askedAt && Date.now() - Date.parse(row.create_time) > 30_000)) {
        db.prepare("UPDATE volumes SET status = 'error', status_reason = ? WHERE volume_id = ? AND status = 'creating'").run(v?.reason ?? 'the storage controller does not have the volume', row.volume_id);
      }
    }
    const known = new Set(db.prepare('SELECT volume_id FROM volumes WHERE zone = ?').pluck().all(zone) as string[]);
    for (const v of volumes) {
      // The SC made it but the clc has no record (a create whose answer was lost): it never existed for the user.
      if (!known.has(v.volumeId) && v.status !== 'creating') {
        this.log.warn({ zone, volumeId: v.volumeId }, 'deleting a volume on the storage controller that the clc does not know');
        await controllers.client(zone).call(sc.DeleteStorageVolume, { volumeId: v.volumeId }).catch(() => undefined);
      }
      // An export nothing is attached through (a detach or failed attach interrupted): unexport it.
      const att = db.prepare('SELECT initiator FROM volume_attachments WHERE volume_id = ?').pluck().get(v.volumeId) as string | null | undefined;
      for (const initiator of v.exportedTo) {
        if (att === undefined || (att !== null && att !== initiator)) {
          await controllers.client(zone).call(sc.UnexportVolume, { volumeId: v.volumeId, initiatorAddress: initiator }).catch(() => undefined);
        }
      }
    }
    for (const row of db.prepare("SELECT * FROM volumes WHERE zone = ? AND status = 'deleting'").all(zone) as VolumeRow[]) {
      // A delete the SC refused (it waits several seconds itself first) is asked again after a growing pause, not every round.
      const pause = this.refusedDeletes.get(row.volume_id);
      if (pause && Date.now() < pause.until) continue;
      if ((await finishVolumeDelete(this.s, row)) !== 'refused') this.refusedDeletes.delete(row.volume_id);
      else {
        const tries = (pause?.tries ?? 0) + 1;
        this.refusedDeletes.set(row.volume_id, { tries, until: Date.now() + Math.min(REFUSED_DELETE_MAX_PAUSE_MS, 1000 * 2 ** tries) });
      }
    }
    const snaps = new Map(snapshots.map((x) => [x.snapshotId, x]));
    for (const row of db.prepare("SELECT * FROM snapshots WHERE zone = ? AND status = 'pending'").all(zone) as SnapshotRow[]) {
      const x = snaps.get(row.snapshot_id);
      if (!x) {
        if (Date.now() - Date.parse(row.start_time) > 30_000) db.prepare("UPDATE snapshots SET status = 'error', state_message = ? WHERE snapshot_id = ?").run('the storage controller does not have the snapshot', row.snapshot_id);
        continue;
      }
      db.prepare(`UPDATE snapshots SET progress = ?, uploaded_bytes = ?, status = ?, completion_time = ?, state_message = ? WHERE snapshot_id = ?`).run(
        x.progress, x.uploadedBytes, x.status === 'failed' ? 'error' : x.status, x.completedAt ?? null, x.reason ?? null, row.snapshot_id);
    }
    for (const d of db.prepare("SELECT id FROM storage_deletions WHERE zone = ? AND kind = 'snapshot'").pluck().all(zone) as string[]) await finishSnapshotDelete(this.s, d, zone);
  }

  /** Attachments of terminated (or purged) instances are released; stale half-made ones settled. */
  private async settleAttachments(): Promise<void> {
    const { db, clusters } = this.s;
    const rows = db.prepare(`SELECT a.*, v.zone AS zone, i.state AS instance_state FROM volume_attachments a JOIN volumes v ON v.volume_id = a.volume_id
      LEFT JOIN instances i ON i.instance_id = a.instance_id`).all() as (AttachmentRow & { zone: string; instance_state: string | null })[];
    for (const a of rows) {
      if (a.instance_state === 'stopped' && a.initiator) {
        // Read again: a StartInstances since the listing exports to its new node, and that must stay.
        if (instanceRow(db, a.instance_id)?.state !== 'stopped') continue;
        this.log.info({ volumeId: a.volume_id, instanceId: a.instance_id }, 'unexporting a volume of a stopped instance');
        await unexportStopped(this.s, a).catch((err: unknown) => this.log.warn({ volumeId: a.volume_id, err }, 'unexport failed; retried at the next poll'));
        continue;
      }
      const gone = a.instance_state === null || a.instance_state === 'terminated';
      // Read again, as every await of this loop lets calls run: the listing may be older than the row (an attach
      // that finished meanwhile), and a row a call of this clc is working on is that call's to finish.
      const unchanged = () => {
        const now = attachmentOf(db, a.volume_id);
        return now !== undefined && now.instance_id === a.instance_id && now.status === a.status && !attachmentInFlight(db, a.volume_id);
      };
      if (a.status === 'attached' && a.initiator === null && a.instance_state === 'running' && unchanged()) {
        // A live migration unsets the initiator while both nodes' exports stand; one whose clc died mid-move is
        // given the node the instance runs on now, and the next round's export pass drops the other node's export.
        const host = await initiatorOf(this.s, a.zone, a.instance_id).catch(() => undefined);
        if (host && unchanged() && db.prepare('UPDATE volume_attachments SET initiator = ? WHERE volume_id = ? AND initiator IS NULL').run(host, a.volume_id).changes) {
          this.log.warn({ volumeId: a.volume_id, instanceId: a.instance_id, initiator: host }, 'an attachment a migration left without its node: it is the node\'s the instance runs on');
        }
        continue;
      }
      const stuck = a.status !== 'attached' && unchanged();
      if (!gone && !stuck) continue;
      if (stuck && !gone) {
        const node = clusters.client(a.zone);
        if (a.status === 'attaching') {
          // Did the node get it? Then the attach went through (so the cc says). Else it did not happen, and the node is
          // told to drop it in case the cc's view is older than the node's.
          const attached = await node.call(cc.DescribeInstances, { instanceIds: [a.instance_id] })
            .then((r) => r.instances.some((i) => i.volumes?.some((v) => v.volumeId === a.volume_id)), () => undefined);
          if (attached === undefined || !unchanged()) continue;
          if (attached) {
            db.prepare("UPDATE volume_attachments SET status = 'attached' WHERE volume_id = ? AND status = 'attaching'").run(a.volume_id);
            continue;
          }
        }
        const ok = await node.call(cc.DetachVolume, { instanceId: a.instance_id, volumeId: a.volume_id, force: true })
          .then(() => true, (err: unknown) => err instanceof WireError && err.code === 'InvalidInstanceID.NotFound');
        if (!ok || !unchanged()) continue;
      }
      this.log.info({ volumeId: a.volume_id, instanceId: a.instance_id, why: gone ? 'instance gone' : `stale ${a.status}` }, 'releasing a volume attachment');
      await releaseAttachment(this.s, a, a.zone).catch(() => (gone ? dropAttachment(this.s, a.volume_id) : undefined));
      if (gone && a.delete_on_termination === 1 && !attachmentOf(db, a.volume_id)) {
        // The root volume of a terminated EBS-backed instance (DeleteOnTermination): deleted as DeleteVolume does.
        db.prepare("UPDATE volumes SET status = 'deleting' WHERE volume_id = ?").run(a.volume_id);
        const v = volumeRow(db, a.volume_id);
        if (v) await finishVolumeDelete(this.s, v);
      }
    }
  }
}
