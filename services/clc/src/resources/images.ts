// Machine, kernel and ramdisk images (EMI/EKI/ERI) and who may see and launch them: the owner, anyone
// when public, and accounts granted a launch permission. Registration has the bundle's manifest checked
// (by Walrus, through the ImageHooks the clc gives this module) and takes the image's type,
// architecture and kernel/ramdisk from it.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { Ec2Error, errors, q, type Principal } from '@mallee/aws-protocol';
import { applyFilters } from './filters.js';
import { IMAGE_ID, imagePrefixFor, malformedImageId, newId } from './ids.js';
import { list, optInt, resourceAction, type ManifestCheck, type ResourceHooks } from './params.js';
import { adminAccountIds } from './usage.js';
import { applyTagSpecifications, deleteTagsFor, tagSetsFor, tagSetXml, tagSpecificationsShape } from './tags.js';

export interface ImageRecord {
  imageId: string; ownerId: string; name: string; location: string;
  type: 'machine' | 'kernel' | 'ramdisk'; architecture: string; state: 'available' | 'pending' | 'failed' | 'deregistered';
  isPublic: boolean; kernelId?: string; ramdiskId?: string; platform?: string;
  rootDeviceType: 'instance-store' | 'ebs'; rootDeviceName?: string; description?: string;
  /** 'paravirtual' (boots the image's kernel/ramdisk) or 'hvm'. */
  virtualizationType?: string;
  /** EBS-backed images: the snapshot each instance's root volume is made from (the mapping at rootDeviceName). */
  rootVolume?: { snapshotId: string; volumeSize: number; deleteOnTermination: boolean };
}

export type ImageType = ImageRecord['type'];

interface ImageRow {
  image_id: string; owner_id: string; name: string; description: string | null; location: string;
  image_type: ImageType; architecture: string; state: ImageRecord['state']; is_public: number;
  kernel_id: string | null; ramdisk_id: string | null; platform: string | null;
  root_device_type: ImageRecord['rootDeviceType']; root_device_name: string | null;
  virtualization_type: string; block_device_mappings: string; created_at: string;
}

const toRecord = (r: ImageRow): ImageRecord => ({
  imageId: r.image_id, ownerId: r.owner_id, name: r.name, location: r.location, type: r.image_type,
  architecture: r.architecture, state: r.state, isPublic: r.is_public === 1,
  kernelId: r.kernel_id ?? undefined, ramdiskId: r.ramdisk_id ?? undefined, platform: r.platform ?? undefined,
  rootDeviceType: r.root_device_type, rootDeviceName: r.root_device_name ?? undefined, description: r.description ?? undefined,
  virtualizationType: r.virtualization_type,
  ...(r.root_device_type === 'ebs' ? { rootVolume: rootVolumeOf(r) } : {}),
});

function rootVolumeOf(r: ImageRow): NonNullable<ImageRecord['rootVolume']> {
  const mappings = JSON.parse(r.block_device_mappings) as { deviceName?: string; ebs?: { snapshotId?: string; volumeSize?: number; deleteOnTermination?: boolean } }[];
  const ebs = mappings.find((m) => m.deviceName === r.root_device_name)?.ebs;
  return { snapshotId: ebs?.snapshotId ?? '', volumeSize: ebs?.volumeSize ?? 1, deleteOnTermination: ebs?.deleteOnTermination ?? true };
}

export const imageNotFound = (id: string) => new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
const notAuthorized = (id: string) => new Ec2Error('AuthFailure', `Not authorized for image:${id}`);

/** Images the account may see: its own, public ones and those it holds a launch permission for. */
const VISIBLE = `(i.owner_id = @account OR i.is_public = 1 OR EXISTS
  (SELECT 1 FROM image_launch_permissions p WHERE p.image_id = i.image_id AND p.account_id = @account))`;

function imageRow(db: Db, imageId: string): ImageRow | undefined {
  return db.prepare('SELECT * FROM images WHERE image_id = ?').get(imageId) as ImageRow | undefined;
}

function visibleRow(db: Db, accountId: string, imageId: string): ImageRow | undefined {
  return db.prepare(`SELECT * FROM images i WHERE i.image_id = @id AND ${VISIBLE}`).get({ id: imageId, account: accountId }) as ImageRow | undefined;
}

