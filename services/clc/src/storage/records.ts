// The clc's EBS rows (volumes, attachments, snapshots), the ids and errors EC2 uses for them, and
// how each renders in EC2 XML.
import type { Db } from '@mallee/store';
import { Ec2Error, type Principal } from '@mallee/aws-protocol';
import { tagSetsFor, type Tag } from '../resources/index.js';

export const VOLUME_ID = /^vol-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;
export const SNAPSHOT_ID = /^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;

export interface VolumeRow {
  volume_id: string; account_id: string; zone: string; size_gib: number; snapshot_id: string | null; volume_type: string;
  status: 'creating' | 'available' | 'in-use' | 'deleting' | 'error'; status_reason: string | null; create_time: string;
  /** CreateVolume's ClientToken and the request it came with (requestOf in volume-actions.ts), if one was given. */
  client_token: string | null; client_request: string | null;
}
export interface AttachmentRow {
  volume_id: string; instance_id: string; device: string; status: 'attaching' | 'attached' | 'detaching';
  attach_time: string; initiator: string | null; guest_device: string | null;
  /** 1 for an EBS-backed instance's root volume made at launch (unless the launch said otherwise). */
  delete_on_termination: number;
}
export interface SnapshotRow {
  snapshot_id: string; account_id: string; volume_id: string; volume_size: number; zone: string;
  status: 'pending' | 'completed' | 'error'; progress: number; description: string; start_time: string; completion_time: string | null;
  bucket: string | null; manifest_key: string | null; consistency: string | null; held_ms: number | null; cut_ms: number | null;
  uploaded_bytes: number | null; state_message: string | null; source_snapshot_id: string | null;
}

export const volumeNotFound = (ids: string[]) => new Ec2Error('InvalidVolume.NotFound', ids.length === 1 ? `The volume '${ids[0]}' does not exist.` : `The volumes '${ids.join(', ')}' do not exist.`);
export const snapshotNotFound = (ids: string[]) => new Ec2Error('InvalidSnapshot.NotFound', ids.length === 1 ? `The snapshot '${ids[0]}' does not exist.` : `The snapshots '${ids.join(', ')}' do not exist.`);

export function checkVolumeId(id: string): void {
  if (!VOLUME_ID.test(id)) throw new Ec2Error('InvalidVolume.Malformed', `Invalid id: "${id}" (expecting "vol-...")`);
}
export function checkSnapshotId(id: string): void {
  if (!SNAPSHOT_ID.test(id)) throw new Ec2Error('InvalidSnapshot.Malformed', `Invalid id: "${id}" (expecting "snap-...")`);
}

export function volumeRow(db: Db, id: string): VolumeRow | undefined {
  return db.prepare('SELECT * FROM volumes WHERE volume_id = ?').get(id) as VolumeRow | undefined;
}

/** The principal's volumes with these ids (others' are NotFound, as in EC2). */
export function ownVolumes(db: Db, principal: Principal, ids: string[], anyAccount = false): VolumeRow[] {
  for (const id of ids) checkVolumeId(id);
  const unique = [...new Set(ids)];
  const rows = unique.map((id) => volumeRow(db, id)).filter((r): r is VolumeRow => r !== undefined && (anyAccount || r.account_id === principal.accountId));
  const missing = unique.filter((id) => !rows.some((r) => r.volume_id === id));
  if (missing.length) throw volumeNotFound(missing);
  return rows;
}

export function attachmentOf(db: Db, volumeId: string): AttachmentRow | undefined {
  return db.prepare('SELECT * FROM volume_attachments WHERE volume_id = ?').get(volumeId) as AttachmentRow | undefined;
}

/** instanceId → its attachments (DescribeInstances' blockDeviceMapping). */
export function attachmentsOfInstances(db: Db, instanceIds: string[]): Map<string, AttachmentRow[]> {
  const out = new Map<string, AttachmentRow[]>();
  if (!instanceIds.length) return out;
  const rows = db.prepare('SELECT * FROM volume_attachments WHERE instance_id IN (SELECT value FROM json_each(?)) ORDER BY device')
    .all(JSON.stringify(instanceIds)) as AttachmentRow[];
  for (const r of rows) out.set(r.instance_id, [...(out.get(r.instance_id) ?? []), r]);
  return out;
}

