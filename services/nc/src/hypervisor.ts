// The one interface the Node Controller drives guests through (like Nova's ComputeDriver): the
// `simulated` and `libvirt` drivers implement it and the NC's logic never knows which it has.
import type { AttachedVolume, InstanceSpec, InstanceStateName, nc, sc } from '@mallee/wire';
import type { MalleeConfig } from '@mallee/config';
import type { Logger } from 'pino';

/** A guest as the hypervisor sees it right now. */
export interface GuestStatus {
  instanceId: string;
  state: Extract<InstanceStateName, 'pending' | 'running' | 'shutting-down' | 'terminated' | 'stopped'>;
  /** Resources the guest really holds (from the domain definition), for reconciliation. */
  cores: number;
  memoryMiB: number;
  /** Why it is in this state, e.g. a boot failure. */
  reason?: string;
}

/** What the host physically has; the NC applies MAX_CORES / MAX_MEM / MAX_DISK on top. */
export interface HostCapacity {
  cores: number;
  memoryMiB: number;
  diskGiB: number;
}

export interface Hypervisor {
  /** e.g. "simulated", "libvirt/qemu" (TCG), "libvirt/kvm". */
  readonly name: string;
  /** Prepare (probe KVM, connect, create directories). Called once before anything else. */
  init(): Promise<void>;
  capacity(): Promise<HostCapacity>;
  /**
   * Build the instance's disks and start it. Must be idempotent by instanceId: a guest that
   * already exists is left alone. Returns once the guest is defined and starting (not booted).
   * `nic`: see "networking" below; absent → the driver's default (user-mode networking).
   * `spec.ebsVolumes` (EBS-backed instances, CHAP secrets in the clear): the guest is defined with these iSCSI
   * disks, the root one as its first disk and no root overlay (no machine image is fetched).
   */
  runInstance(spec: InstanceSpec, nic?: GuestNic): Promise<void>;
  /** Stop the guest (gracefully, then forced after a grace period or at once with force) and delete its disks. */
  terminateInstance(instanceId: string, opts: { force: boolean }): Promise<void>;
  rebootInstance(instanceId: string): Promise<void>;
  /** Every guest this host runs that Mallee created (found by instance id), including ones adopted after a restart. */
  listGuests(): Promise<GuestStatus[]>;
  /** The serial console output captured so far (the NC returns its last 64 KiB). */
  consoleOutput(instanceId: string): Promise<Buffer>;
  close(): Promise<void>;

  // ---- images (optional: drivers that keep an image cache) ----
  /** Counters of the driver's image cache, for /metrics. */
  imageCacheStats?(): Promise<{ downloads: number; downloadedBytes: number; hits: number; evictions: number; entries: number; bytes: number }>;
  /** EBS volumes (sc); a driver without it cannot attach volumes. */
  readonly volumes?: HypervisorVolumes;
  /** Live migration between nodes (issue 7); a driver without it cannot move running guests. */
  readonly migration?: HypervisorMigration;
}

// --- live migration (issue 7) ----------------------------------------------------------------------

/** Moving a running guest between hosts, as Nova's pre_live_migration / live_migration / post_live_migration. */
export interface HypervisorMigration {
  /**
   * On the destination: the instance's directory built as a launch builds it (overlay on the same cached base
   * image, swap and ephemeral0 empty, kernel and ramdisk) for the source to copy the guest's disks into, and a
   * libvirt secret per volume (CHAP in the clear). Returns how the source must rewrite the domain for this host.
   */
  prepareIncoming(spec: InstanceSpec, volumes: VolumeAttachmentSpec[]): Promise<nc.MigrationDestination>;
  /** On the source: live-migrate the guest (its local disks copied, its network disks reopened on the destination); on success its files here go. */
  migrateOut(instanceId: string, to: { libvirtUri: string; migrateUri: string; destination: nc.MigrationDestination }): Promise<{ console: Buffer }>;
  /** On the destination: the console output the guest wrote on the source, kept before what it writes here. */
  keepEarlierConsole(instanceId: string, earlier: Buffer): Promise<void>;
  /** On the destination: once the migration failed, remove what prepareIncoming made (and a half-arrived domain). */
  abortIncoming(instanceId: string, volumeIds: string[]): Promise<void>;
}

// --- volumes (sc) --------------------------------------------------------------------------------

/** An iSCSI LUN or an RBD image to hot-plug, with its CHAP secret or cephx key in the clear (the NC opened the sealed one). */
export interface VolumeAttachmentSpec {
  volumeId: string;
  /** What the user asked for (/dev/sdf, /dev/vdb); the driver picks a free guest device near it. */
  device: string;
  target: sc.IscsiTarget | sc.RbdTarget;
}

/** What a log line or a node's record names a target by: the IQN and LUN, or rbd:<pool>/<image>. */
export function targetName(t: VolumeAttachmentSpec['target']): string {
  return t.kind === 'rbd' ? `rbd:${t.pool}/${t.image}` : `${t.iqn}/${t.lun}`;
}

/** Network disks in running guests, as Nova's attach_volume/detach_volume, plus holding guest I/O for snapshots. */
export interface HypervisorVolumes {
  /** Hot-plug (live and persistent, so it survives restarts); idempotent by volume id. */
  attachVolume(instanceId: string, spec: VolumeAttachmentSpec): Promise<AttachedVolume>;
  /** Unplug; false when the guest did not let go in time (with force it is dropped from the definition anyway). */
  detachVolume(instanceId: string, volumeId: string, opts: { force: boolean }): Promise<boolean>;
  /** Volumes attached to each of this host's guests, read from the hypervisor itself. */
  listVolumes(): Promise<Map<string, AttachedVolume[]>>;
  /** Freeze the guest's filesystems (guest agent) or pause it; thawed by unfreeze or after timeoutMs. */
  freeze(instanceId: string, timeoutMs: number): Promise<sc.SnapshotConsistency>;
  unfreeze(instanceId: string): Promise<void>;
}

// ---- networking (issue 6) ----------------------------------------------------------------------

/**
 * The guest's NIC on a host bridge (MANAGED, MANAGED-NOVLAN, SYSTEM). The NC has the bridge up and
 * the tap's anti-spoofing rules in place before it hands this to `runInstance`.
 */
export interface GuestNic {
  bridge: string;
  mac: string;
  /** Name of the tap device the driver creates, so the node's ebtables rules can name it. */
  tap: string;
  /** MTU for the guest (VXLAN networks: 1450). */
  mtu?: number;
}

/** A guest the driver does not have (never created, or already gone). */
export class GuestNotFoundError extends Error {
  constructor(public readonly instanceId: string) {
    super(`no guest for instance ${instanceId} on this hypervisor`);
    this.name = 'GuestNotFoundError';
  }
}

/** What a driver is built from: the host's configuration, the NC's home and a logger. */
export interface HypervisorContext {
  config: MalleeConfig;
  /** The NC's MALLEE_HOME; a driver keeps its own files under it (e.g. `<home>/simulated/`). */
  home: string;
  log: Logger;
  /** Told what a slow init() is doing now (the NC shows it as its start-up state); optional for drivers. */
  onStep?: (step: string) => void;
}

/**
 * Every driver module (`hypervisors/simulated.ts`, `hypervisors/libvirt.ts`) exports a
 * `createHypervisor` of this type; the NC loads the module named by HYPERVISOR and calls it.
 */
export type CreateHypervisor = (ctx: HypervisorContext) => Hypervisor | Promise<Hypervisor>;