/** A visible image by id: InvalidAMIID.Malformed / .NotFound otherwise. */
export function findVisibleImage(db: Db, principal: Principal, imageId: string): ImageRecord {
  if (!IMAGE_ID.test(imageId)) throw malformedImageId(imageId);
  const row = visibleRow(db, principal.accountId, imageId);
  if (!row) throw imageNotFound(imageId);
  return toRecord(row);
}

/** An image the principal may launch (own, public or launch permission): InvalidAMIID.Malformed / .NotFound otherwise. */
export function findLaunchableImage(db: Db, principal: Principal, imageId: string): ImageRecord {
  const image = findVisibleImage(db, principal, imageId);
  if (image.state !== 'available') throw new Ec2Error('InvalidAMIID.Unavailable', `The image id '[${imageId}]' is no longer available`);
  if (image.type !== 'machine') throw errors.invalidValue('ImageId', imageId, `The image is a ${image.type} image and cannot be run as an instance.`);
  return image;
}

/**
 * Kernel/ramdisk lookup for RunInstances and RegisterImage: InvalidAMIID.Malformed / .NotFound, or
 * InvalidParameterValue for the wrong type. Besides the kernels and ramdisks it may see, an account
 * may use those of the machine images it may launch (a shared image brings its private kernel along).
 */
export function findLaunchableKernelOrRamdisk(db: Db, principal: Principal, id: string, type: 'kernel' | 'ramdisk'): ImageRecord {
  if (!IMAGE_ID.test(id)) throw malformedImageId(id);
  const row = visibleRow(db, principal.accountId, id) ?? db.prepare(`SELECT * FROM images WHERE image_id = @id AND EXISTS
      (SELECT 1 FROM images i WHERE (i.kernel_id = @id OR i.ramdisk_id = @id) AND ${VISIBLE})`)
    .get({ id, account: principal.accountId }) as ImageRow | undefined;
  if (!row) throw imageNotFound(id);
  const image = toRecord(row);
  if (image.type !== type) throw errors.invalidValue(type === 'kernel' ? 'kernelId' : 'ramdiskId', id, `The image is not a ${type} image.`);
  if (image.state !== 'available') throw new Ec2Error('InvalidAMIID.Unavailable', `The image id '[${id}]' is no longer available`);
  return image;
}

/** The image's owner (or a cloud administrator) may change it; others who can see it are refused. */
function ownedImage(db: Db, principal: Principal, imageId: string): ImageRow {
  const image = findVisibleImage(db, principal, imageId);
  if (image.ownerId !== principal.accountId && !principal.isAdmin) throw notAuthorized(imageId);
  return imageRow(db, imageId)!;
}

// ---- registration -------------------------------------------------------------------------------

