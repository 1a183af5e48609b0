// The simulated hypervisor (Nova's `fake` driver): no guests, the same state machine. Guests are rows
// in `<home>/simulated/guests.sqlite`, so they outlive an NC restart as libvirt domains do; states and
// console text are derived from timestamps, so thousands of guests cost a map entry each.
import { join } from 'node:path';
import { openDatabase, type Db, type Migration } from '@mallee/store';
import type { InstanceSpec } from '@mallee/wire';
import { GuestNotFoundError, type CreateHypervisor, type GuestNic, type GuestStatus, type HostCapacity, type Hypervisor } from '../hypervisor.js';
import { SimulatedVolumes } from './simulated-volumes.js';

/** One simulated guest: everything else (state, console) follows from these times. */
interface SimGuest {
  instanceId: string;
  imageId: string;
  typeName: string;
  cores: number;
  memoryMiB: number;
  /** ms since the epoch: the guest was defined and started. */
  createdAt: number;
  /** ms: each reboot request, in order. */
  reboots: number[];
  /** ms: a terminate was requested; the guest vanishes one boot delay later. */
  stoppingAt?: number;
  /** The bridge NIC it would have (MANAGED networking), shown on its console. */
  nic?: GuestNic;
}

export interface SimulatedOptions {
  /** Directory holding the guest store. */
  dir: string;
  /** ms from start (or reboot) until the guest is up; also the shutdown time. */
  bootDelayMs: number;
  capacity: HostCapacity;
  /** ms init() takes (a stand-in for a slow driver start-up), told to onStep. */
  initDelayMs?: number;
  onStep?: (step: string) => void;
}

const migrations: Migration[] = [
  { id: 1, name: 'guests', up: 'CREATE TABLE guests (instance_id TEXT PRIMARY KEY, data TEXT NOT NULL)' },
];

export class SimulatedHypervisor implements Hypervisor {
  readonly name = 'simulated';
  private db: Db | undefined;
  private readonly guests = new Map<string, SimGuest>();
  readonly volumes: SimulatedVolumes;

  constructor(private readonly opts: SimulatedOptions) {
    this.volumes = new SimulatedVolumes(opts.dir, (id) => {
      const g = this.live(id);
      return g !== undefined && g.stoppingAt === undefined;
    });
  }

  async init(): Promise<void> {
    if (this.opts.initDelayMs) {
      this.opts.onStep?.(`simulating a slow start-up (SIM_INIT_DELAY ${this.opts.initDelayMs} ms)`);
      await new Promise((r) => setTimeout(r, this.opts.initDelayMs));
    }
    // NORMAL: a kill -9 of the NC keeps every committed guest; only a power cut could lose the last ones.
    this.db = openDatabase(join(this.opts.dir, 'guests.sqlite'), { migrations, synchronous: 'NORMAL' });
    for (const row of this.db.prepare('SELECT data FROM guests').pluck().all() as string[]) {
      const g = JSON.parse(row) as SimGuest;
      this.guests.set(g.instanceId, g);
    }
  }

  async capacity(): Promise<HostCapacity> {
    return { ...this.opts.capacity };
  }

  async runInstance(spec: InstanceSpec, nic?: GuestNic): Promise<void> {
    if (this.guests.has(spec.instanceId)) return;
    const guest: SimGuest = {
      instanceId: spec.instanceId,
      imageId: spec.imageId,
      typeName: spec.vmType.name,
      cores: spec.vmType.cores,
      memoryMiB: spec.vmType.memoryMiB,
      createdAt: Date.now(),
      reboots: [],
      ...(nic ? { nic } : {}),
    };
    this.save(guest);
    if (spec.ebsVolumes) await this.volumes.bootWith(spec.instanceId, spec.ebsVolumes);
  }

  async terminateInstance(instanceId: string, _opts: { force: boolean }): Promise<void> {
    const g = this.live(instanceId);
    if (!g || g.stoppingAt !== undefined) return;
    g.stoppingAt = Date.now();
    this.save(g);
  }

  async rebootInstance(instanceId: string): Promise<void> {
    const g = this.live(instanceId);
    if (!g || g.stoppingAt !== undefined) throw new GuestNotFoundError(instanceId);
    g.reboots.push(Date.now());
    this.save(g);
  }