export function snapshotRow(db: Db, id: string): SnapshotRow | undefined {
  return db.prepare('SELECT * FROM snapshots WHERE snapshot_id = ?').get(id) as SnapshotRow | undefined;
}

/** May this account create volumes from (and see) the snapshot: its own, shared with it, or public. */
export function canRestore(db: Db, accountId: string, s: SnapshotRow): boolean {
  if (s.account_id === accountId) return true;
  return db.prepare("SELECT 1 FROM snapshot_permissions WHERE snapshot_id = ? AND grantee IN (?, 'all')").pluck().get(s.snapshot_id, accountId) !== undefined;
}

/** A completed snapshot this account may create volumes from (CreateVolume, an EBS-backed image's root), or the EC2 error. */
export function restorableSnapshot(db: Db, accountId: string, snapshotId: string): SnapshotRow {
  checkSnapshotId(snapshotId);
  const snapshot = snapshotRow(db, snapshotId);
  if (!snapshot || !canRestore(db, accountId, snapshot)) throw snapshotNotFound([snapshotId]);
  if (snapshot.status !== 'completed') throw new Ec2Error('IncorrectState', `Snapshot '${snapshot.snapshot_id}' is ${snapshot.status}; volumes can be created from completed snapshots only.`);
  return snapshot;
}

export function attachmentXml(a: AttachmentRow): Record<string, unknown> {
  return { volumeId: a.volume_id, instanceId: a.instance_id, device: a.device, status: a.status, attachTime: new Date(a.attach_time), deleteOnTermination: a.delete_on_termination === 1 };
}

export interface VolumeView { row: VolumeRow; attachment?: AttachmentRow; tags: Tag[] }

export function volumeViews(db: Db, rows: VolumeRow[]): VolumeView[] {
  const byAccount = new Map<string, Map<string, Tag[]>>();
  for (const a of new Set(rows.map((r) => r.account_id))) byAccount.set(a, tagSetsFor(db, a, rows.filter((r) => r.account_id === a).map((r) => r.volume_id)));
  return rows.map((row) => {
    const attachment = attachmentOf(db, row.volume_id);
    return { row, ...(attachment ? { attachment } : {}), tags: byAccount.get(row.account_id)?.get(row.volume_id) ?? [] };
  });
}

export function volumeXml(v: VolumeView): Record<string, unknown> {
  const r = v.row;
  return {
    volumeId: r.volume_id,
    size: r.size_gib,
    snapshotId: r.snapshot_id ?? '',
    availabilityZone: r.zone,
    status: r.status === 'error' ? 'error' : r.status,
    createTime: new Date(r.create_time),
    attachmentSet: v.attachment ? [attachmentXml(v.attachment)] : [],
    tagSet: v.tags.length ? v.tags.map((t) => ({ key: t.key, value: t.value })) : undefined,
    volumeType: r.volume_type,
    encrypted: false,
    multiAttachEnabled: false,
  };
}

export function snapshotXml(s: SnapshotRow, tags: Tag[]): Record<string, unknown> {
  return {
    snapshotId: s.snapshot_id,
    volumeId: s.volume_id,
    status: s.status,
    startTime: new Date(s.start_time),
    progress: `${Math.floor(s.progress)}%`,
    ownerId: s.account_id,
    volumeSize: s.volume_size,
    description: s.description,
    encrypted: false,
    tagSet: tags.length ? tags.map((t) => ({ key: t.key, value: t.value })) : undefined,
    statusMessage: s.state_message ?? undefined,
    // Mallee's own: how the point-in-time copy was made (filesystem frozen, guest paused, or detached).
    consistency: s.consistency ?? undefined,
  };
}
