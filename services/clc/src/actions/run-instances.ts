// RunInstances: validate against the account's images, key pairs and groups, record the reservation
// and MaxCount instances as pending in one transaction (so a clc killed right after still knows
// them), then ask the zone's cc to place them. Instances the cc did not place are deleted; the
// response lists only placed ones. A launch that fails leaves nothing behind.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { cc, WireError } from '@mallee/wire';
import { defineEc2Action, Ec2Error, errors, q, type ActionContext, type Principal } from '@mallee/aws-protocol';
import {
  applyTagSpecifications, findKeyPair, findLaunchableImage, findLaunchableKernelOrRamdisk, newId, resolveGroups, tagSpecificationsShape,
} from '../resources/index.js';
import { cloudProperties } from '@mallee/properties';
import { findInstanceType, type InstanceType } from '../instance-types.js';
import { deleteInstances, insertReservation, instanceRows, reservationByClientToken, specOf, type InstanceRow, type NewInstance } from '../instances.js';
import { assignLaunchAddresses } from '../network/index.js';
import { createRootVolumes, recordRootVolumes, type RootVolumeSpec } from '../storage/index.js';
import type { ImageRecord } from '../resources/images.js';
import { list, type Clc } from './context.js';
import { instanceViews, reservationXml } from './describe-instances.js';

/** Upper bound on one request's MaxCount (a cluster of simulated nodes can take thousands). */
export const MAX_COUNT_LIMIT = 10_000;

export const runInstancesShape = z.object({
  ImageId: z.string().optional(),
  MinCount: q.int().optional(),
  MaxCount: q.int().optional(),
  KeyName: z.string().optional(),
  SecurityGroup: list(z.string()),
  SecurityGroupId: list(z.string()),
  InstanceType: z.string().optional(),
  UserData: z.string().optional(),
  Placement: z.object({ AvailabilityZone: z.string().optional() }).optional(),
  KernelId: z.string().optional(),
  RamdiskId: z.string().optional(),
  ClientToken: z.string().optional(),
  /** Eucalyptus/EC2-Classic: "private" launches without a public address. */
  AddressingType: z.string().optional(),
  TagSpecification: tagSpecificationsShape,
  /** EBS-backed images: the root mapping's VolumeSize and DeleteOnTermination may be overridden. */
  BlockDeviceMapping: list(z.object({
    DeviceName: z.string().optional(),
    Ebs: z.object({ VolumeSize: q.int().optional(), DeleteOnTermination: q.bool().optional() }).optional(),
  })),
});
export type RunInstancesInput = z.infer<typeof runInstancesShape>;

function checkCounts(input: RunInstancesInput): { min: number; max: number } {
  const min = input.MinCount ?? 1;
  const max = input.MaxCount ?? min;
  if (min < 1) throw errors.invalidValue('MinCount', min, 'MinCount must be at least 1.');
  if (max < 1) throw errors.invalidValue('MaxCount', max, 'MaxCount must be at least 1.');
  if (max < min) throw errors.invalidValue('MaxCount', max, `MaxCount (${max}) must be greater than or equal to MinCount (${min}).`);
  if (min > MAX_COUNT_LIMIT) throw new Ec2Error('InstanceLimitExceeded', `Your quota allows for at most ${MAX_COUNT_LIMIT} instances in one request.`);
  return { min, max: Math.min(max, MAX_COUNT_LIMIT) };
}

/** User data is limited by cloud.vmstate.user_data_max_size_kb (EC2's 16 KiB by default), before base64. */
function checkUserData(userData: string | undefined, maxBytes: number): string | undefined {
  if (userData === undefined || userData === '') return undefined;
  const compact = userData.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) {
    throw errors.invalidValue('UserData', '(user data)', 'Invalid BASE64 encoding of user data.');
  }
  if (Buffer.from(compact, 'base64').length > maxBytes) {
    throw new Ec2Error('InvalidParameterValue', `User data is limited to ${maxBytes} bytes`);
  }
  return compact;
}

