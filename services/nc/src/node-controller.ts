// The Node Controller's logic, above whichever Hypervisor it drives (Eucalyptus node/handlers.c):
// capacity accounting with MAX_CORES/MAX_MEM/MAX_DISK, launch records, reconciliation with the guests
// the hypervisor really has, and the terminated-then-forgotten lifecycle the cc polls.
import type { Logger } from 'pino';
import { bootsFromVolume, mapTargetSecret, WireError, type AttachedVolume, type InstanceSpec, type InstanceStateName, type nc, type NodeInstance, type NodeResources, type sc, type VmType } from '@mallee/wire';
import { GuestNotFoundError, type GuestStatus, type HostCapacity, type Hypervisor, type HypervisorVolumes, type VolumeAttachmentSpec } from './hypervisor.js';
import type { LaunchRecord, LaunchRecords } from './launch-records.js';
import type { HostNetwork } from './net/host-network.js';

/** The NC's limits from mallee.conf (0 = not set). */
export interface NodeLimits {
  /** Eucalyptus semantics: when set, the number of cores the NC offers, replacing the host's count (over- or under-commit). */
  maxCores: number;
  /** MiB; caps the host's memory (never raises it). */
  maxMemMiB: number;
  /** GiB; caps the host's disk (never raises it). */
  maxDiskGiB: number;
}

export interface NodeControllerOptions {
  hypervisor: Hypervisor;
  records: LaunchRecords;
  limits: NodeLimits;
  log: Logger;
  /** How long a terminated instance is still reported before it is forgotten (Eucalyptus: 60 s). */
  terminatedRetentionMs: number;
  /** How often the NC looks at its guests on its own (Eucalyptus monitoring thread: 5 s). */
  monitorIntervalMs: number;
  /** How long ncRunInstance waits for the driver before answering "pending" and letting the launch go on (default 2 s). */
  launchWaitMs?: number;
  /** MANAGED networking on this host (bridges, anti-spoofing); absent with the simulated driver. */
  network?: HostNetwork;
  /** Opens a CHAP secret sealed with this node's key (an EBS-backed launch's volumes); kept sealed in the launch record. */
  openSecret?: (sealed: string) => string;
}

export const CONSOLE_TAIL_BYTES = 64 * 1024;

/** One instance as the NC tracks it. `spec` is missing for a guest found on the host without a launch record. */
interface Tracked {
  instanceId: string;
  spec?: InstanceSpec;
  guest?: Pick<GuestStatus, 'cores' | 'memoryMiB'>;
  state: InstanceStateName;
  stateReason?: string;
  launchTime: string;
  terminatedAt?: number;
  /** The hypervisor's runInstance has not returned yet: absence from a guest listing means nothing. */
  launching: boolean;
  /** ms of the NC's last own change; guest listings started before it are stale for this instance. */
  touchedAt: number;
  /** A terminate was asked for: a guest still up is shutting down, not running again. */
  terminating?: boolean;
}

export function effectiveCapacity(host: HostCapacity, limits: NodeLimits): HostCapacity {
  return {
    cores: limits.maxCores > 0 ? limits.maxCores : host.cores,
    memoryMiB: limits.maxMemMiB > 0 && limits.maxMemMiB < host.memoryMiB ? limits.maxMemMiB : host.memoryMiB,
    diskGiB: limits.maxDiskGiB > 0 && limits.maxDiskGiB < host.diskGiB ? limits.maxDiskGiB : host.diskGiB,
  };
}

export class NodeController {
  private readonly instances = new Map<string, Tracked>();
  private refreshing: Promise<void> | undefined;
  private monitor: NodeJS.Timeout | undefined;
  private readonly background = new Set<Promise<unknown>>();
  /** Volumes attached to each guest, as the hypervisor last listed them (sc). */
  private attached = new Map<string, AttachedVolume[]>();
  /** Incoming migrations between prepare and finish: their resources are held, they are not reported yet. */
  private readonly incoming = new Map<string, { spec: InstanceSpec; launchTime: string; volumeIds: string[] }>();

  constructor(private readonly o: NodeControllerOptions) {}

  get hypervisorName(): string {
    return this.o.hypervisor.name;
  }

