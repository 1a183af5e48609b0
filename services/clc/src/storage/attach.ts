// AttachVolume and DetachVolume: the SC exports the volume to the instance's node (one target, CHAP,
// ACL for the node's address), then the cc has the node hot-plug it. The attachment row is written
// first, in the transaction that checks the volume is free, so a volume is never attached twice.
import { z } from 'zod';
import { markWorking, othersWorkingOn, type Db } from '@mallee/store';
import { defineEc2Action, Ec2Error, errors, type Principal } from '@mallee/aws-protocol';
import { cc, mapTargetSecret, openSecret, sc, sealSecret, WireError } from '@mallee/wire';
import { instanceRow, type InstanceRow } from '../instances.js';
import { ownInstances } from '../actions/context.js';
import { attachmentOf, attachmentXml, ownVolumes, type AttachmentRow, type VolumeRow } from './records.js';
import type { StorageContext } from './volume-actions.js';

const DEVICE = /^\/dev\/(?:sd[b-z]|xvd[b-z]|vd[b-z])[0-9]*$/;

/** The address the instance's node connects to the portal from: the host of its registered URL. */
export async function initiatorOf(s: StorageContext, zone: string, instanceId: string): Promise<string> {
  const client = s.clusters.client(zone);
  const [{ instances }, { nodes }] = await Promise.all([client.call(cc.DescribeInstances, { instanceIds: [instanceId] }), client.call(cc.DescribeNodes, {})]);
  const node = instances.find((i) => i.instanceId === instanceId)?.node;
  const url = nodes.find((n) => n.node === node)?.url;
  if (!url) throw new Ec2Error('IncorrectInstanceState', `The node of instance '${instanceId}' is not known to its cluster now; try again.`);
  return new URL(url).hostname;
}

/**
 * Volumes an AttachVolume or DetachVolume of this process is working on now, also marked in the database for
 * other clcs on the same PostgreSQL (markWorking: an advisory lock, freed when this process dies). The storage
 * poller leaves their `attaching`/`detaching` rows alone; any other such row was left by a clc that died
 * mid-call (see poller.ts).
 */
const inFlight = new Map<string, number>();
export const attachmentInFlight = (db: Db, volumeId: string): boolean => inFlight.has(volumeId) || othersWorkingOn(db, attachmentWorkKey(volumeId));
/** The database mark of an AttachVolume/DetachVolume at work on a volume (exported for tests). */
export const attachmentWorkKey = (volumeId: string) => `mallee-attachment-${volumeId}`;
/** Runs `work` with these volumes marked as being worked on (the storage poller leaves their attachments alone). */
export function workingOnVolumes<T>(db: Db, volumeIds: readonly string[], work: () => Promise<T>): Promise<T> {
  return volumeIds.reduceRight<() => Promise<T>>((inner, id) => () => working(db, id, inner), work)();
}

async function working<T>(db: Db, volumeId: string, work: () => Promise<T>): Promise<T> {
  const release = markWorking(db, attachmentWorkKey(volumeId));
  inFlight.set(volumeId, (inFlight.get(volumeId) ?? 0) + 1);
  try {
    return await work();
  } finally {
    const n = inFlight.get(volumeId)! - 1;
    if (n) inFlight.set(volumeId, n);
    else inFlight.delete(volumeId);
    release();
  }
}

function wireToEc2(err: unknown, fallback: string): Ec2Error {
  if (err instanceof Ec2Error) return err;
  if (err instanceof WireError) {
    if (err.code === 'IncorrectInstanceState' || err.code === 'InvalidInstanceID.NotFound') return new Ec2Error('IncorrectInstanceState', err.message);
    if (err.code === 'VolumeInUse' || err.code === 'IncorrectState') return new Ec2Error(err.code, err.message);
    if (err.code === 'ServiceUnavailable') return new Ec2Error('ServiceUnavailable', `${fallback}: ${err.message}`, 503);
    return new Ec2Error('InternalError', `${fallback}: ${err.code}: ${err.message}`, 500);
  }
  return new Ec2Error('InternalError', `${fallback}: ${(err as Error).message}`, 500);
}