/** The zone asked for, or the ENABLED zone with the most room for this type. */
function chooseZone(clc: Clc, requested: string | undefined, type: InstanceType, minCount: number): string {
  const zones = clc.clusters.list();
  if (requested !== undefined && requested !== '') {
    if (!zones.some((z) => z.name === requested)) throw new Ec2Error('InvalidParameterValue', `Invalid availability zone: [${requested}]`);
    return requested;
  }
  const room = (zone: string) => clc.clusters.availability(zone).find((a) => a.name === type.name)?.available ?? 0;
  const ranked = zones
    .map((z) => ({ name: z.name, enabled: z.state === 'ENABLED', room: room(z.name) }))
    .sort((a, b) => Number(b.enabled) - Number(a.enabled) || Number(b.room >= minCount) - Number(a.room >= minCount) || b.room - a.room);
  if (!ranked.length) throw new Ec2Error('InsufficientInstanceCapacity', 'There is no availability zone in this cloud yet (no cluster is registered).');
  return ranked[0]!.name;
}

function uniqueIds(db: Db, prefix: string, count: number, table: 'instances' | 'reservations'): string[] {
  const column = table === 'instances' ? 'instance_id' : 'reservation_id';
  const exists = db.prepare(`SELECT 1 FROM ${table} WHERE ${column} = ?`);
  const ids = new Set<string>();
  while (ids.size < count) {
    const id = newId(prefix);
    if (!exists.get(id)) ids.add(id);
  }
  return [...ids];
}

function reservationResponse(db: Db, reservationId: string): Record<string, unknown> {
  const rows = instanceRows(db, 'reservation_id = @r', { r: reservationId });
  if (!rows.length) throw new Ec2Error('InvalidParameterValue', 'The launch with this ClientToken failed; use another ClientToken to retry.');
  return reservationXml(instanceViews(db, rows));
}

/** Everything RunInstances checks before anything is recorded. */
function prepareLaunch(clc: Clc, principal: Principal, input: RunInstancesInput) {
  const { db } = clc;
  if (!input.ImageId) throw errors.missing('ImageId');
  const counts = checkCounts(input);
  const image = findLaunchableImage(db, principal, input.ImageId);
  const typeName = input.InstanceType || clc.properties.get(cloudProperties.defaultTypeName);
  const type = findInstanceType(db, typeName);
  if (!type) throw new Ec2Error('InvalidParameterValue', `Invalid value '${typeName}' for InstanceType.`);
  const keyPair = input.KeyName ? findKeyPair(db, principal.accountId, input.KeyName) : undefined;
  if (input.KeyName && !keyPair) throw new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${input.KeyName}' does not exist`);
  const kernelId = input.KernelId || image.kernelId;
  const ramdiskId = input.RamdiskId || image.ramdiskId;
  if (kernelId) findLaunchableKernelOrRamdisk(db, principal, kernelId, 'kernel');
  if (ramdiskId) findLaunchableKernelOrRamdisk(db, principal, ramdiskId, 'ramdisk');
  const userData = checkUserData(input.UserData, clc.properties.get(cloudProperties.userDataMaxSizeKb) * 1024);
  const zone = chooseZone(clc, input.Placement?.AvailabilityZone, type, counts.min);
  return { counts, image, type, keyPair, kernelId, ramdiskId, userData, zone, rootVolume: rootVolumeOf(clc, image, zone, input) };
}

