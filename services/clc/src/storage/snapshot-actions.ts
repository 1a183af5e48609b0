// CreateSnapshot (holding an attached volume's guest I/O only for the cut), DeleteSnapshot,
// DescribeSnapshots with Owner/RestorableBy, the createVolumePermission attribute, and CopySnapshot.
import { z } from 'zod';
import { instanceRow } from '../instances.js';
import { defineEc2Action, Ec2Error, errors, q, type ActionContext, type Principal } from '@mallee/aws-protocol';
import { cc, sc, WireError } from '@mallee/wire';
import type { Db } from '@mallee/store';
import { accountByName } from '../accounts.js';
import { list } from '../actions/context.js';
import { applyFilters, applyTagSpecifications, deleteTagsFor, newId, tagSetsFor, tagSpecificationsShape, type Tag } from '../resources/index.js';
import {
  attachmentOf, canRestore, checkSnapshotId, ownVolumes, snapshotNotFound, snapshotRow, snapshotXml, type SnapshotRow,
} from './records.js';
import { scUnavailable, type StorageContext } from './volume-actions.js';

function recordScSnapshot(db: Db, snapshotId: string, s: sc.ScSnapshot, heldMs?: number): void {
  db.prepare(`UPDATE snapshots SET bucket = ?, manifest_key = ?, consistency = ?, cut_ms = ?, held_ms = COALESCE(?, held_ms), progress = ?,
      uploaded_bytes = ?, status = CASE WHEN ? = 'completed' THEN 'completed' WHEN ? = 'failed' THEN 'error' ELSE status END,
      completion_time = CASE WHEN ? = 'completed' THEN COALESCE(completion_time, ?) ELSE completion_time END,
      state_message = COALESCE(?, state_message) WHERE snapshot_id = ?`)
    .run(s.location.bucket, s.location.manifestKey, s.consistency, s.cutMs ?? null, heldMs ?? null, s.progress, s.uploadedBytes,
      s.status, s.status, s.status, s.completedAt ?? new Date().toISOString(), s.reason ?? null, snapshotId);
}

