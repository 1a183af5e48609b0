// The one interface the Node Controller drives guests through (like Nova's ComputeDriver): the
// `simulated` and `libvirt` drivers implement it and the NC's logic never knows which it has.
import type { InstanceSpec, InstanceStateName } from '@mallee/wire';
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
}

/**
 * Every driver module (`hypervisors/simulated.ts`, `hypervisors/libvirt.ts`) exports a
 * `createHypervisor` of this type; the NC loads the module named by HYPERVISOR and calls it.
 */
export type CreateHypervisor = (ctx: HypervisorContext) => Hypervisor | Promise<Hypervisor>;