/** An EBS-backed image's root volume for this launch: the image's mapping, with what the request overrides. */
function rootVolumeOf(clc: Clc, image: ImageRecord, zone: string, input: RunInstancesInput): RootVolumeSpec | undefined {
  if (!image.rootVolume) return undefined;
  if (!clc.storage?.controllers.get(zone)) throw new Ec2Error('InvalidParameterValue', `The availability zone ${zone} has no storage controller to make the root volume of ${image.imageId} from.`);
  const ebs = input.BlockDeviceMapping.find((m) => m.DeviceName === image.rootDeviceName)?.Ebs;
  const size = ebs?.VolumeSize ?? image.rootVolume.volumeSize;
  if (size < image.rootVolume.volumeSize) {
    throw new Ec2Error('InvalidBlockDeviceMapping', `Volume of size ${size}GiB is smaller than snapshot '${image.rootVolume.snapshotId}', expect size >= ${image.rootVolume.volumeSize}GiB`);
  }
  return { ...image.rootVolume, volumeSize: size, deleteOnTermination: ebs?.DeleteOnTermination ?? image.rootVolume.deleteOnTermination };
}

/** The network (bridge, gateway, DHCP) is up before the guest asks for its address: before a launch or a start. */
export async function startNetworkFor(clc: Clc, zone: string, vlan: number | null, log: ActionContext['log']): Promise<void> {
  if (!clc.network || vlan === null) return;
  await clc.network.startNetwork(zone, vlan).catch((err: unknown) => log.warn({ err, zone, vlan }, 'StartNetwork failed; the network sync retries it'));
}