export async function createSnapshot(st: StorageContext, ctx: ActionContext, input: { VolumeId?: string; Description?: string; TagSpecification: z.infer<typeof tagSpecificationsShape> }): Promise<Record<string, unknown>> {
  const { db, controllers, clusters } = st;
  const { principal } = ctx;
  if (!input.VolumeId) throw errors.missing('VolumeId');
  const [vol] = ownVolumes(db, principal, [input.VolumeId]);
  if (vol!.status !== 'available' && vol!.status !== 'in-use') throw new Ec2Error('IncorrectState', `Volume '${vol!.volume_id}' is '${vol!.status}'; snapshots are taken of available or in-use volumes.`);
  if ((input.Description ?? '').length > 255) throw errors.invalidValue('Description', '(too long)', 'At most 255 characters.');
  const snapshotId = newId('snap');
  db.transaction(() => {
    db.prepare(`INSERT INTO snapshots (snapshot_id, account_id, volume_id, volume_size, zone, status, description, start_time) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)`)
      .run(snapshotId, principal.accountId, vol!.volume_id, vol!.size_gib, vol!.zone, input.Description ?? '', new Date().toISOString());
    applyTagSpecifications(db, principal.accountId, [snapshotId], 'snapshot', input.TagSpecification);
  })();
  // The SC may have made it though its answer was lost: once it was asked, its copy is deleted as DeleteSnapshot's
  // is (storage_deletions, finished by the poller), or its chunks and manifest outlive a snapshot no one can see.
  let asked = false;
  const forget = () => db.transaction(() => {
    deleteTagsFor(db, snapshotId);
    db.prepare('DELETE FROM snapshots WHERE snapshot_id = ?').run(snapshotId);
    if (asked) db.prepare("INSERT OR IGNORE INTO storage_deletions (kind, id, zone) VALUES ('snapshot', ?, ?)").run(snapshotId, vol!.zone);
  })();
  // A stopped instance's volumes have no guest writing to them: cut as detached ones.
  const attached = attachmentOf(db, vol!.volume_id);
  const att = attached && instanceRow(db, attached.instance_id)?.state !== 'stopped' ? attached : undefined;
  let consistency: sc.SnapshotConsistency = 'detached';
  let frozen = false;
  let heldMs: number | undefined;
  try {
    if (att) {
      // The cut must not race the guest's writes: freeze its filesystems (guest agent) or pause it.
      try {
        consistency = (await clusters.client(vol!.zone).call(cc.FreezeInstance, { instanceId: att.instance_id, timeoutMs: 60_000 })).consistency;
        frozen = true;
      } catch (err) {
        throw new Ec2Error('IncorrectState', `Could not hold the I/O of ${att.instance_id} for a consistent snapshot of ${vol!.volume_id}: ${(err as Error).message}. Detach the volume or retry.`);
      }
    }
    asked = true;
    const res = await controllers.client(vol!.zone).call(sc.CreateStorageSnapshot, { snapshotId, volumeId: vol!.volume_id, consistency });
    if (frozen) {
      // The cut is taken: a thaw that fails (the cc or node away) does not undo it; the node thaws at the freeze timeout.
      frozen = false;
      heldMs = await clusters.client(vol!.zone).call(cc.ThawInstance, { instanceId: att!.instance_id }).then((r) => r.heldMs, (err: unknown) => {
        ctx.log.error({ err, instanceId: att!.instance_id }, 'thawing the instance failed; its node thaws it at the freeze timeout');
        return undefined;
      });
    }
    recordScSnapshot(db, snapshotId, res.snapshot, heldMs);
  } catch (err) {
    forget();
    if (err instanceof Ec2Error) throw err;
    // A full SC is not an SC away: say so (its message tells the operator what to free).
    if (err instanceof WireError && err.code === 'InsufficientStorage') throw new Ec2Error('InsufficientVolumeCapacity', `Snapshot of ${vol!.volume_id} not taken: ${err.message}`);
    throw scUnavailable(vol!.zone, err);
  } finally {
    if (frozen) {
      await clusters.client(vol!.zone).call(cc.ThawInstance, { instanceId: att!.instance_id }).catch((err: unknown) =>
        ctx.log.error({ err, instanceId: att!.instance_id }, 'thawing the instance failed; its node thaws it at the freeze timeout'));
    }
  }
  ctx.log.info({ snapshotId, volumeId: vol!.volume_id, consistency, heldMs }, 'snapshot cut; uploading');
  return snapshotXml(snapshotRow(db, snapshotId)!, tagSetsFor(db, principal.accountId, [snapshotId]).get(snapshotId) ?? []);
}

async function deleteSnapshot(st: StorageContext, principal: Principal, id: string | undefined): Promise<Record<string, unknown>> {
  if (!id) throw errors.missing('SnapshotId');
  const { db } = st;
  checkSnapshotId(id);
  const s = snapshotRow(db, id);
  if (!s || s.account_id !== principal.accountId) throw snapshotNotFound([id]);
  const restoring = db.prepare("SELECT volume_id FROM volumes WHERE snapshot_id = ? AND status = 'creating'").pluck().get(id) as string | undefined;
  if (restoring) throw new Ec2Error('InvalidSnapshot.InUse', `The snapshot ${id} is in use by ${restoring}, which is being created from it.`);
  const copying = db.prepare("SELECT snapshot_id FROM snapshots WHERE source_snapshot_id = ? AND status = 'pending'").pluck().get(id) as string | undefined;
  if (copying) throw new Ec2Error('InvalidSnapshot.InUse', `The snapshot ${id} is being copied to ${copying}.`);
  db.transaction(() => {
    deleteTagsFor(db, id);
    db.prepare('DELETE FROM snapshots WHERE snapshot_id = ?').run(id);
    db.prepare("INSERT OR IGNORE INTO storage_deletions (kind, id, zone) VALUES ('snapshot', ?, ?)").run(id, s.zone);
  })();
  await finishSnapshotDelete(st, id, s.zone);
  return { return: true };
}