async function attachVolume(s: StorageContext, principal: Principal, input: { VolumeId?: string; InstanceId?: string; Device?: string }): Promise<Record<string, unknown>> {
  const { db } = s;
  if (!input.VolumeId) throw errors.missing('VolumeId');
  if (!input.InstanceId) throw errors.missing('InstanceId');
  if (!input.Device) throw errors.missing('Device');
  const [vol] = ownVolumes(db, principal, [input.VolumeId]);
  const [inst] = ownInstances(db, principal, [input.InstanceId]);
  const device = input.Device;
  if (!DEVICE.test(device)) throw new Ec2Error('InvalidParameterValue', `Invalid value '${device}' for unixDevice. Attachment point ${device} is not a valid device name (use /dev/sdf…/dev/sdp or /dev/vdb…).`);
  return working(db, vol!.volume_id, () => attach(s, vol!, inst!, device));
}

async function attach(s: StorageContext, vol: VolumeRow, inst: InstanceRow, device: string): Promise<Record<string, unknown>> {
  const { db } = s;
  const now = new Date().toISOString();
  db.transaction(() => {
    const v = db.prepare('SELECT status, zone FROM volumes WHERE volume_id = ?').get(vol.volume_id) as { status: string; zone: string };
    const other = attachmentOf(db, vol.volume_id);
    if (other) throw new Ec2Error('VolumeInUse', `${vol.volume_id} is already attached to an instance (${other.instance_id})`);
    if (v.status !== 'available') throw new Ec2Error('IncorrectState', `${vol.volume_id} is not 'available' (it is '${v.status}').`);
    const i = instanceRow(db, inst.instance_id)!;
    if (i.state !== 'running') throw new Ec2Error('IncorrectInstanceState', `Instance '${i.instance_id}' is not 'running'.`);
    if (i.zone !== v.zone) throw new Ec2Error('InvalidVolume.ZoneMismatch', `The volume '${vol.volume_id}' is not in the same availability zone as instance '${i.instance_id}'`);
    if (db.prepare('SELECT 1 FROM volume_attachments WHERE instance_id = ? AND device = ?').get(i.instance_id, device)) {
      throw new Ec2Error('InvalidParameterValue', `Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`);
    }
    db.prepare("INSERT INTO volume_attachments (volume_id, instance_id, device, status, attach_time) VALUES (?, ?, ?, 'attaching', ?)").run(vol.volume_id, i.instance_id, device, now);
    db.prepare("UPDATE volumes SET status = 'in-use' WHERE volume_id = ?").run(vol.volume_id);
  })();
  const zone = vol.zone;
  let initiator: string | undefined;
  try {
    initiator = await initiatorOf(s, zone, inst.instance_id);
    db.prepare('UPDATE volume_attachments SET initiator = ? WHERE volume_id = ?').run(initiator, vol.volume_id);
    const { target } = await s.controllers.client(zone).call(sc.ExportVolume, { volumeId: vol.volume_id, initiatorAddress: initiator });
    // Re-sealed for the next link: only the cc (and then the node) can read the CHAP secret (or cephx key).
    const scKey = s.controllers.get(zone)!.key;
    const cluster = s.clusters.get(zone);
    if (!cluster) throw new Ec2Error('IncorrectInstanceState', `The cluster of zone ${zone} is not registered.`);
    const { volume } = await s.clusters.client(zone).call(cc.AttachVolume, {
      instanceId: inst.instance_id, volumeId: vol.volume_id, device,
      target: mapTargetSecret(target, (sealed) => sealSecret(clusterKey(s, zone), openSecret(scKey, sealed))),
    });
    db.prepare("UPDATE volume_attachments SET status = 'attached', guest_device = ? WHERE volume_id = ?").run(volume.guestDevice, vol.volume_id);
  } catch (err) {
    // An export the SC may still hold is removed by the poller (exports without an attachment).
    await releaseAttachment(s, { volume_id: vol.volume_id, initiator: initiator ?? null }, zone).catch(() => dropAttachment(s, vol.volume_id));
    throw wireToEc2(err, `Attaching ${vol.volume_id} to ${inst.instance_id} failed`);
  }
  return attachmentXml(attachmentOf(db, vol.volume_id)!);
}

export function clusterKey(s: StorageContext, zone: string): string {
  const key = s.db.prepare('SELECT wire_key FROM clusters WHERE name = ?').pluck().get(zone) as string | undefined;
  if (!key) throw new Ec2Error('IncorrectInstanceState', `The cluster of zone ${zone} is not registered.`);
  return key;
}