  /** Reconcile launch records with the hypervisor's guests, then keep watching them. */
  async start(): Promise<void> {
    await this.reconcile();
    this.monitor = setInterval(() => {
      this.refresh().catch((err: unknown) => this.o.log.error({ err }, 'monitoring the guests failed'));
    }, this.o.monitorIntervalMs);
    this.monitor.unref();
  }

  async stop(): Promise<void> {
    if (this.monitor) clearInterval(this.monitor);
    await Promise.allSettled([...this.background, this.refreshing]);
  }

  private async reconcile(): Promise<void> {
    const now = Date.now();
    const guests = new Map((await this.o.hypervisor.listGuests()).map((g) => [g.instanceId, g]));
    const changed: LaunchRecord[] = [];
    const forgotten: string[] = [];
    let adopted = 0;
    let lost = 0;
    for (const rec of this.o.records.all()) {
      const id = rec.spec.instanceId;
      const guest = guests.get(id);
      guests.delete(id);
      const t: Tracked = { instanceId: id, spec: rec.spec, state: rec.state, launchTime: rec.launchTime, launching: false, touchedAt: 0 };
      if (rec.stateReason !== undefined) t.stateReason = rec.stateReason;
      if (rec.terminatedAt !== undefined) t.terminatedAt = rec.terminatedAt;
      if (guest && guest.state !== 'terminated') {
        adopted++;
        if (rec.state === 'shutting-down') {
          // Terminated before the restart but still up: finish the job.
          t.terminating = true;
          this.stopGuest(t, true);
        } else t.state = guest.state;
        delete t.terminatedAt;
        if (guest.reason !== undefined) t.stateReason = guest.reason;
      } else if (t.state !== 'terminated') {
        lost++;
        t.state = 'terminated';
        t.stateReason = 'no guest found on the hypervisor when the node controller started';
        t.terminatedAt = now;
      } else if (now - (t.terminatedAt ?? 0) > this.o.terminatedRetentionMs) {
        forgotten.push(id);
        continue;
      }
      if (t.state !== rec.state || t.stateReason !== rec.stateReason) changed.push(this.record(t));
      this.instances.set(id, t);
    }
    for (const g of guests.values()) if (g.state !== 'terminated') this.trackUnmanaged(g);
    // The adopted guests' bridges, taps and anti-spoofing rules: put back what the host lost, leave the rest.
    for (const t of this.instances.values()) {
      if (!t.spec || t.terminating || (t.state !== 'running' && t.state !== 'pending') || !this.o.network) continue;
      await this.o.network.restore(t.spec).catch((err: unknown) => this.o.log.error({ err, instanceId: t.instanceId }, 'could not restore an adopted guest\'s network'));
    }
    this.o.records.save(changed);
    this.o.records.forget(forgotten);
    this.o.log.info({ adopted, lost, unmanaged: guests.size, hypervisor: this.o.hypervisor.name }, 'reconciled launch records with the hypervisor');
  }

  private trackUnmanaged(g: GuestStatus): void {
    // Not ours on record (e.g. the launch record was lost): report it so the cc/clc can decide, never kill it blindly.
    this.o.log.warn({ instanceId: g.instanceId, state: g.state }, 'guest without a launch record found on this host; reporting it, not touching it');
    this.instances.set(g.instanceId, {
      instanceId: g.instanceId,
      guest: { cores: g.cores, memoryMiB: g.memoryMiB },
      state: g.state,
      stateReason: 'guest found on the node without a launch record',
      launchTime: new Date().toISOString(),
      launching: false,
      touchedAt: 0,
    });
  }