/** The SC frees the chunks; an SC that does not answer now is asked again by the poller. */
export async function finishSnapshotDelete(st: StorageContext, id: string, zone: string): Promise<boolean> {
  try {
    if (st.controllers.get(zone)) await st.controllers.client(zone).call(sc.DeleteStorageSnapshot, { snapshotId: id });
  } catch {
    return false;
  }
  st.db.prepare("DELETE FROM storage_deletions WHERE kind = 'snapshot' AND id = ?").run(id);
  return true;
}

interface SnapshotView { row: SnapshotRow; tags: Tag[] }

const SNAPSHOT_FILTERS: Record<string, (v: SnapshotView) => unknown> = {
  'snapshot-id': (v) => v.row.snapshot_id,
  'volume-id': (v) => v.row.volume_id,
  status: (v) => v.row.status,
  'owner-id': (v) => v.row.account_id,
  'owner-alias': () => undefined,
  progress: (v) => `${Math.floor(v.row.progress)}%`,
  'start-time': (v) => v.row.start_time,
  'volume-size': (v) => v.row.volume_size,
  description: (v) => v.row.description,
  encrypted: () => 'false',
};

function describeSnapshots(db: Db, principal: Principal, input: { SnapshotId: string[]; Owner: string[]; RestorableBy: string[]; Filter: { Name: string; Value: string[] }[] }) {
  for (const id of input.SnapshotId) checkSnapshotId(id);
  const me = principal.accountId;
  // Visible: own, shared with this account, or public (EC2 lists all three without Owner/RestorableBy).
  let rows = db.prepare(`SELECT * FROM snapshots WHERE account_id = @me
      OR snapshot_id IN (SELECT snapshot_id FROM snapshot_permissions WHERE grantee IN (@me, 'all'))
      ORDER BY start_time, snapshot_id`).all({ me }) as SnapshotRow[];
  if (input.SnapshotId.length) {
    const wanted = new Set(input.SnapshotId);
    const missing = [...wanted].filter((id) => !rows.some((r) => r.snapshot_id === id));
    if (missing.length) throw snapshotNotFound(missing);
    rows = rows.filter((r) => wanted.has(r.snapshot_id));
  }
  if (input.Owner.length) {
    const owners = new Set(input.Owner.map((o) => (o === 'self' ? me : o)));
    rows = rows.filter((r) => owners.has(r.account_id));
  }
  if (input.RestorableBy.length) {
    rows = rows.filter((r) => input.RestorableBy.some((who) => {
      if (who === 'all') return db.prepare("SELECT 1 FROM snapshot_permissions WHERE snapshot_id = ? AND grantee = 'all'").get(r.snapshot_id) !== undefined;
      return canRestore(db, who === 'self' ? me : who, r);
    }));
  }
  const tagsByAccount = new Map<string, Map<string, Tag[]>>();
  for (const a of new Set(rows.map((r) => r.account_id))) tagsByAccount.set(a, tagSetsFor(db, a, rows.filter((r) => r.account_id === a).map((r) => r.snapshot_id)));
  const views = rows.map((row) => ({ row, tags: row.account_id === me ? tagsByAccount.get(row.account_id)?.get(row.snapshot_id) ?? [] : [] }));
  return { snapshotSet: applyFilters(views, input.Filter, SNAPSHOT_FILTERS, (v) => v.tags).map((v) => snapshotXml(v.row, v.tags)) };
}

function ownSnapshot(db: Db, principal: Principal, id: string | undefined): SnapshotRow {
  if (!id) throw errors.missing('SnapshotId');
  checkSnapshotId(id);
  const s = snapshotRow(db, id);
  if (!s || s.account_id !== principal.accountId) throw snapshotNotFound([id]);
  return s;
}

const permissionList = list(z.object({ UserId: z.string().optional(), Group: z.string().optional() }));
const modifyShape = z.object({
  SnapshotId: z.string().optional(),
  Attribute: z.string().optional(),
  OperationType: z.string().optional(),
  UserId: list(z.string()),
  UserGroup: list(z.string()),
  CreateVolumePermission: z.object({ Add: permissionList, Remove: permissionList }).partial().optional(),
});