const MANIFEST = /^[^/]+\/(.+\/)?[^/]+\.manifest\.xml$/;
const AMI_NAME = /^[A-Za-z0-9()[\] ./\-'@_]{3,128}$/;
const ARCHITECTURES = ['i386', 'x86_64'];
const VIRTUALIZATION_TYPES = ['paravirtual', 'hvm'];

const blockDeviceShape = z.object({
  DeviceName: z.string().optional(),
  VirtualName: z.string().optional(),
  NoDevice: z.string().optional(),
  Ebs: z.object({
    SnapshotId: z.string().optional(),
    VolumeSize: optInt(),
    DeleteOnTermination: q.bool().optional(),
    VolumeType: z.string().optional(),
    Iops: optInt(),
    Encrypted: q.bool().optional(),
  }).optional(),
});
type BlockDeviceRequest = z.infer<typeof blockDeviceShape>;

const registerShape = z.object({
  ImageLocation: z.string().optional(),
  Name: z.string().optional(),
  Description: z.string().optional(),
  Architecture: z.string().optional(),
  KernelId: z.string().optional(),
  RamdiskId: z.string().optional(),
  RootDeviceName: z.string().optional(),
  BlockDeviceMapping: list(blockDeviceShape),
  VirtualizationType: z.string().optional(),
  Platform: z.string().optional(),
  TagSpecification: tagSpecificationsShape,
});

function blockDeviceXml(m: BlockDeviceRequest): Record<string, unknown> {
  return {
    deviceName: m.DeviceName,
    virtualName: m.VirtualName,
    noDevice: m.NoDevice !== undefined ? '' : undefined,
    ebs: m.Ebs && {
      snapshotId: m.Ebs.SnapshotId, volumeSize: m.Ebs.VolumeSize, deleteOnTermination: m.Ebs.DeleteOnTermination ?? true,
      volumeType: m.Ebs.VolumeType, iops: m.Ebs.Iops, encrypted: m.Ebs.Encrypted,
    },
  };
}

type RegisterInput = z.infer<typeof registerShape>;

function checkNameAndDescription(input: RegisterInput): void {
  if (input.Description !== undefined && input.Description.length > 255) throw errors.invalidValue('description', input.Description, 'Length exceeds maximum of 255.');
  if (input.Architecture !== undefined && !ARCHITECTURES.includes(input.Architecture)) {
    throw errors.invalidValue('architecture', input.Architecture, `Valid values: ${ARCHITECTURES.join(', ')}.`);
  }
}

/**
 * An EBS-backed image (no ImageLocation): its root is the mapping at RootDeviceName, which must name a snapshot
 * the caller may create volumes from; its location is "<owner>/<name>", as EC2 shows it.
 */
function ebsRootOf(input: RegisterInput, principal: Principal, hooks: ResourceHooks): { location: string; rootDeviceName: string; mappings: BlockDeviceRequest[] } {
  if (input.Name === undefined) throw errors.missing('Name');
  const rootDeviceName = input.RootDeviceName ?? input.BlockDeviceMapping.find((m) => m.Ebs?.SnapshotId)?.DeviceName ?? '/dev/sda1';
  const root = input.BlockDeviceMapping.find((m) => m.DeviceName === rootDeviceName);
  if (!root?.Ebs?.SnapshotId) {
    throw new Ec2Error('InvalidBlockDeviceMapping', `The root device name ${rootDeviceName} must be the device of a block device mapping with an EBS snapshot.`);
  }
  if (!hooks.rootSnapshot) throw new Ec2Error('InvalidBlockDeviceMapping', 'This cloud has no block storage to boot images from.');
  const { volumeSize } = hooks.rootSnapshot(principal, root.Ebs.SnapshotId);
  if (root.Ebs.VolumeSize !== undefined && root.Ebs.VolumeSize < volumeSize) {
    throw new Ec2Error('InvalidBlockDeviceMapping', `Volume of size ${root.Ebs.VolumeSize}GiB is smaller than snapshot '${root.Ebs.SnapshotId}', expect size >= ${volumeSize}GiB`);
  }
  for (const m of input.BlockDeviceMapping) if (m !== root && m.Ebs) throw new Ec2Error('InvalidBlockDeviceMapping', `Only the root device (${rootDeviceName}) may map an EBS volume in this cloud.`);
  const mappings = input.BlockDeviceMapping.map((m) => (m === root ? { ...m, Ebs: { ...m.Ebs!, VolumeSize: m.Ebs!.VolumeSize ?? volumeSize } } : m));
  return { location: `${principal.accountId}/${input.Name}`, rootDeviceName, mappings };
}

export const registerImageAction = resourceAction('RegisterImage', registerShape, async (db, input, { principal }, hooks) => {
  const ebs = input.ImageLocation ? undefined : input.BlockDeviceMapping.some((m) => m.Ebs?.SnapshotId) ? ebsRootOf(input, principal, hooks) : undefined;
  if (!input.ImageLocation && !ebs) throw errors.missing('ImageLocation');
  const location = ebs?.location ?? input.ImageLocation!.replace(/^\/+/, '');
  if (!ebs && !MANIFEST.test(location)) throw errors.invalidValue('ImageLocation', input.ImageLocation!, 'Expected bucket/prefix.manifest.xml.');
  const derivedName = location.slice(location.lastIndexOf('/') + 1).replace(/\.manifest\.xml$/, '');
  const name = input.Name ?? derivedName;
  if (input.Name !== undefined) checkImageNameFree(db, principal.accountId, name);
  checkNameAndDescription(input);
  const slash = location.indexOf('/');
  // What the bundle says it is; the request's Architecture, KernelId and RamdiskId override it, as in EC2.
  const checked: ManifestCheck = ebs ? { imageType: 'machine', architecture: input.Architecture ?? 'x86_64' }
    : await hooks.checkManifest(principal, location.slice(0, slash), location.slice(slash + 1));
  const type = checked.imageType;
  const architecture = input.Architecture ?? checked.architecture;
  if (!ARCHITECTURES.includes(architecture)) throw errors.invalidValue('architecture', architecture, `The manifest's architecture is not one of ${ARCHITECTURES.join(', ')}.`);
  const kernelRef = input.KernelId ?? checked.kernelId;
  const ramdiskRef = input.RamdiskId ?? checked.ramdiskId;
  const kernelId = type === 'machine' && kernelRef ? findLaunchableKernelOrRamdisk(db, principal, kernelRef, 'kernel').imageId : undefined;
  const ramdiskId = type === 'machine' && ramdiskRef ? findLaunchableKernelOrRamdisk(db, principal, ramdiskRef, 'ramdisk').imageId : undefined;
  const virtualizationType = input.VirtualizationType ?? (kernelId ? 'paravirtual' : 'hvm');
  if (!VIRTUALIZATION_TYPES.includes(virtualizationType)) {
    throw errors.invalidValue('virtualizationType', virtualizationType, `Valid values: ${VIRTUALIZATION_TYPES.join(', ')}.`);
  }
  if (input.Platform !== undefined && input.Platform !== 'windows') throw errors.invalidValue('platform', input.Platform, 'Valid values: windows.');
  const imageId = db.transaction(() => {
    const id = recordImage(db, principal, {
      name, description: input.Description, location, type, architecture, kernelId, ramdiskId, platform: input.Platform,
      rootDeviceType: ebs ? 'ebs' : 'instance-store', rootDeviceName: ebs?.rootDeviceName ?? input.RootDeviceName ?? '/dev/sda1',
      virtualizationType, mappings: ebs?.mappings ?? input.BlockDeviceMapping, state: 'available',
    });
    checked.record?.(db, id);
    applyTagSpecifications(db, principal.accountId, [id], 'image', input.TagSpecification);
    return id;
  })();
  return { imageId };
});

/** InvalidAMIName.Duplicate when the account already has an image of this name. */
export function checkImageNameFree(db: Db, accountId: string, name: string): void {
  if (!AMI_NAME.test(name)) {
    throw new Ec2Error('InvalidAMIName.Malformed',
      "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'");
  }
  const same = db.prepare('SELECT image_id FROM images WHERE owner_id = ? AND name = ?').pluck().get(accountId, name) as string | undefined;
  if (same) throw new Ec2Error('InvalidAMIName.Duplicate', `AMI name ${name} is already in use by AMI ${same}`);
}

export interface NewImage {
  name: string; description?: string | undefined; location: string; type: ImageType; architecture: string;
  kernelId?: string | undefined; ramdiskId?: string | undefined; platform?: string | undefined;
  rootDeviceType: ImageRecord['rootDeviceType']; rootDeviceName: string; virtualizationType: string;
  mappings: BlockDeviceRequest[]; state: 'available' | 'pending';
}

/** Records an image of the principal's account (RegisterImage, CreateImage); returns its id. Call inside a transaction. */
export function recordImage(db: Db, principal: Principal, i: NewImage): string {
  const imageId = newId(imagePrefixFor[i.type]);
  const same = db.prepare('SELECT image_id FROM images WHERE owner_id = ? AND name = ?').pluck().get(principal.accountId, i.name) as string | undefined;
  if (same) throw new Ec2Error('InvalidAMIName.Duplicate', `AMI name ${i.name} is already in use by AMI ${same}`);
  db.prepare(`INSERT INTO images (image_id, owner_id, name, description, location, image_type, architecture, state, is_public,
      kernel_id, ramdisk_id, platform, root_device_type, root_device_name, virtualization_type, block_device_mappings, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
    imageId, principal.accountId, i.name, i.description ?? null, i.location, i.type, i.architecture, i.state,
    i.kernelId ?? null, i.ramdiskId ?? null, i.platform ?? null, i.rootDeviceType, i.rootDeviceName,
    i.virtualizationType, JSON.stringify(i.mappings.map(blockDeviceXml)), new Date().toISOString());
  return imageId;
}

/** EBS-backed images made by CreateImage become available (or failed) with their root snapshot. */
export function settlePendingImages(db: Db, snapshotStatus: (snapshotId: string) => string | undefined): void {
  const rows = db.prepare("SELECT * FROM images WHERE state = 'pending' AND root_device_type = 'ebs'").all() as ImageRow[];
  for (const r of rows) {
    const status = snapshotStatus(rootVolumeOf(r).snapshotId);
    if (status === 'completed') db.prepare("UPDATE images SET state = 'available' WHERE image_id = ? AND state = 'pending'").run(r.image_id);
    else if (status === 'error' || status === undefined) db.prepare("UPDATE images SET state = 'failed' WHERE image_id = ? AND state = 'pending'").run(r.image_id);
  }
}

export const deregisterImageAction = resourceAction('DeregisterImage', z.object({ ImageId: z.string().optional() }),
  (db, input, { principal }, hooks) => {
    if (!input.ImageId) throw errors.missing('ImageId');
    const imageId = input.ImageId;
    const image = db.transaction(() => {
      const row = ownedImage(db, principal, imageId);
      db.prepare('DELETE FROM images WHERE image_id = ?').run(imageId);
      deleteTagsFor(db, imageId);
      return toRecord(row);
    })();
    hooks.deregistered?.(image);
    return { return: true };
  });

// ---- DescribeImages -----------------------------------------------------------------------------

const launchPermissionsOf = (db: Db, imageId: string) =>
  db.prepare('SELECT account_id FROM image_launch_permissions WHERE image_id = ? ORDER BY account_id').pluck().all(imageId) as string[];

/** Launch permissions of many images in one query: imageId → account ids. */
function launchPermissionsOfAll(db: Db, imageIds: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>(imageIds.map((id) => [id, []]));
  const rows = db.prepare(`SELECT image_id AS imageId, account_id AS accountId FROM image_launch_permissions
    WHERE image_id IN (SELECT value FROM json_each(?))`).all(JSON.stringify(imageIds)) as { imageId: string; accountId: string }[];
  for (const r of rows) out.get(r.imageId)?.push(r.accountId);
  return out;
}

export const describeImagesAction = resourceAction('DescribeImages',
  z.object({ ImageId: list(z.string()), Owner: list(z.string()), ExecutableBy: list(z.string()), Filter: q.filters() }),
  (db, input, { principal }) => {
    const me = principal.accountId;
    for (const id of input.ImageId) if (!IMAGE_ID.test(id)) throw malformedImageId(id);
    let rows = db.prepare(`SELECT * FROM images i WHERE ${VISIBLE} ORDER BY i.image_id`).all({ account: me }) as ImageRow[];
    if (input.ImageId.length) {
      const missing = input.ImageId.find((id) => !rows.some((r) => r.image_id === id));
      if (missing !== undefined) throw imageNotFound(missing);
      rows = rows.filter((r) => input.ImageId.includes(r.image_id));
    }
    if (input.Owner.length) {
      const owners = new Set(input.Owner.flatMap((o) => (o === 'self' ? [me] : o === 'amazon' ? adminAccountIds(db) : [o])));
      rows = rows.filter((r) => owners.has(r.owner_id));
    }
    const permitted = launchPermissionsOfAll(db, rows.map((r) => r.image_id));
    if (input.ExecutableBy.length) {
      const by = input.ExecutableBy.map((e) => (e === 'self' ? me : e));
      rows = rows.filter((r) => by.some((e) => (e === 'all' ? r.is_public === 1 : r.owner_id === e || permitted.get(r.image_id)!.includes(e))));
    }
    const tags = tagSetsFor(db, me, rows.map((r) => r.image_id));
    const bdm = (r: ImageRow) => JSON.parse(r.block_device_mappings) as { deviceName?: string }[];
    const kept = applyFilters(rows, input.Filter, {
      'image-id': (r) => r.image_id,
      'image-type': (r) => r.image_type,
      name: (r) => r.name,
      description: (r) => r.description,
      'owner-id': (r) => r.owner_id,
      state: (r) => r.state,
      architecture: (r) => r.architecture,
      'is-public': (r) => r.is_public === 1,
      'kernel-id': (r) => r.kernel_id,
      'ramdisk-id': (r) => r.ramdisk_id,
      'root-device-type': (r) => r.root_device_type,
      'root-device-name': (r) => r.root_device_name,
      'virtualization-type': (r) => r.virtualization_type,
      'manifest-location': (r) => r.location,
      platform: (r) => r.platform,
      'block-device-mapping.device-name': (r) => bdm(r).map((m) => m.deviceName),
    }, (r) => tags.get(r.image_id) ?? []);
    return {
      imagesSet: kept.map((r) => ({
        imageId: r.image_id,
        imageLocation: r.location,
        imageState: r.state,
        imageOwnerId: r.owner_id,
        creationDate: new Date(r.created_at),
        isPublic: r.is_public === 1,
        architecture: r.architecture,
        imageType: r.image_type,
        kernelId: r.kernel_id ?? undefined,
        ramdiskId: r.ramdisk_id ?? undefined,
        platform: r.platform ?? undefined,
        name: r.name,
        description: r.description ?? undefined,
        rootDeviceType: r.root_device_type,
        rootDeviceName: r.root_device_name ?? undefined,
        blockDeviceMapping: bdm(r),
        virtualizationType: r.virtualization_type,
        tagSet: tagSetXml(tags.get(r.image_id) ?? []),
      })),
    };
  });

// ---- attributes ---------------------------------------------------------------------------------

const unknownAttribute = (a: string) => new Ec2Error('InvalidParameterValue', `Value (${a}) for parameter attribute is invalid. Unknown attribute.`);

export const describeImageAttributeAction = resourceAction('DescribeImageAttribute',
  z.object({ ImageId: z.string().optional(), Attribute: z.string().optional() }),
  (db, input, { principal }) => {
    if (!input.ImageId) throw errors.missing('ImageId');
    if (!input.Attribute) throw errors.missing('Attribute');
    // Anyone who sees the image may read its attributes, except who else may launch it.
    const r = input.Attribute === 'launchPermission' ? ownedImage(db, principal, input.ImageId)
      : imageRow(db, findVisibleImage(db, principal, input.ImageId).imageId)!;
    const value = (v: string | null) => (v === null ? {} : { value: v });
    switch (input.Attribute) {
      case 'launchPermission':
        return {
          imageId: r.image_id,
          launchPermission: [...(r.is_public ? [{ group: 'all' }] : []), ...launchPermissionsOf(db, r.image_id).map((userId) => ({ userId }))],
        };
      case 'description': return { imageId: r.image_id, description: value(r.description) };
      case 'kernel': return { imageId: r.image_id, kernel: value(r.kernel_id) };
      case 'ramdisk': return { imageId: r.image_id, ramdisk: value(r.ramdisk_id) };
      case 'productCodes': return { imageId: r.image_id, productCodes: [] };
      case 'blockDeviceMapping': return { imageId: r.image_id, blockDeviceMapping: JSON.parse(r.block_device_mappings) as unknown[] };
      default: throw unknownAttribute(input.Attribute);
    }
  });

const permissionShape = z.object({ UserId: z.string().optional(), Group: z.string().optional() });

const modifyShape = z.object({
  ImageId: z.string().optional(),
  Attribute: z.string().optional(),
  OperationType: z.string().optional(),
  UserId: list(z.string()),
  UserGroup: list(z.string()),
  ProductCode: list(z.string()),
  LaunchPermission: z.object({ Add: list(permissionShape), Remove: list(permissionShape) }).optional(),
  // `Description.Value=…` (current API) or `Attribute=description&Value=…` (older clients).
  Description: z.union([z.string(), z.object({ Value: z.string().optional() })]).optional(),
  Value: z.string().optional(),
});
type Permission = z.infer<typeof permissionShape>;

function applyLaunchPermissions(db: Db, imageId: string, add: Permission[], remove: Permission[]): void {
  const check = (p: Permission) => {
    if (p.Group !== undefined && p.Group !== 'all') {
      throw new Ec2Error('InvalidAMIAttributeItemValue', `Invalid attribute item value "${p.Group}" for group item type.`);
    }
    if (p.Group === undefined && !p.UserId) throw new Ec2Error('InvalidAMIAttributeItemValue', 'Invalid attribute item value "" for userId item type.');
  };
  [...add, ...remove].forEach(check);
  const grant = db.prepare('INSERT INTO image_launch_permissions (image_id, account_id) VALUES (?, ?) ON CONFLICT DO NOTHING');
  const revoke = db.prepare('DELETE FROM image_launch_permissions WHERE image_id = ? AND account_id = ?');
  const setPublic = db.prepare('UPDATE images SET is_public = ? WHERE image_id = ?');
  for (const p of add) {
    if (p.Group === 'all') setPublic.run(1, imageId);
    else grant.run(imageId, p.UserId);
  }
  for (const p of remove) {
    if (p.Group === 'all') setPublic.run(0, imageId);
    else revoke.run(imageId, p.UserId);
  }
}

export const modifyImageAttributeAction = resourceAction('ModifyImageAttribute', modifyShape, (db, input, { principal }) => {
  if (!input.ImageId) throw errors.missing('ImageId');
  const imageId = input.ImageId;
  if (input.ProductCode.length || input.Attribute === 'productCodes') {
    throw errors.invalidValue('attribute', 'productCodes', 'Product codes are not supported.');
  }
  if (input.Attribute === 'kernel' || input.Attribute === 'ramdisk') {
    throw errors.invalidValue('attribute', input.Attribute, 'The kernel and ramdisk of an image cannot be modified.');
  }
  if (input.Attribute !== undefined && !['launchPermission', 'description'].includes(input.Attribute)) throw unknownAttribute(input.Attribute);
  const description = typeof input.Description === 'string' ? input.Description
    : input.Description?.Value ?? (input.Attribute === 'description' ? input.Value : undefined);
  const flat: Permission[] = [...input.UserId.map((UserId) => ({ UserId })), ...input.UserGroup.map((Group) => ({ Group }))];
  let add = input.LaunchPermission?.Add ?? [];
  let remove = input.LaunchPermission?.Remove ?? [];
  if (flat.length || (input.Attribute === 'launchPermission' && !input.LaunchPermission)) {
    if (input.OperationType === 'add') add = add.concat(flat);
    else if (input.OperationType === 'remove') remove = remove.concat(flat);
    else if (input.OperationType === undefined) throw errors.missing('OperationType');
    else throw errors.invalidValue('operationType', input.OperationType, 'Valid values: add, remove.');
  }
  if (description === undefined && !add.length && !remove.length) throw errors.missing('LaunchPermission or Description');
  if (description !== undefined && description.length > 255) throw errors.invalidValue('description', description, 'Length exceeds maximum of 255.');
  db.transaction(() => {
    ownedImage(db, principal, imageId);
    if (description !== undefined) db.prepare('UPDATE images SET description = ? WHERE image_id = ?').run(description, imageId);
    applyLaunchPermissions(db, imageId, add, remove);
  })();
  return { return: true };
});

export const resetImageAttributeAction = resourceAction('ResetImageAttribute',
  z.object({ ImageId: z.string().optional(), Attribute: z.string().optional() }),
  (db, input, { principal }) => {
    if (!input.ImageId) throw errors.missing('ImageId');
    if (!input.Attribute) throw errors.missing('Attribute');
    const imageId = input.ImageId;
    if (input.Attribute !== 'launchPermission') {
      throw errors.invalidValue('attribute', input.Attribute, 'Only the launchPermission attribute can be reset.');
    }
    db.transaction(() => {
      ownedImage(db, principal, imageId);
      db.prepare('DELETE FROM image_launch_permissions WHERE image_id = ?').run(imageId);
      db.prepare('UPDATE images SET is_public = 0 WHERE image_id = ?').run(imageId);
    })();
    return { return: true };
  });

export const imageActions = [
  registerImageAction, deregisterImageAction, describeImagesAction,
  describeImageAttributeAction, modifyImageAttributeAction, resetImageAttributeAction,
];
