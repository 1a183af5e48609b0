// CreateImage of an EBS-backed instance: a snapshot of its root volume (held as CreateSnapshot holds an
// attached volume's I/O: guest-agent freeze, else a pause; the instance is never rebooted, as with NoReboot) and
// an image booting from it, `pending` until the snapshot completes (the storage poller settles it).
import { z } from 'zod';
import { defineEc2Action, Ec2Error, errors, type ActionContext } from '@mallee/aws-protocol';
import { ownInstances } from '../actions/context.js';
import { checkImageNameFree, recordImage } from '../resources/index.js';
import { attachmentsOfInstances, volumeRow } from './records.js';
import { createSnapshot } from './snapshot-actions.js';
import type { StorageContext } from './volume-actions.js';

const createImageShape = z.object({
  InstanceId: z.string().optional(),
  Name: z.string().optional(),
  Description: z.string().optional(),
  NoReboot: z.string().optional(),
});

async function createImage(s: StorageContext, ctx: ActionContext, input: z.infer<typeof createImageShape>): Promise<Record<string, unknown>> {
  if (!input.InstanceId) throw errors.missing('InstanceId');
  if (!input.Name) throw errors.missing('Name');
  const [row] = ownInstances(s.db, ctx.principal, [input.InstanceId]);
  const i = row!;
  if (i.root_device_type !== 'ebs') {
    throw new Ec2Error('UnsupportedOperation', `The instance '${i.instance_id}' does not have an 'ebs' root device type; bundle instance-store instances instead.`);
  }
  if (i.state !== 'running' && i.state !== 'stopped') throw new Ec2Error('IncorrectInstanceState', `The instance '${i.instance_id}' is not in the 'running' or 'stopped' state.`);
  checkImageNameFree(s.db, ctx.principal.accountId, input.Name);
  if (input.Description !== undefined && input.Description.length > 255) throw errors.invalidValue('description', input.Description, 'Length exceeds maximum of 255.');
  const root = (attachmentsOfInstances(s.db, [i.instance_id]).get(i.instance_id) ?? []).find((a) => a.device === i.root_device_name);
  if (!root) throw new Ec2Error('IncorrectInstanceState', `The instance '${i.instance_id}' has no root volume at ${i.root_device_name}.`);
  const volume = volumeRow(s.db, root.volume_id)!;
  const snap = await createSnapshot(s, ctx, { VolumeId: root.volume_id, Description: `Created by CreateImage(${i.instance_id}) for ${input.Name}`, TagSpecification: [] });
  const snapshotId = String(snap.snapshotId);
  const imageId = s.db.transaction(() => recordImage(s.db, ctx.principal, {
    name: input.Name!, description: input.Description, location: `${ctx.principal.accountId}/${input.Name}`, type: 'machine',
    architecture: i.architecture, kernelId: i.kernel_id ?? undefined, ramdiskId: i.ramdisk_id ?? undefined, platform: i.platform ?? undefined,
    rootDeviceType: 'ebs', rootDeviceName: i.root_device_name!, virtualizationType: i.virtualization_type,
    mappings: [{ DeviceName: i.root_device_name!, Ebs: { SnapshotId: snapshotId, VolumeSize: volume.size_gib, DeleteOnTermination: true } }],
    state: 'pending',
  }))();
  return { imageId };
}

export const createImageAction = (s: StorageContext) =>
  defineEc2Action('CreateImage', createImageShape, (input, ctx) => createImage(s, ctx, input));