function grantee(db: Db, p: { UserId?: string; Group?: string }): string {
  if (p.Group !== undefined) {
    if (p.Group !== 'all') throw errors.invalidValue('Group', p.Group, "The only group is 'all'.");
    return 'all';
  }
  const id = p.UserId ?? '';
  if (!/^\d{12}$/.test(id)) {
    // euca2ools users may name an account; EC2 wants the 12-digit id.
    const byName = accountByName(db, id);
    if (byName) return byName.accountId;
    throw new Ec2Error('InvalidUserID.Malformed', `Invalid user id: "${id}"`);
  }
  return id;
}

function modifySnapshotAttribute(db: Db, principal: Principal, input: z.infer<typeof modifyShape>) {
  const s = ownSnapshot(db, principal, input.SnapshotId);
  const attr = input.Attribute ?? (input.CreateVolumePermission ? 'createVolumePermission' : undefined);
  if (attr === 'productCodes') throw new Ec2Error('InvalidParameterValue', 'Product codes are not supported for snapshots of this cloud.');
  if (attr !== 'createVolumePermission') throw errors.invalidValue('Attribute', attr ?? '', "Use 'createVolumePermission'.");
  const add: { UserId?: string; Group?: string }[] = [...(input.CreateVolumePermission?.Add ?? [])];
  const remove: { UserId?: string; Group?: string }[] = [...(input.CreateVolumePermission?.Remove ?? [])];
  const listed = [...input.UserId.map((u) => ({ UserId: u })), ...input.UserGroup.map((g) => ({ Group: g }))];
  if (listed.length) {
    if (input.OperationType === 'add') add.push(...listed);
    else if (input.OperationType === 'remove') remove.push(...listed);
    else throw errors.invalidValue('OperationType', input.OperationType ?? '', "Use 'add' or 'remove'.");
  }
  if (!add.length && !remove.length) throw errors.missing('CreateVolumePermission');
  const adds = add.map((p) => grantee(db, p));
  const removes = remove.map((p) => grantee(db, p));
  db.transaction(() => {
    for (const g of adds) db.prepare('INSERT OR IGNORE INTO snapshot_permissions (snapshot_id, grantee) VALUES (?, ?)').run(s.snapshot_id, g);
    for (const g of removes) db.prepare('DELETE FROM snapshot_permissions WHERE snapshot_id = ? AND grantee = ?').run(s.snapshot_id, g);
  })();
  return { return: true };
}

function describeSnapshotAttribute(db: Db, principal: Principal, input: { SnapshotId?: string; Attribute?: string }) {
  const s = ownSnapshot(db, principal, input.SnapshotId);
  if (input.Attribute === 'productCodes') return { snapshotId: s.snapshot_id, productCodes: [] };
  if (input.Attribute !== 'createVolumePermission') throw errors.invalidValue('Attribute', input.Attribute ?? '', "Use 'createVolumePermission' or 'productCodes'.");
  const grantees = db.prepare('SELECT grantee FROM snapshot_permissions WHERE snapshot_id = ? ORDER BY grantee').pluck().all(s.snapshot_id) as string[];
  return { snapshotId: s.snapshot_id, createVolumePermission: grantees.map((g) => (g === 'all' ? { group: 'all' } : { userId: g })) };
}