export async function runInstances(clc: Clc, input: RunInstancesInput, ctx: Pick<ActionContext, 'principal' | 'requestId' | 'log'>): Promise<Record<string, unknown>> {
  const { db } = clc;
  const { principal } = ctx;
  if (input.ClientToken) {
    if (input.ClientToken.length > 64) throw errors.invalidValue('ClientToken', input.ClientToken, 'ClientToken is limited to 64 characters.');
    const earlier = reservationByClientToken(db, principal.accountId, input.ClientToken);
    if (earlier) return reservationResponse(db, earlier);
  }
  const launch = prepareLaunch(clc, principal, input);
  const { counts, image, type, keyPair, zone } = launch;

  const now = new Date().toISOString();
  let rootVolumeIds: string[] = [];
  // The token again, in the transaction that records the launch: another clc on the same PostgreSQL may have
  // recorded it since (serializable: this transaction is then run again and finds it).
  const made = db.transaction((): { earlier: string } | { rows: InstanceRow[] } => {
    const earlier = input.ClientToken ? reservationByClientToken(db, principal.accountId, input.ClientToken) : undefined;
    if (earlier) return { earlier };
    const groups = resolveGroups(db, principal.accountId, { names: input.SecurityGroup, ids: input.SecurityGroupId });
    const [reservationId] = uniqueIds(db, 'r', 1, 'reservations');
    const instanceIds = uniqueIds(db, 'i', counts.max, 'instances');
    const instances: NewInstance[] = instanceIds.map((instanceId, launchIndex) => ({
      instance_id: instanceId, account_id: principal.accountId, reservation_id: reservationId!, launch_index: launchIndex, zone,
      image_id: image.imageId, image_location: image.location, kernel_id: launch.kernelId ?? null, ramdisk_id: launch.ramdiskId ?? null,
      architecture: image.architecture, platform: image.platform ?? null, root_device_type: image.rootDeviceType,
      root_device_name: image.rootDeviceName ?? null, virtualization_type: image.virtualizationType ?? 'paravirtual',
      instance_type: type.name, vm_cpu: type.cpu, vm_memory_mib: type.memoryMiB, vm_disk_gib: type.diskGiB,
      key_name: keyPair?.name ?? null, public_key: keyPair?.publicKey ?? null, user_data: launch.userData ?? null, launch_time: now,
    }));
    insertReservation(db, { reservationId: reservationId!, accountId: principal.accountId, ...(input.ClientToken ? { clientToken: input.ClientToken } : {}), createdAt: now },
      instances, groups.map((g) => ({ groupId: g.groupId, groupName: g.name })));
    if (clc.network) {
      assignLaunchAddresses(db, clc.network.plan, principal.accountId, groups[0]!, instanceIds, { privateOnly: input.AddressingType?.toLowerCase() === 'private' });
    }
    applyTagSpecifications(db, principal.accountId, instanceIds, 'instance', input.TagSpecification);
    if (launch.rootVolume) {
      rootVolumeIds = recordRootVolumes(db, instanceIds.map((instanceId) => ({ instanceId, accountId: principal.accountId, zone })), launch.rootVolume, image.rootDeviceName ?? '/dev/sda1');
    }
    return { rows: instanceRows(db, 'reservation_id = @r', { r: reservationId }) };
  })();
  if ('earlier' in made) return reservationResponse(db, made.earlier);
  const { rows } = made;
  const reservationId = rows[0]!.reservation_id;
  const groupNames = (instanceViews(db, rows.slice(0, 1))[0]?.groups ?? []).map((g) => g.groupName);
  const specs = rows.map((r) => specOf(r, groupNames));

  let placed: Set<string>;
  const discard = (ids: string[]) => {
    if (!ids.length) return;
    // Root volumes made for instances that never were go with them (the storage poller deletes them).
    if (rootVolumeIds.length) db.prepare('UPDATE volume_attachments SET delete_on_termination = 1 WHERE instance_id IN (SELECT value FROM json_each(?))').run(JSON.stringify(ids));
    // Remembered before the rows go: a cc that acted before failing, and is down when told to drop them, may run them
    // later; the cluster poller terminates those (it leaves alone instances the clc never knew).
    const remember = db.prepare('INSERT INTO discarded_launches (instance_id, zone, discarded_at) VALUES (?, ?, ?) ON CONFLICT (instance_id) DO NOTHING');
    const at = new Date().toISOString();
    db.transaction(() => {
      for (const id of ids) remember.run(id, zone, at);
    })();
    deleteInstances(db, ids);
  };
  try {
    if (rootVolumeIds.length) await createRootVolumes(clc.storage!, zone, rootVolumeIds);
  } catch (err) {
    discard(rows.map((r) => r.instance_id));
    throw err;
  }
  try {
    await startNetworkFor(clc, zone, rows[0]!.vlan, ctx.log);
    placed = new Set((await clc.dispatcher.run(zone, specs, counts.min, ctx.requestId)).map((p) => p.instanceId));
  } catch (err) {
    discard(rows.map((r) => r.instance_id));
    if (err instanceof WireError && err.code === 'InsufficientInstanceCapacity') {
      throw new Ec2Error('InsufficientInstanceCapacity', `There is not enough capacity in ${zone} for ${counts.min} ${type.name} instance(s): ${err.message}`);
    }
    // The cc may have acted before failing (a timeout): make sure nothing it started survives.
    clc.clusters.client(zone).call(cc.TerminateInstances, { instanceIds: specs.map((s) => s.instanceId), force: true }).catch(() => {});
    ctx.log.warn({ err, zone, reservationId }, 'launch failed at the cluster; nothing kept');
    throw new Ec2Error('InsufficientInstanceCapacity', `The availability zone ${zone} could not take the request: ${err instanceof Error ? err.message : String(err)}`);
  }
  const unplaced = rows.filter((r) => !placed.has(r.instance_id)).map((r) => r.instance_id);
  discard(unplaced);
  if (placed.size < counts.min) {
    // The cc promises at least minCount; anything less is a broken promise, not a partial launch.
    discard([...placed]);
    clc.clusters.client(zone).call(cc.TerminateInstances, { instanceIds: [...placed], force: true }).catch(() => {});
    throw new Ec2Error('InsufficientInstanceCapacity', `There is not enough capacity in ${zone} for ${counts.min} ${type.name} instance(s).`);
  }
  clc.network?.soon();
  return reservationResponse(db, reservationId);
}

export const runInstancesAction = (clc: Clc) => defineEc2Action('RunInstances', runInstancesShape, (input, ctx) => runInstances(clc, input, ctx));
