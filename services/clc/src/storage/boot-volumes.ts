// Boot from EBS, the clc's half. Each EBS-backed instance gets its own root volume, made by the zone's SC
// from its image's snapshot and recorded as attached at the root device from the start (with
// DeleteOnTermination). Before every launch of such an instance (RunInstances, a re-dispatch, StartInstances)
// the cc places it (cc.PlaceInstances), the clc has the SC export each of the instance's volumes to that node's address, and hands
// the cc the launch pinned to that node with the targets (CHAP re-sealed for the cluster); the node defines the
// guest with those iSCSI disks. A stopped instance's exports are removed by the storage poller.
import { Ec2Error } from '@mallee/aws-protocol';
import type { Db } from '@mallee/store';
import { cc, mapTargetSecret, resealSecret, sc, WireError, type BootVolume, type InstanceSpec } from '@mallee/wire';
import { newId } from '../resources/index.js';
import { instanceRow } from '../instances.js';
import { clusterKey } from './attach.js';
import { snapshotRow, type AttachmentRow, type VolumeRow } from './records.js';
import { scUnavailable, type StorageContext } from './volume-actions.js';

/** How an EBS-backed image's root volume is made (from its root mapping, RunInstances may override size and flag). */
export interface RootVolumeSpec { snapshotId: string; volumeSize: number; deleteOnTermination: boolean }

/** How long RunInstances waits for the SC to restore the root volumes. */
const RESTORE_WAIT_MS = 10 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The root volume rows of new instances (call inside the transaction that records them): 'creating',
 * already attached at the root device, so nothing else can take the volume. Returns the volume ids.
 */
export function recordRootVolumes(db: Db, instances: { instanceId: string; accountId: string; zone: string }[], root: RootVolumeSpec, device: string): string[] {
  const now = new Date().toISOString();
  const insertVolume = db.prepare(`INSERT INTO volumes (volume_id, account_id, zone, size_gib, snapshot_id, volume_type, status, create_time)
    VALUES (?, ?, ?, ?, ?, 'standard', 'creating', ?)`);
  const attach = db.prepare(`INSERT INTO volume_attachments (volume_id, instance_id, device, status, attach_time, guest_device, delete_on_termination)
    VALUES (?, ?, ?, 'attached', ?, 'vda', ?)`);
  return instances.map((i) => {
    const volumeId = newId('vol');
    insertVolume.run(volumeId, i.accountId, i.zone, root.volumeSize, root.snapshotId, now);
    attach.run(volumeId, i.instanceId, device, now, root.deleteOnTermination ? 1 : 0);
    return volumeId;
  });
}

/** Has the SC restore each root volume from its snapshot and waits until all are there (or one failed). */
export async function createRootVolumes(s: StorageContext, zone: string, volumeIds: string[]): Promise<void> {
  const client = s.controllers.client(zone);
  for (const volumeId of volumeIds) {
    const v = s.db.prepare('SELECT * FROM volumes WHERE volume_id = ?').get(volumeId) as VolumeRow;
    const snap = snapshotRow(s.db, v.snapshot_id!);
    if (!snap?.bucket || !snap.manifest_key) throw new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${v.snapshot_id}' does not exist.`);
    try {
      await client.call(sc.CreateStorageVolume, { volumeId, sizeGiB: v.size_gib, snapshot: { snapshotId: snap.snapshot_id, location: { bucket: snap.bucket, manifestKey: snap.manifest_key } } });
    } catch (err) {
      if (err instanceof WireError && (err.code === 'VolumeSizeExceeded' || err.code === 'VolumeLimitExceeded')) throw new Ec2Error('VolumeLimitExceeded', err.message);
      throw scUnavailable(zone, err);
    }
  }
  const deadline = Date.now() + RESTORE_WAIT_MS;
  for (;;) {
    const { volumes } = await client.call(sc.DescribeStorageVolumes, { volumeIds });
    const failed = volumes.find((v) => v.status === 'failed');
    if (failed) throw new Ec2Error('InternalError', `The root volume ${failed.volumeId} could not be made from its snapshot: ${failed.reason ?? 'unknown reason'}`, 500);
    if (volumes.length === volumeIds.length && volumes.every((v) => v.status === 'available')) break;
    if (Date.now() > deadline) throw new Ec2Error('InternalError', `The root volumes were not restored within ${RESTORE_WAIT_MS / 60_000} minutes.`, 500);
    await sleep(500);
  }
  const inUse = s.db.prepare("UPDATE volumes SET status = 'in-use' WHERE volume_id = ? AND status IN ('creating', 'available')");
  s.db.transaction(() => { for (const id of volumeIds) inUse.run(id); })();
}

/** The instance's volumes, root first (the attachment at its root device name). */
function bootAttachments(db: Db, instanceId: string, rootDevice: string | null): AttachmentRow[] {
  const rows = db.prepare('SELECT * FROM volume_attachments WHERE instance_id = ? ORDER BY device').all(instanceId) as AttachmentRow[];
  return rows.sort((a, b) => Number(b.device === rootDevice) - Number(a.device === rootDevice));
}

const hostOf = (url: string) => new URL(url).hostname.replace(/^\[|\]$/g, '');