async function copySnapshot(st: StorageContext, principal: Principal, region: string, input: { SourceSnapshotId?: string; SourceRegion?: string; Description?: string; Encrypted?: string; TagSpecification: z.infer<typeof tagSpecificationsShape> }) {
  const { db, controllers } = st;
  if (!input.SourceSnapshotId) throw errors.missing('SourceSnapshotId');
  if (!input.SourceRegion) throw errors.missing('SourceRegion');
  if (input.SourceRegion !== region) throw new Ec2Error('InvalidParameterValue', `Invalid source region: ${input.SourceRegion} (this cloud has the one region ${region}).`);
  if (input.Encrypted?.toLowerCase() === 'true') throw new Ec2Error('InvalidParameterValue', 'Encrypted snapshots are not supported by this cloud.');
  checkSnapshotId(input.SourceSnapshotId);
  const src = snapshotRow(db, input.SourceSnapshotId);
  if (!src || !canRestore(db, principal.accountId, src)) throw snapshotNotFound([input.SourceSnapshotId]);
  if (src.status !== 'completed') throw new Ec2Error('IncorrectState', `Snapshot '${src.snapshot_id}' is ${src.status}; only completed snapshots can be copied.`);
  const snapshotId = newId('snap');
  db.transaction(() => {
    db.prepare(`INSERT INTO snapshots (snapshot_id, account_id, volume_id, volume_size, zone, status, description, start_time, consistency, source_snapshot_id)
      VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)`).run(snapshotId, principal.accountId, src.volume_id, src.volume_size, src.zone,
      input.Description ?? `Copied for DestinationSnapshot ${snapshotId} from SourceSnapshot ${src.snapshot_id}`, new Date().toISOString(), src.consistency, src.snapshot_id);
    applyTagSpecifications(db, principal.accountId, [snapshotId], 'snapshot', input.TagSpecification);
  })();
  try {
    const res = await controllers.client(src.zone).call(sc.CopyStorageSnapshot, { snapshotId, sourceSnapshotId: src.snapshot_id });
    recordScSnapshot(db, snapshotId, res.snapshot);
  } catch (err) {
    db.transaction(() => {
      deleteTagsFor(db, snapshotId);
      db.prepare('DELETE FROM snapshots WHERE snapshot_id = ?').run(snapshotId);
    })();
    if (err instanceof WireError && err.code === 'IncorrectState') throw new Ec2Error('IncorrectState', err.message);
    throw scUnavailable(src.zone, err);
  }
  return { snapshotId, tagSet: undefined };
}

export const snapshotActions = (st: StorageContext, region: string) => [
  defineEc2Action('CreateSnapshot', z.object({ VolumeId: z.string().optional(), Description: z.string().optional(), TagSpecification: tagSpecificationsShape }),
    (input, ctx) => createSnapshot(st, ctx, input)),
  defineEc2Action('DeleteSnapshot', z.object({ SnapshotId: z.string().optional() }), (input, { principal }) => deleteSnapshot(st, principal, input.SnapshotId)),
  defineEc2Action('DescribeSnapshots',
    z.object({ SnapshotId: list(z.string()), Owner: list(z.string()), RestorableBy: list(z.string()), Filter: q.filters(), MaxResults: q.int().optional(), NextToken: z.string().optional() }),
    (input, { principal }) => describeSnapshots(st.db, principal, input)),
  defineEc2Action('ModifySnapshotAttribute', modifyShape, (input, { principal }) => modifySnapshotAttribute(st.db, principal, input)),
  defineEc2Action('DescribeSnapshotAttribute', z.object({ SnapshotId: z.string().optional(), Attribute: z.string().optional() }),
    (input, { principal }) => describeSnapshotAttribute(st.db, principal, input)),
  defineEc2Action('ResetSnapshotAttribute', z.object({ SnapshotId: z.string().optional(), Attribute: z.string().optional() }), (input, { principal }) => {
    const s = ownSnapshot(st.db, principal, input.SnapshotId);
    if (input.Attribute !== 'createVolumePermission') throw errors.invalidValue('Attribute', input.Attribute ?? '', "Use 'createVolumePermission'.");
    st.db.prepare('DELETE FROM snapshot_permissions WHERE snapshot_id = ?').run(s.snapshot_id);
    return { return: true };
  }),
  defineEc2Action('CopySnapshot',
    z.object({ SourceSnapshotId: z.string().optional(), SourceRegion: z.string().optional(), Description: z.string().optional(), Encrypted: z.string().optional(), DestinationRegion: z.string().optional(), TagSpecification: tagSpecificationsShape }),
    (input, { principal }) => copySnapshot(st, principal, region, input)),
];