  async listGuests(): Promise<GuestStatus[]> {
    const now = Date.now();
    const out: GuestStatus[] = [];
    for (const g of this.guests.values()) {
      const state = this.stateOf(g, now);
      if (state === undefined) this.remove(g.instanceId);
      else out.push({ instanceId: g.instanceId, state, cores: g.cores, memoryMiB: g.memoryMiB });
    }
    return out;
  }

  async consoleOutput(instanceId: string): Promise<Buffer> {
    const g = this.live(instanceId);
    if (!g) throw new GuestNotFoundError(instanceId);
    return Buffer.from(renderConsole(g, this.opts.bootDelayMs, Date.now()));
  }

  async close(): Promise<void> {
    this.volumes.close();
    this.db?.close();
    this.db = undefined;
  }

  /** undefined: the guest has finished shutting down and no longer exists. */
  private stateOf(g: SimGuest, now: number): GuestStatus['state'] | undefined {
    const delay = this.opts.bootDelayMs;
    if (g.stoppingAt !== undefined) return now < g.stoppingAt + delay ? 'shutting-down' : undefined;
    return now < g.createdAt + delay ? 'pending' : 'running';
  }

  private live(instanceId: string): SimGuest | undefined {
    const g = this.guests.get(instanceId);
    if (g && this.stateOf(g, Date.now()) === undefined) {
      this.remove(instanceId);
      return undefined;
    }
    return g;
  }

  private save(g: SimGuest): void {
    this.guests.set(g.instanceId, g);
    this.db?.prepare('INSERT OR REPLACE INTO guests (instance_id, data) VALUES (?, ?)').run(g.instanceId, JSON.stringify(g));
  }

  private remove(instanceId: string): void {
    this.guests.delete(instanceId);
    this.db?.prepare('DELETE FROM guests WHERE instance_id = ?').run(instanceId);
  }
}

/** A plausible serial console: kernel lines at each (re)start, the boot-done marker once booted. */
export function renderConsole(g: SimGuest, bootDelayMs: number, now: number): string {
  const stamp = (t: number) => `[${((t - g.createdAt) / 1000).toFixed(6).padStart(12)}]`;
  const lines: string[] = [];
  const starts = [g.createdAt, ...g.reboots].filter((t) => t <= now);
  starts.forEach((start, i) => {
    if (i > 0) lines.push(`${stamp(start)} mallee: reboot requested ${g.instanceId}`, `${stamp(start)} reboot: Restarting system`);
    lines.push(
      `${stamp(start)} Linux version 6.1.0-mallee-simulated (mallee simulated hypervisor)`,
      `${stamp(start)} Command line: root=/dev/sda1 console=ttyS0 instance-id=${g.instanceId}`,
      `${stamp(start)} Memory: ${g.memoryMiB * 1024}K, ${g.cores} CPU(s), image ${g.imageId}, type ${g.typeName}`,
      ...(g.nic ? [`${stamp(start)} eth0: ${g.nic.mac} on bridge ${g.nic.bridge} (tap ${g.nic.tap})`] : []),
    );
    // A boot interrupted by the next reboot or the shutdown never prints its marker.
    const done = start + bootDelayMs;
    const cut = Math.min(starts[i + 1] ?? Infinity, g.stoppingAt ?? Infinity);
    if (done <= now && done <= cut) lines.push(`${stamp(done)} mallee: boot done ${g.instanceId}`);
  });
  if (g.stoppingAt !== undefined && g.stoppingAt <= now) {
    lines.push(`${stamp(g.stoppingAt)} mallee: shutting down ${g.instanceId}`, `${stamp(g.stoppingAt)} reboot: Power down`);
  }
  return lines.join('\r\n') + '\r\n';
}

export const createHypervisor: CreateHypervisor = ({ config, home, onStep }) =>
  new SimulatedHypervisor({
    dir: join(home, 'simulated'),
    bootDelayMs: config.SIM_BOOT_DELAY,
    initDelayMs: config.SIM_INIT_DELAY,
    ...(onStep ? { onStep } : {}),
    capacity: { cores: config.SIM_CORES, memoryMiB: config.SIM_MEM, diskGiB: config.SIM_DISK },
  });