/**
 * The node of each launch, chosen and held by the cc (cc.PlaceInstances: its SCHEDPOLICY, its holds, so the
 * instances of one RunInstances share the room out as unpinned ones would); what does not fit is absent.
 * A cc of the wire version before answers InvalidAction: then the first node with room, one by one.
 */
async function placeLaunches(s: StorageContext, zone: string, specs: InstanceSpec[]): Promise<Map<string, { node: string; host: string }>> {
  try {
    const { placed } = await s.clusters.client(zone).call(cc.PlaceInstances, { instances: specs.map((x) => ({ instanceId: x.instanceId, vmType: x.vmType })) });
    return new Map(placed.map((p) => [p.instanceId, { node: p.node, host: hostOf(p.url) }]));
  } catch (err) {
    if (!(err instanceof WireError && err.code === 'InvalidAction')) throw err;
    const out = new Map<string, { node: string; host: string }>();
    for (const spec of specs) out.set(spec.instanceId, await chooseNode(s, zone, spec));
    return out;
  }
}

/** The first ENABLED node of the zone with room for the type (the cc's GREEDY, on its fresh numbers): for a cc without PlaceInstances. */
async function chooseNode(s: StorageContext, zone: string, spec: InstanceSpec): Promise<{ node: string; host: string }> {
  const { nodes } = await s.clusters.client(zone).call(cc.DescribeResources, { vmTypes: [spec.vmType] });
  const t = spec.vmType;
  const fit = nodes.find((n) => n.status === 'enabled' && n.cores.available >= t.cores && n.memoryMiB.available >= t.memoryMiB && n.diskGiB.available >= t.diskGiB);
  if (!fit) throw new WireError('InsufficientInstanceCapacity', `no node of ${zone} has room for ${t.name} (${t.cores} cores, ${t.memoryMiB} MiB, ${t.diskGiB} GiB)`);
  return { node: fit.node, host: hostOf(fit.url) };
}

/**
 * Completes the launches of EBS-backed instances (the dispatcher calls it just before they go to the cc):
 * each is pinned to a node and carries its volumes, exported to that node. Other launches pass unchanged.
 */
export async function withBootVolumes(s: StorageContext, specs: InstanceSpec[]): Promise<InstanceSpec[]> {
  const ebs = specs.flatMap((spec) => {
    const row = instanceRow(s.db, spec.instanceId);
    if (row?.root_device_type !== 'ebs') return [];
    const attachments = bootAttachments(s.db, row.instance_id, row.root_device_name);
    const root = attachments[0];
    if (root?.device !== row.root_device_name) throw new WireError('InsufficientInstanceCapacity', `instance ${row.instance_id} has no root volume at ${row.root_device_name}`);
    const rootStatus = s.db.prepare('SELECT status FROM volumes WHERE volume_id = ?').pluck().get(root.volume_id) as VolumeRow['status'];
    if (rootStatus !== 'in-use') throw new WireError('InsufficientInstanceCapacity', `the root volume ${root.volume_id} of ${row.instance_id} is ${rootStatus}`);
    return [{ spec, row, attachments, root }];
  });
  if (!ebs.length) return specs;
  const zone = ebs[0]!.row.zone;
  const where = await placeLaunches(s, zone, ebs.map((e) => e.spec));
  if (!where.size) {
    const t = ebs[0]!.spec.vmType;
    throw new WireError('InsufficientInstanceCapacity', `no node of ${zone} has room for ${t.name} (${t.cores} cores, ${t.memoryMiB} MiB, ${t.diskGiB} GiB)`);
  }
  const completed = new Map(await Promise.all(ebs.filter((e) => where.has(e.spec.instanceId)).map(async ({ spec, row, attachments, root }) => {
    const { node, host } = where.get(spec.instanceId)!;
    const scKey = s.controllers.get(row.zone)?.key ?? '';
    const key = clusterKey(s, row.zone);
    const ebsVolumes: BootVolume[] = [];
    for (const a of attachments) {
      const { target } = await s.controllers.client(row.zone).call(sc.ExportVolume, { volumeId: a.volume_id, initiatorAddress: host });
      s.db.prepare('UPDATE volume_attachments SET initiator = ? WHERE volume_id = ?').run(host, a.volume_id);
      ebsVolumes.push({ volumeId: a.volume_id, device: a.device, root: a === root, target: mapTargetSecret(target, (sealed) => resealSecret(scKey, key, sealed)) });
    }
    return [spec.instanceId, { ...spec, node, ebsVolumes }] as const;
  })));
  // An EBS-backed launch no node has room for is left out: the cc places the others (and minCount decides).
  const ebsIds = new Set(ebs.map((e) => e.spec.instanceId));
  return specs.flatMap((spec) => (ebsIds.has(spec.instanceId) ? (completed.has(spec.instanceId) ? [completed.get(spec.instanceId)!] : []) : [spec]));
}

/** After a stop: the SC exports of a stopped instance's volumes go (its next start exports to its next node). */
export async function unexportStopped(s: StorageContext, a: AttachmentRow & { zone: string }): Promise<void> {
  if (!a.initiator) return;
  await s.controllers.client(a.zone).call(sc.UnexportVolume, { volumeId: a.volume_id, initiatorAddress: a.initiator });
  s.db.prepare('UPDATE volume_attachments SET initiator = NULL WHERE volume_id = ? AND initiator = ?').run(a.volume_id, a.initiator);
}
