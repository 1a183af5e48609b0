// Shapes shared by several operation sets.
import { z } from 'zod';

export const instanceStateName = z.enum(['pending', 'running', 'shutting-down', 'terminated', 'stopping', 'stopped']);
export type InstanceStateName = z.infer<typeof instanceStateName>;

/** An instance type's resources as the clc defines it (admin-editable, e.g. m1.small = 256 MiB). */
export const vmType = z.object({
  name: z.string(),
  cores: z.number().int().positive(),
  memoryMiB: z.number().int().positive(),
  diskGiB: z.number().int().nonnegative(),
});
export type VmType = z.infer<typeof vmType>;

/** Where a node fetches one image of a launch: a short-lived URL, and what it must find there. */
export const imageSource = z.object({
  url: z.string(),
  /** SHA-256 hex and size in bytes of the (decrypted) image, as Walrus verified it at registration. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});
export type ImageSource = z.infer<typeof imageSource>;

/** Everything a node needs to launch one instance. */
export const instanceSpec = z.object({
  instanceId: z.string(),
  reservationId: z.string(),
  ownerId: z.string(),
  launchIndex: z.number().int().nonnegative(),
  imageId: z.string(),
  /** Where the NC fetches the machine image (Walrus manifest / cache URL); empty until images live in Walrus. */
  imageLocation: z.string().default(''),
  kernelId: z.string().optional(),
  ramdiskId: z.string().optional(),
  vmType,
  keyName: z.string().optional(),
  /** OpenSSH public key line of the key pair, handed to the guest. */
  publicKey: z.string().optional(),
  /** Base64 user data, as EC2 carries it. */
  userData: z.string().optional(),
  groupNames: z.array(z.string()).default([]),
  macAddress: z.string().optional(),
  privateIp: z.string().optional(),
  platform: z.string().optional(),
  // ---- networking (issue 6): set by the clc (vlan, addresses) and the cc (network) ----
  /** The instance's private network (its first group's): VLAN tag / VXLAN VNI, as Eucalyptus's ncRunInstance vlan. */
  vlan: z.number().int().nonnegative().optional(),
  /** The public address the clc assigned at launch, if any (metadata public-ipv4). */
  publicIp: z.string().optional(),
  /** Availability zone, for the metadata service's placement/availability-zone. */
  zone: z.string().optional(),
  /** How the NC attaches the guest's NIC; absent → user-mode networking (VNET_MODE=USERMODE). */
  network: z
    .object({
      mode: z.enum(['MANAGED', 'MANAGED-NOVLAN', 'SYSTEM']),
      encap: z.enum(['vlan', 'vxlan']),
      /** MANAGED + vxlan: the CC's private address, the far end of the node's tunnel. */
      tunnelRemote: z.string().optional(),
      /**
       * MANAGED-NOVLAN: the instance's own network (e.g. 172.31.0.64/27). Every network shares one segment there, so
       * the node lets the guest send unicast frames only to its own network's instances (and the CC), not to others'.
       */
      cidr: z.string().optional(),
    })
    .optional(),
  /** Presigned Walrus URLs of the images (machine, kernel, ramdisk) registered from bundles; absent for local ones. */
  imageSources: z.object({ machine: imageSource.optional(), kernel: imageSource.optional(), ramdisk: imageSource.optional() }).optional(),
  // ---- boot from EBS (issue 7) ----
  /**
   * EBS-backed instances: the volumes the guest is defined with (root first, then the data volumes it had when
   * stopped), each already exported to the node the clc placed it on; chapSecret sealed per link as in AttachVolume.
   */
  ebsVolumes: z.array(z.lazy(() => bootVolume)).optional(),
  /** The node the instance must run on (the clc exported its volumes to that node's address). */
  node: z.string().optional(),
});
export type InstanceSpec = z.infer<typeof instanceSpec>;

/** What a node reports about one of its guests. */
export const nodeInstance = z.object({
  instanceId: z.string(),
  reservationId: z.string(),
  ownerId: z.string(),
  imageId: z.string(),
  state: instanceStateName,
  vmType,
  launchTime: z.string(),
  privateIp: z.string().optional(),
  publicIp: z.string().optional(),
  macAddress: z.string().optional(),
  /** Why the guest is in its state (e.g. boot failure), for DescribeInstances stateReason. */
  stateReason: z.string().optional(),
  /** EBS volumes attached to the guest, as the hypervisor has them (sc). */
  volumes: z.array(z.lazy(() => attachedVolume)).optional(),
});
export type NodeInstance = z.infer<typeof nodeInstance>;

export const capacity = z.object({ max: z.number().int().nonnegative(), available: z.number().int() });

export const nodeResources = z.object({
  status: z.enum(['enabled', 'disabled']),
  hypervisor: z.string(),
  cores: capacity,
  memoryMiB: capacity,
  diskGiB: capacity,
});
export type NodeResources = z.infer<typeof nodeResources>;

export const empty = z.object({}).passthrough();

// --- volumes (sc) ------------------------------------------------------------------------------

/** A volume attached to a guest, as its node reports it. */
export const attachedVolume = z.object({
  volumeId: z.string(),
  /** The device the user asked for (e.g. /dev/sdf), and the one the hypervisor used (e.g. vdf). */
  device: z.string(),
  guestDevice: z.string(),
});
export type AttachedVolume = z.infer<typeof attachedVolume>;

/**
 * An iSCSI target exporting one volume to one initiator; chapSecret is sealed with the receiving link's key.
 * `kind` came with RBD targets: a sender of the version before it sends none, which reads as iSCSI.
 */
export const iscsiTarget = z.object({
  kind: z.literal('iscsi').default('iscsi'),
  iqn: z.string(),
  portal: z.string(),
  port: z.number().int().positive(),
  lun: z.number().int().nonnegative(),
  chapUser: z.string(),
  chapSecret: z.string(),
});

/**
 * A volume as an RBD image (SC_BACKEND=ceph-rbd): the node's hypervisor opens it itself through librbd
 * (no iSCSI hop) as cephx user `user`; `secret` is that user's key, sealed with the receiving link's key.
 */
export const rbdTarget = z.object({
  kind: z.literal('rbd'),
  pool: z.string().min(1),
  image: z.string().min(1),
  monitors: z.array(z.object({ host: z.string().min(1), port: z.number().int().positive() })).min(1),
  user: z.string().min(1),
  secret: z.string(),
});

/** How a node reaches an exported volume: an iSCSI target, or an RBD image. */
export const volumeTarget = z.union([iscsiTarget, rbdTarget]);
export type VolumeTarget = z.infer<typeof volumeTarget>;

/** The target with its secret (CHAP secret or cephx key) mapped, e.g. opened and sealed again for the next link. */
export function mapTargetSecret<T extends VolumeTarget>(target: T, f: (secret: string) => string): T {
  return target.kind === 'rbd' ? { ...target, secret: f(target.secret) } : { ...target, chapSecret: f((target as { chapSecret: string }).chapSecret) };
}

/** A volume an EBS-backed guest is defined with; `root` boots it (the guest's first disk). */
export const bootVolume = z.object({
  volumeId: z.string(),
  device: z.string(),
  root: z.boolean().default(false),
  target: volumeTarget,
});
export type BootVolume = z.infer<typeof bootVolume>;

/** True for a launch that boots from an EBS volume (may be started again on a node that knew its earlier run). */
export const bootsFromVolume = (spec: { ebsVolumes?: { root: boolean }[] | undefined }): boolean => spec.ebsVolumes?.some((v) => v.root) ?? false;