  /** Bring every tracked instance's state up to what the hypervisor reports; concurrent callers share one listing. */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    const listedAt = Date.now();
    const guests = new Map((await this.o.hypervisor.listGuests()).map((g) => [g.instanceId, g]));
    if (this.o.hypervisor.volumes) this.attached = await this.o.hypervisor.volumes.listVolumes();
    const now = Date.now();
    const changed: LaunchRecord[] = [];
    const forgotten: string[] = [];
    for (const t of this.instances.values()) {
      const guest = guests.get(t.instanceId);
      guests.delete(t.instanceId);
      if (t.launching || t.touchedAt > listedAt) continue;
      const before = `${t.state}|${t.stateReason ?? ''}`;
      if (guest && guest.state !== 'terminated') {
        t.state = t.terminating ? 'shutting-down' : guest.state;
        if (guest.reason !== undefined) t.stateReason = guest.reason;
      } else if (t.state !== 'terminated') {
        if (t.state !== 'shutting-down') t.stateReason = 'the guest disappeared from the hypervisor';
        t.state = 'terminated';
        t.terminatedAt = now;
      } else if (now - (t.terminatedAt ?? now) > this.o.terminatedRetentionMs) {
        this.instances.delete(t.instanceId);
        if (t.spec) forgotten.push(t.instanceId);
        continue;
      }
      if (t.spec && before !== `${t.state}|${t.stateReason ?? ''}`) changed.push(this.record(t));
    }
    // An incoming migration's domain shows up here before the migration is finished: it is not unmanaged.
    for (const g of guests.values()) if (g.state !== 'terminated' && !this.incoming.has(g.instanceId)) this.trackUnmanaged(g);
    this.o.records.save(changed);
    this.o.records.forget(forgotten);
  }

  async runInstance(spec: InstanceSpec): Promise<NodeInstance> {
    const known = this.startedAgain(spec);
    if (known) return this.relaunch(known, spec);
    const capacity = await this.capacity();
    // From here to the map insert nothing awaits, so concurrent launches cannot overcommit the node.
    const raced = this.startedAgain(spec);
    if (raced) return this.relaunch(raced, spec);
    const free = this.available(capacity);
    const t = spec.vmType;
    if (t.cores > free.cores || t.memoryMiB > free.memoryMiB || t.diskGiB > free.diskGiB) {
      throw new WireError(
        'InsufficientInstanceCapacity',
        `${t.name} (${t.cores} cores, ${t.memoryMiB} MiB, ${t.diskGiB} GiB) does not fit: this node has ${free.cores} cores, ${free.memoryMiB} MiB, ${free.diskGiB} GiB free`,
      );
    }
    const tracked: Tracked = { instanceId: spec.instanceId, spec, state: 'pending', launchTime: new Date().toISOString(), launching: true, touchedAt: Date.now() };
    this.instances.set(spec.instanceId, tracked);
    this.o.records.save([this.record(tracked)]);
    // Like Eucalyptus's startup thread, the launch goes on in the background (staging an image can take
    // minutes); a failure within the first moments still reaches the caller, so the cc can try elsewhere.
    const launch = this.launch(tracked, spec);
    this.track(launch);
    const early = await within(launch, this.o.launchWaitMs ?? 2000);
    if (early instanceof Error) {
      // The caller hears of this failure now (and may place the instance elsewhere): nothing to report later.
      this.instances.delete(spec.instanceId);
      this.o.records.forget([spec.instanceId]);
      throw new WireError('InstanceLaunchFailed', `${spec.instanceId}: ${tracked.stateReason ?? early.message}`, 500);
    }
    return this.view(tracked);
  }

  /**
   * The instance as tracked, unless this launch starts again an EBS-backed instance that was stopped here
   * (its guest is gone, its record says terminated): then the old record goes and the launch is a new one.
   */
  private startedAgain(spec: InstanceSpec): Tracked | undefined {
    const t = this.instances.get(spec.instanceId);
    if (t?.state !== 'terminated' || !bootsFromVolume(spec) || t.launching) return t;
    this.instances.delete(spec.instanceId);
    return undefined;
  }

  /** The launch as the driver needs it: the volumes' CHAP secrets in the clear (only the driver sees them). */
  private opened(spec: InstanceSpec): InstanceSpec {
    if (!spec.ebsVolumes?.length) return spec;
    const open = this.o.openSecret;
    if (!open) throw new WireError('UnsupportedOperation', 'this node cannot open volume secrets', 400);
    return { ...spec, ebsVolumes: spec.ebsVolumes.map((v) => ({ ...v, target: mapTargetSecret(v.target, open) })) };
  }

  /** Resolves with the driver's error instead of rejecting (the instance is then terminated with a reason). */
  private async launch(t: Tracked, spec: InstanceSpec): Promise<Error | undefined> {
    try {
      const nic = await this.o.network?.prepare(spec);
      await this.o.hypervisor.runInstance(this.opened(spec), nic);
      this.o.log.info({ instanceId: spec.instanceId, vmType: spec.vmType.name }, 'instance started');
      if (t.state === 'shutting-down') {
        // Terminated while it was still being built: the driver had nothing to stop then, it has now.
        await this.o.hypervisor.terminateInstance(spec.instanceId, { force: true });
      }
      return undefined;
    } catch (err) {
      t.state = 'terminated';
      t.stateReason = `launch failed: ${(err as Error).message}`;
      t.terminatedAt = Date.now();
      this.o.records.save([this.record(t)]);
      this.o.log.error({ err, instanceId: spec.instanceId }, 'hypervisor failed to start the instance');
      this.releaseNetwork(spec);
      return err as Error;
    } finally {
      t.launching = false;
      t.touchedAt = Date.now();
    }
  }

  /** Idempotent launch: a retry is reported, never started twice; a guest found without a record gets its spec. */
  private relaunch(t: Tracked, spec: InstanceSpec): NodeInstance {
    if (!t.spec) {
      t.spec = spec;
      delete t.stateReason;
      this.o.records.save([this.record(t)]);
    }
    return this.view(t);
  }

  async terminateInstance(instanceId: string, force: boolean): Promise<{ instanceId: string; previousState: InstanceStateName; state: InstanceStateName }> {
    const t = this.get(instanceId);
    const previousState = t.state;
    if (t.state === 'terminated') return { instanceId, previousState, state: 'terminated' };
    t.state = 'shutting-down';
    t.terminating = true;
    t.touchedAt = Date.now();
    if (t.spec) this.o.records.save([this.record(t)]);
    // Still being built: the launch stops it as soon as the driver has something to stop.
    if (!t.launching) this.stopGuest(t, force);
    return { instanceId, previousState, state: t.state };
  }

  /** A graceful shutdown can take a while: it goes on in the background and a later poll sees terminated. */
  private stopGuest(t: Tracked, force: boolean): void {
    const work = this.o.hypervisor.terminateInstance(t.instanceId, { force }).then(
      () => {
        this.o.log.info({ instanceId: t.instanceId, force }, 'instance terminating');
        if (t.spec) this.releaseNetwork(t.spec);
      },
      (err: unknown) => {
        t.terminating = false;
        t.stateReason = `terminate failed: ${(err as Error).message}`;
        t.touchedAt = Date.now();
        this.o.log.error({ err, instanceId: t.instanceId }, 'hypervisor failed to terminate the instance');
      },
    );
    this.track(work);
  }

  /** The guest is gone: its anti-spoofing rules (and an unused bridge) go too. */
  private releaseNetwork(spec: InstanceSpec): void {
    if (!this.o.network) return;
    this.track(this.o.network.release(spec).catch((err: unknown) => this.o.log.warn({ err, instanceId: spec.instanceId }, 'could not remove the guest\'s network rules')));
  }

  async rebootInstance(instanceId: string): Promise<void> {
    const t = this.get(instanceId);
    if (t.state !== 'running' && t.state !== 'pending') {
      throw new WireError('IncorrectInstanceState', `instance ${instanceId} is ${t.state} and cannot be rebooted`, 409);
    }
    await this.o.hypervisor.rebootInstance(instanceId);
    this.o.log.info({ instanceId }, 'instance rebooting');
  }

  /** The last 64 KiB of the serial console, base64 as EC2 returns it. */
  async consoleOutput(instanceId: string): Promise<string> {
    this.get(instanceId);
    let buf: Buffer;
    try {
      buf = await this.o.hypervisor.consoleOutput(instanceId);
    } catch (err) {
      if (err instanceof GuestNotFoundError) return '';
      throw err;
    }
    return buf.subarray(Math.max(0, buf.length - CONSOLE_TAIL_BYTES)).toString('base64');
  }

  async describeInstances(instanceIds: readonly string[]): Promise<NodeInstance[]> {
    await this.refresh();
    const wanted = instanceIds.length > 0 ? new Set(instanceIds) : undefined;
    const out: NodeInstance[] = [];
    for (const t of this.instances.values()) {
      if (wanted && !wanted.has(t.instanceId)) continue;
      const v = this.view(t);
      // SYSTEM mode: no address was planned; the guest's address is the one the node saw it use (from the site's DHCP).
      if (v.privateIp === undefined && t.spec?.network?.mode === 'SYSTEM' && t.spec.macAddress && t.state === 'running' && this.o.network) {
        const ip = await this.o.network.learnedAddress(t.spec.macAddress);
        if (ip) v.privateIp = ip;
      }
      out.push(v);
    }
    return out;
  }

  /** The driver's image cache counters, when it keeps one. */
  imageCacheStats(): ReturnType<NonNullable<Hypervisor['imageCacheStats']>> | Promise<undefined> {
    return this.o.hypervisor.imageCacheStats?.() ?? Promise.resolve(undefined);
  }

  /** Every tracked instance as last seen, without asking the hypervisor (metrics). */
  snapshot(): NodeInstance[] {
    return [...this.instances.values()].map((t) => this.view(t));
  }

  async describeResource(): Promise<NodeResources> {
    const capacity = await this.capacity();
    const free = this.available(capacity);
    return {
      status: 'enabled',
      hypervisor: this.o.hypervisor.name,
      cores: { max: capacity.cores, available: free.cores },
      memoryMiB: { max: capacity.memoryMiB, available: free.memoryMiB },
      diskGiB: { max: capacity.diskGiB, available: free.diskGiB },
    };
  }

  private async capacity(): Promise<HostCapacity> {
    return effectiveCapacity(await this.o.hypervisor.capacity(), this.o.limits);
  }

  /** What is left after every instance that still holds resources (anything not terminated). */
  private available(capacity: HostCapacity): HostCapacity {
    const free = { ...capacity };
    for (const t of this.instances.values()) {
      if (t.state === 'terminated') continue;
      const held = holds(t);
      free.cores -= held.cores;
      free.memoryMiB -= held.memoryMiB;
      free.diskGiB -= held.diskGiB;
    }
    for (const m of this.incoming.values()) {
      free.cores -= m.spec.vmType.cores;
      free.memoryMiB -= m.spec.vmType.memoryMiB;
      free.diskGiB -= m.spec.vmType.diskGiB;
    }
    return free;
  }

  private get(instanceId: string): Tracked {
    const t = this.instances.get(instanceId);
    if (!t) throw new WireError('InvalidInstanceID.NotFound', `instance ${instanceId} is not on this node`, 404);
    return t;
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  private record(t: Tracked): LaunchRecord {
    const r: LaunchRecord = { spec: t.spec!, state: t.state, launchTime: t.launchTime };
    if (t.stateReason !== undefined) r.stateReason = t.stateReason;
    if (t.terminatedAt !== undefined) r.terminatedAt = t.terminatedAt;
    return r;
  }

  private view(t: Tracked): NodeInstance {
    const s = t.spec;
    const out: NodeInstance = {
      instanceId: t.instanceId,
      reservationId: s?.reservationId ?? '',
      ownerId: s?.ownerId ?? '',
      imageId: s?.imageId ?? '',
      state: t.state,
      vmType: s?.vmType ?? unknownType(t),
      launchTime: t.launchTime,
    };
    if (s?.privateIp !== undefined) out.privateIp = s.privateIp;
    if (s?.macAddress !== undefined) out.macAddress = s.macAddress;
    if (t.stateReason !== undefined) out.stateReason = t.stateReason;
    const volumes = this.attached.get(t.instanceId);
    if (volumes?.length && t.state !== 'terminated') out.volumes = volumes;
    return out;
  }

  // --- volumes (sc) ------------------------------------------------------------------------------

  private volumeDriver(): HypervisorVolumes {
    const v = this.o.hypervisor.volumes;
    if (!v) throw new WireError('UnsupportedOperation', `the ${this.o.hypervisor.name} hypervisor cannot attach volumes`, 400);
    return v;
  }

  private running(instanceId: string): Tracked {
    const t = this.get(instanceId);
    if (t.state !== 'running') throw new WireError('IncorrectInstanceState', `instance ${instanceId} is ${t.state}; volumes attach to running instances`, 409);
    return t;
  }

  async attachVolume(instanceId: string, spec: VolumeAttachmentSpec): Promise<AttachedVolume> {
    const driver = this.volumeDriver();
    this.running(instanceId);
    this.attached = await driver.listVolumes();
    for (const [other, vols] of this.attached) {
      if (other !== instanceId && vols.some((v) => v.volumeId === spec.volumeId)) {
        throw new WireError('VolumeInUse', `volume ${spec.volumeId} is attached to ${other} on this node`, 409);
      }
    }
    const att = await driver.attachVolume(instanceId, spec);
    this.attached.set(instanceId, [...(this.attached.get(instanceId) ?? []).filter((v) => v.volumeId !== att.volumeId), att]);
    this.o.log.info({ instanceId, volumeId: spec.volumeId, guestDevice: att.guestDevice }, 'volume attached');
    return att;
  }

  async detachVolume(instanceId: string, volumeId: string, force: boolean): Promise<boolean> {
    const driver = this.volumeDriver();
    this.get(instanceId);
    let done: boolean;
    try {
      done = await driver.detachVolume(instanceId, volumeId, { force });
    } catch (err) {
      if (err instanceof GuestNotFoundError) return true;
      throw err;
    }
    // Forced: gone from this guest as far as anyone asks, even while its unplug is pending.
    this.attached.set(instanceId, (this.attached.get(instanceId) ?? []).filter((v) => !(done || force) || v.volumeId !== volumeId));
    return done;
  }

  async freezeInstance(instanceId: string, timeoutMs: number): Promise<{ consistency: sc.SnapshotConsistency; frozenMs: number }> {
    const driver = this.volumeDriver();
    this.running(instanceId);
    const started = Date.now();
    const consistency = await driver.freeze(instanceId, timeoutMs);
    this.frozenAt.set(instanceId, Date.now());
    return { consistency, frozenMs: Date.now() - started };
  }

  async thawInstance(instanceId: string): Promise<{ heldMs: number }> {
    const driver = this.volumeDriver();
    this.get(instanceId);
    await driver.unfreeze(instanceId);
    const at = this.frozenAt.get(instanceId);
    this.frozenAt.delete(instanceId);
    return { heldMs: at === undefined ? 0 : Date.now() - at };
  }

  private readonly frozenAt = new Map<string, number>();

  // --- live migration (issue 7) ----------------------------------------------------------------

  private migrationDriver(): NonNullable<Hypervisor['migration']> {
    const m = this.o.hypervisor.migration;
    if (!m) throw new WireError('UnsupportedOperation', `the ${this.o.hypervisor.name} hypervisor cannot migrate guests`, 400);
    return m;
  }

  private migratable(instanceId: string): Tracked {
    const t = this.get(instanceId);
    if (t.state !== 'running') throw new WireError('IncorrectInstanceState', `instance ${instanceId} is ${t.state}; only a running instance can be migrated`, 409);
    return t;
  }

  /** The launch as this node ran it, for the destination to prepare (a running instance; an EBS-backed one's root volume is reopened there like its other volumes). */
  migrationSource(instanceId: string): { spec: InstanceSpec; launchTime: string } {
    this.migrationDriver();
    const t = this.migratable(instanceId);
    if (!t.spec) throw new WireError('IncorrectInstanceState', `instance ${instanceId} has no launch record on this node (found on the host without one); it cannot be migrated`, 409);
    return { spec: t.spec, launchTime: t.launchTime };
  }

  /** Destination: hold the capacity, bring up the network, have the driver lay out the disks and volume secrets. */
  async prepareMigration(spec: InstanceSpec, launchTime: string, volumes: VolumeAttachmentSpec[]): Promise<nc.MigrationDestination> {
    const driver = this.migrationDriver();
    const id = spec.instanceId;
    const known = this.instances.get(id);
    if ((known && known.state !== 'terminated') || this.incoming.has(id)) throw new WireError('InvalidInstanceID.Duplicate', `instance ${id} is already on this node`, 409);
    const free = this.available(await this.capacity());
    const t = spec.vmType;
    if (t.cores > free.cores || t.memoryMiB > free.memoryMiB || t.diskGiB > free.diskGiB) {
      throw new WireError('InsufficientInstanceCapacity', `${t.name} (${t.cores} cores, ${t.memoryMiB} MiB, ${t.diskGiB} GiB) does not fit: this node has ${free.cores} cores, ${free.memoryMiB} MiB, ${free.diskGiB} GiB free`);
    }
    const entry = { spec, launchTime, volumeIds: volumes.map((v) => v.volumeId) };
    this.incoming.set(id, entry);
    try {
      // Recorded first: a restarted NC adopts the guest should it arrive while this NC is down.
      if (known) this.instances.delete(id);
      this.o.records.save([{ spec, state: 'pending', launchTime }]);
      await this.o.network?.prepare(spec);
      return await driver.prepareIncoming(spec, volumes);
    } catch (err) {
      await this.finishMigration(id, false);
      throw err;
    }
  }

  /** Source: hand the guest over; on success it is no longer this node's (no record, no network, no files). */
  async migrateInstance(instanceId: string, to: { libvirtUri: string; migrateUri: string; destination: nc.MigrationDestination }): Promise<{ ms: number; console: string }> {
    const driver = this.migrationDriver();
    const t = this.migratable(instanceId);
    if (t.launching) throw new WireError('IncorrectInstanceState', `instance ${instanceId} is already being migrated`, 409);
    const started = Date.now();
    // `launching` keeps the monitor from reading the guest's disappearance at the switch as a termination.
    t.launching = true;
    let console: Buffer;
    try {
      ({ console } = await driver.migrateOut(instanceId, to));
    } catch (err) {
      t.launching = false;
      t.touchedAt = Date.now();
      throw err;
    }
    this.instances.delete(instanceId);
    this.attached.delete(instanceId);
    this.o.records.forget([instanceId]);
    if (t.spec) this.releaseNetwork(t.spec);
    this.o.log.info({ instanceId, ms: Date.now() - started, to: to.libvirtUri }, 'instance migrated to another node');
    return { ms: Date.now() - started, console: console.toString('base64') };
  }

  /** Destination: the guest arrived (tracked as running from now) or the migration failed (what prepare made goes). */
  async finishMigration(instanceId: string, succeeded: boolean, earlierConsole?: string): Promise<NodeInstance | undefined> {
    const entry = this.incoming.get(instanceId);
    if (!entry) {
      const t = this.instances.get(instanceId);
      if (succeeded && t) return this.view(t);
      throw new WireError('InvalidInstanceID.NotFound', `no migration of ${instanceId} to this node is under way`, 404);
    }
    const driver = this.migrationDriver();
    const here = (await this.o.hypervisor.listGuests()).some((g) => g.instanceId === instanceId && g.state === 'running');
    this.incoming.delete(instanceId);
    if (succeeded || here) {
      if (!here) throw new WireError('MigrationFailed', `instance ${instanceId} did not arrive on this node`, 500);
      const t: Tracked = { instanceId, spec: entry.spec, state: 'running', launchTime: entry.launchTime, launching: false, touchedAt: Date.now() };
      this.instances.set(instanceId, t);
      this.o.records.save([this.record(t)]);
      if (earlierConsole) {
        await driver.keepEarlierConsole(instanceId, Buffer.from(earlierConsole, 'base64'))
          .catch((err: unknown) => this.o.log.warn({ err, instanceId }, 'could not keep the console output of the source node'));
      }
      if (this.o.hypervisor.volumes) this.attached = await this.o.hypervisor.volumes.listVolumes();
      this.o.log.info({ instanceId }, 'instance migrated to this node');
      return this.view(t);
    }
    await driver.abortIncoming(instanceId, entry.volumeIds).catch((err: unknown) => this.o.log.warn({ err, instanceId }, 'could not remove an aborted incoming migration\'s files'));
    this.o.records.forget([instanceId]);
    this.releaseNetwork(entry.spec);
    return undefined;
  }
}

/** The promise's value if it settles within ms, else undefined (the promise goes on). */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function unknownType(t: Tracked): VmType {
  return { name: 'unknown', cores: Math.max(1, t.guest?.cores ?? 1), memoryMiB: Math.max(1, t.guest?.memoryMiB ?? 1), diskGiB: 0 };
}

function holds(t: Tracked): HostCapacity {
  if (t.spec) return { cores: t.spec.vmType.cores, memoryMiB: t.spec.vmType.memoryMiB, diskGiB: t.spec.vmType.diskGiB };
  return { cores: t.guest?.cores ?? 0, memoryMiB: t.guest?.memoryMiB ?? 0, diskGiB: 0 };
}