/** Unexport at the SC, then forget the attachment: the volume is available again. */
export async function releaseAttachment(s: StorageContext, a: Pick<AttachmentRow, 'volume_id' | 'initiator'>, zone: string): Promise<void> {
  await s.controllers.client(zone).call(sc.UnexportVolume, { volumeId: a.volume_id, ...(a.initiator ? { initiatorAddress: a.initiator } : {}) });
  dropAttachment(s, a.volume_id);
}

export function dropAttachment(s: StorageContext, volumeId: string): void {
  s.db.transaction(() => {
    s.db.prepare('DELETE FROM volume_attachments WHERE volume_id = ?').run(volumeId);
    s.db.prepare("UPDATE volumes SET status = 'available' WHERE volume_id = ? AND status = 'in-use'").run(volumeId);
  })();
}

async function detachVolume(s: StorageContext, principal: Principal, input: { VolumeId?: string; InstanceId?: string; Device?: string; Force?: boolean }): Promise<Record<string, unknown>> {
  const { db } = s;
  if (!input.VolumeId) throw errors.missing('VolumeId');
  const [vol] = ownVolumes(db, principal, [input.VolumeId]);
  const att = attachmentOf(db, vol!.volume_id);
  if (!att) throw new Ec2Error('IncorrectState', `Volume '${vol!.volume_id}' is in the '${vol!.status}' state.`);
  if ((input.InstanceId && input.InstanceId !== att.instance_id) || (input.Device && input.Device !== att.device)) {
    throw new Ec2Error('InvalidAttachment.NotFound', `Volume ${vol!.volume_id} is not attached to ${input.InstanceId ?? att.instance_id} at ${input.Device ?? att.device}`);
  }
  const force = input.Force ?? false;
  const inst = instanceRow(db, att.instance_id);
  if (inst?.root_device_type === 'ebs' && att.device === inst.root_device_name && inst.state !== 'stopped' && inst.state !== 'terminated') {
    throw new Ec2Error('OperationNotPermitted', `Unable to detach root volume '${vol!.volume_id}' from instance '${inst.instance_id}'`);
  }
  return working(db, vol!.volume_id, () => detach(s, vol!, att, inst, force));
}

async function detach(s: StorageContext, vol: VolumeRow, att: AttachmentRow, inst: InstanceRow | undefined, force: boolean): Promise<Record<string, unknown>> {
  const { db } = s;
  db.prepare("UPDATE volume_attachments SET status = 'detaching' WHERE volume_id = ?").run(vol.volume_id);
  const reply = { ...attachmentXml({ ...att, status: 'detaching' }) };
  if (inst && inst.state !== 'terminated' && s.clusters.get(vol.zone)) {
    try {
      const { detached } = await s.clusters.client(vol.zone).call(cc.DetachVolume, { instanceId: att.instance_id, volumeId: vol.volume_id, force });
      if (!detached && !force) {
        db.prepare("UPDATE volume_attachments SET status = 'attached' WHERE volume_id = ?").run(vol.volume_id);
        throw new Ec2Error('IncorrectState', `The instance ${att.instance_id} did not release ${vol.volume_id}; unmount it in the guest and retry, or detach with --force.`);
      }
    } catch (err) {
      const gone = err instanceof WireError && err.code === 'InvalidInstanceID.NotFound';
      if (!gone && !force) {
        db.prepare("UPDATE volume_attachments SET status = 'attached' WHERE volume_id = ?").run(vol.volume_id);
        throw wireToEc2(err, `Detaching ${vol.volume_id} from ${att.instance_id} failed`);
      }
    }
  }
  try {
    await releaseAttachment(s, att, vol.zone);
  } catch (err) {
    // The poller finishes the unexport; the volume stays 'detaching' until then.
    throw wireToEc2(err, `Unexporting ${vol.volume_id} failed`);
  }
  return reply;
}

const bool = () => z.string().transform((v) => v.toLowerCase() === 'true').optional();

export const attachActions = (s: StorageContext) => [
  defineEc2Action('AttachVolume', z.object({ VolumeId: z.string().optional(), InstanceId: z.string().optional(), Device: z.string().optional() }),
    (input, { principal }) => attachVolume(s, principal, input)),
  defineEc2Action('DetachVolume', z.object({ VolumeId: z.string().optional(), InstanceId: z.string().optional(), Device: z.string().optional(), Force: bool() }),
    (input, { principal }) => detachVolume(s, principal, input)),
];
