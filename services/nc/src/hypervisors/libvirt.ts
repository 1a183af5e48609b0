// The libvirt driver: real guests under KVM, or QEMU/TCG where KVM does not work (probed by booting).
//
// Each instance is a persistent libvirt domain named by its instance id, carrying Mallee metadata
// (instance, image, owner, type, the owning NC's home), so a restarted NC lists and adopts its guests
// and several NCs on one host never see each other's. Its files live in INSTANCE_PATH/<instance-id>/:
// root.qcow2 (overlay on the cached base image), swap.img, ephemeral0.img, kernel, ramdisk, console.log.
//
// Where images come from: the presigned Walrus URLs the launch carries (spec.imageSources, checked
// against the SHA-256 the clc recorded), else a local spec.imageLocation (path or file:// URL) or
// <home>/images/<id>. Each is fetched once into <home>/libvirt/cache/<id> (image-cache.ts: LRU bounded
// by NC_CACHE_SIZE, never evicting a base a guest uses) and shared by every instance's overlay.
//
// Boot: kernel + ramdisk when the spec names a kernel (command line
// `console=ttyS0 root=/dev/vda rw no_timer_check mallee.instance_id=<id>`), else from the root disk.
// Network: one virtio NIC, on the bridge the NC prepared (MANAGED networking, tap named for its
// ebtables rules), else on QEMU user-mode networking (DHCP and outbound only). Console: ttyS0
// appended to console.log. Guest agent: a virtio-serial channel org.qemu.guest_agent.0 (libvirt
// makes the host socket) for guests that run qemu-guest-agent.
import { chmod, mkdir, readFile, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import type { InstanceSpec } from '@mallee/wire';
import {
  GuestNotFoundError,
  type CreateHypervisor,
  type GuestNic,
  type GuestStatus,
  type HostCapacity,
  type Hypervisor,
  type HypervisorContext,
} from '../hypervisor.js';
import { DomainState, LibvirtConnection } from './libvirt-connection.js';
import { ImageCache, type ImageCacheStats } from './image-cache.js';
import { buildInstanceDisks, instanceDir, instanceFiles, metadataServiceServes } from './libvirt-disks.js';
import { buildDomainXml, parseDomainXml, type DomainDisk, type DomainType, type MalleeDomainMetadata } from './libvirt-domain-xml.js';
import { chooseDomainType } from './libvirt-probe.js';
import { LibvirtMigration } from './libvirt-migration.js';
import { LibvirtVolumes, volumeDisks } from './libvirt-volumes.js';
import { guestDevice } from './volume-devices.js';

export interface LibvirtOptions {
  /** libvirt connection URI (default qemu:///system). */
  uri?: string;
  /** Where instance directories go (default INSTANCE_PATH). */
  instancePath?: string;
  /** ms a guest gets to power off after the ACPI button before it is destroyed (default 30 s). */
  shutdownGraceMs?: number;
  /** ms the KVM probe guest gets to boot (default 20 s). */
  probeTimeoutMs?: number;
  /** Kernel the KVM probe boots (default: the newest /boot/vmlinuz-*). */
  probeKernel?: string;
}

const GiB = 1024 ** 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LibvirtHypervisor implements Hypervisor {
  private type: DomainType = 'qemu';
  private readonly conn: LibvirtConnection;
  private readonly log: Logger;
  private readonly home: string;
  private readonly instancePath: string;
  private readonly stateDir: string;
  private readonly cache: ImageCache;
  /** Owner tag written into each domain: this NC's home. */
  private readonly node: string;
  /** Guests being built (their domain may be defined but not yet started). */
  private readonly launching = new Map<string, Promise<void>>();
  /** Guests being shut down by terminateInstance. */
  private readonly stopping = new Map<string, Promise<void>>();
  private initialised = false;
  readonly volumes: LibvirtVolumes;
  readonly migration: LibvirtMigration;

  constructor(
    private readonly ctx: HypervisorContext,
    private readonly opts: LibvirtOptions = {},
  ) {
    this.log = ctx.log;
    this.home = resolve(ctx.home);
    this.node = this.home;
    this.instancePath = resolve(opts.instancePath ?? ctx.config.INSTANCE_PATH);
    this.stateDir = join(this.home, 'libvirt');
    this.cache = new ImageCache({
      dir: join(this.stateDir, 'cache'),
      imagesDir: join(this.home, 'images'),
      maxBytes: ctx.config.NC_CACHE_SIZE * 1024 * 1024,
      inUse: async () => new Set((await this.ownDomains()).map((d) => d.meta.imageId)),
      log: this.log,
    });
    this.conn = new LibvirtConnection(opts.uri ?? ctx.config.LIBVIRT_URI);
    this.volumes = new LibvirtVolumes({
      uri: this.conn.uri, stateDir: this.stateDir, owner: this.node, log: this.log,
      ownXml: (id) => this.domainXml(id),
      ownGuests: async () => (await this.ownDomains()).map((d) => ({ instanceId: d.meta.instanceId, xml: d.xml })),
    });
    this.migration = new LibvirtMigration({
      conn: this.conn, volumes: this.volumes, cache: this.cache, instancePath: this.instancePath, owner: this.node, stateDir: this.stateDir, log: this.log,
    });
  }

  get name(): string {
    return `libvirt/${this.type}`;
  }

  /** The domain type in use (kvm or qemu), known after init(). */
  get domainType(): DomainType {
    return this.type;
  }

  async init(): Promise<void> {
    if (this.initialised) return;
    const step = this.ctx.onStep ?? (() => undefined);
    step(`connecting to libvirtd (${this.conn.uri})`);
    await this.conn.open();
    await this.prepareDirectories();
    const kind = this.ctx.config.HYPERVISOR;
    const forced = kind === 'kvm' || kind === 'qemu' ? kind : undefined;
    if (!forced) step(`choosing KVM or TCG (unless known for this host, a probe guest boots under KVM, up to ${Math.round((this.opts.probeTimeoutMs ?? 20_000) / 1000)} s)`);
    const choice = await chooseDomainType({
      conn: this.conn,
      forced,
      stateDir: this.stateDir,
      log: this.log,
      ...(this.opts.probeTimeoutMs !== undefined ? { timeoutMs: this.opts.probeTimeoutMs } : {}),
      ...(this.opts.probeKernel !== undefined ? { kernel: this.opts.probeKernel } : {}),
    });
    this.type = choice.type;
    step('recovering volume attachments');
    await this.volumes.recover();
    this.log.info({ domainType: choice.type, reason: choice.reason, uri: this.conn.uri, instancePath: this.instancePath }, `libvirt driver uses domain type ${choice.type}`);
    this.initialised = true;
  }

  /**
   * QEMU runs as libvirt's unprivileged user (libvirt-qemu on Debian) and must reach the images and
   * instance files through every directory above them: ours get o+x, others are only checked.
   */
  private async prepareDirectories(): Promise<void> {
    const ours = [this.home, this.stateDir, this.cache.dir, this.instancePath];
    for (const dir of ours) {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      const mode = (await stat(dir)).mode & 0o7777;
      if ((mode & 0o001) === 0) await chmod(dir, mode | 0o001);
    }
    for (const leaf of [this.home, this.instancePath]) {
      for (let dir = dirname(leaf); dir !== dirname(dir); dir = dirname(dir)) {
        if (ours.includes(dir)) continue;
        const mode = await stat(dir).then((st) => st.mode, () => 0o755);
        if ((mode & 0o001) === 0) {
          this.log.warn({ dir }, 'libvirt\'s QEMU user cannot pass through this directory (no o+x): guests will fail to start');
        }
      }
    }
  }

  async capacity(): Promise<HostCapacity> {
    const node = await this.conn.nodeInfo();
    // Disk: what is free where instances live, plus what our guests already hold (the NC subtracts that).
    let freeGiB = 0;
    try {
      const s = await statfs(this.instancePath);
      freeGiB = (s.bavail * s.bsize) / GiB;
    } catch {
      const s = await statfs(this.home);
      freeGiB = (s.bavail * s.bsize) / GiB;
    }
    const held = (await this.ownDomains()).reduce((sum, d) => sum + (d.meta.diskGiB || 0), 0);
    return { cores: node.cpus, memoryMiB: Math.floor((await hostMemoryKiB(node.memoryKiB)) / 1024), diskGiB: Math.floor(freeGiB + held) };
  }

  async runInstance(spec: InstanceSpec, nic?: GuestNic): Promise<void> {
    const id = spec.instanceId;
    const inflight = this.launching.get(id);
    if (inflight) return inflight;
    if ((await this.conn.domainState(id)) !== undefined) return;
    const work = this.launch(spec, nic).finally(() => this.launching.delete(id));
    this.launching.set(id, work);
    return work;
  }

  private async launch(spec: InstanceSpec, nic?: GuestNic): Promise<void> {
    const id = spec.instanceId;
    const dir = instanceDir(this.instancePath, id);
    const started = Date.now();
    try {
      const disks = await buildInstanceDisks(this.cache, dir, spec);
      const disksMs = Date.now() - started;
      const list: DomainDisk[] = disks.root ? [{ target: 'vda', file: disks.root, format: 'qcow2' }] : [await this.rootVolumeDisk(spec)];
      if (disks.swap) list.push({ target: 'vdb', file: disks.swap, format: 'raw' });
      if (disks.ephemeral) list.push({ target: 'vdc', file: disks.ephemeral, format: 'raw' });
      if (disks.configDrive) list.push({ target: 'vdd', file: disks.configDrive, format: 'raw', readonly: true });
      else if (!metadataServiceServes(spec)) this.log.warn({ instanceId: id }, 'genisoimage is not installed: the guest gets no config drive (user data, key)');
      for (const v of spec.ebsVolumes ?? []) {
        if (v.root) continue;
        const target = guestDevice(v.device, list.map((d) => d.target));
        list.push({ target, xml: await this.volumes.networkDisk(id, v, target) });
      }
      const meta: MalleeDomainMetadata = {
        instanceId: id,
        node: this.node,
        imageId: spec.imageId,
        reservationId: spec.reservationId,
        ownerId: spec.ownerId,
        vmTypeName: spec.vmType.name,
        cores: spec.vmType.cores,
        memoryMiB: spec.vmType.memoryMiB,
        diskGiB: spec.vmType.diskGiB,
        instanceDir: dir,
        createdAt: new Date().toISOString(),
      };
      const xml = buildDomainXml({
        name: id,
        type: this.type,
        memoryMiB: spec.vmType.memoryMiB,
        cores: spec.vmType.cores,
        ...(disks.kernel ? { kernel: disks.kernel, cmdline: kernelCmdline(id) } : {}),
        ...(disks.ramdisk ? { ramdisk: disks.ramdisk } : {}),
        disks: list,
        consoleLog: disks.consoleLog,
        network: nic ? { kind: 'bridge', ...nic } : { kind: 'user', ...(spec.macAddress ? { mac: spec.macAddress } : {}) },
        guestAgent: true,
        metadata: meta,
      });
      await this.conn.defineAndStart(xml);
      this.cache.release(spec.imageId);
      const ms = Date.now() - started;
      // disksMs: image cache (a download the first time), overlay, swap, ephemeral, config drive, kernel/ramdisk;
      // startMs: libvirt defining and starting QEMU.
      this.log.info({ instanceId: id, domainType: this.type, ms, disksMs, startMs: ms - disksMs, memoryMiB: spec.vmType.memoryMiB, cores: spec.vmType.cores }, 'guest defined and started');
    } catch (err) {
      this.cache.release(spec.imageId);
      // Leave nothing behind: a retry starts from scratch.
      await this.conn.destroy(id).catch(() => undefined);
      await this.conn.undefine(id).catch(() => undefined);
      for (const v of spec.ebsVolumes ?? []) await this.volumes.undefineSecret(id, v.volumeId);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
  }

  /** An EBS-backed guest's root: its volume's iSCSI disk as vda, the first disk (what the kernel mounts as root). */
  private async rootVolumeDisk(spec: InstanceSpec): Promise<DomainDisk> {
    const root = spec.ebsVolumes?.find((v) => v.root);
    if (!root) throw new Error(`instance ${spec.instanceId} boots from a volume but its launch names none`);
    return { target: 'vda', xml: await this.volumes.networkDisk(spec.instanceId, root, 'vda') };
  }

  async terminateInstance(instanceId: string, opts: { force: boolean }): Promise<void> {
    const inflight = this.stopping.get(instanceId);
    if (inflight) {
      if (opts.force) await this.conn.destroy(instanceId);
      return inflight;
    }
    const work = this.stop(instanceId, opts.force).finally(() => this.stopping.delete(instanceId));
    this.stopping.set(instanceId, work);
    return work;
  }

  private async stop(instanceId: string, force: boolean): Promise<void> {
    await this.launching.get(instanceId)?.catch(() => undefined);
    const xml = await this.conn.domainXml(instanceId);
    const meta = xml ? parseDomainXml(xml).metadata : undefined;
    if (xml && meta?.node !== this.node) throw new GuestNotFoundError(instanceId); // not ours: never touch it
    const dir = meta?.instanceDir ?? instanceDir(this.instancePath, instanceId);
    const state = await this.conn.domainState(instanceId);
    if (state !== undefined && state !== DomainState.SHUTOFF) {
      if (!force) await this.gracefulShutdown(instanceId);
      await this.conn.destroy(instanceId);
    }
    // Disks first: once the domain is undefined the guest counts as gone, so nothing may be left by then.
    await rm(dir, { recursive: true, force: true });
    await this.conn.undefine(instanceId);
    for (const v of xml ? volumeDisks(xml) : []) await this.volumes.undefineSecret(instanceId, v.volumeId);
    this.log.info({ instanceId, force }, 'guest terminated, domain undefined and disks deleted');
  }

  /** ACPI power button, then wait up to the grace period for the guest to power off. */
  private async gracefulShutdown(instanceId: string): Promise<void> {
    const grace = this.opts.shutdownGraceMs ?? 30_000;
    try {
      await this.conn.shutdown(instanceId);
    } catch (err) {
      this.log.warn({ instanceId, err: (err as Error).message }, 'ACPI shutdown request failed; destroying the guest');
      return;
    }
    const deadline = Date.now() + grace;
    while (Date.now() < deadline) {
      const s = await this.conn.domainState(instanceId);
      if (s === undefined || s === DomainState.SHUTOFF) return;
      await sleep(250);
    }
    this.log.warn({ instanceId, graceMs: grace }, 'guest did not power off within the grace period; destroying it');
  }

  async rebootInstance(instanceId: string): Promise<void> {
    const state = await this.ownState(instanceId);
    if (state === undefined || state === DomainState.SHUTOFF || this.stopping.has(instanceId)) throw new GuestNotFoundError(instanceId);
    try {
      await this.conn.reboot(instanceId);
    } catch (err) {
      // No ACPI in the guest (or libvirt refused): a hard reset, as EC2 does when a clean reboot fails.
      this.log.warn({ instanceId, err: (err as Error).message }, 'graceful reboot failed; resetting the guest');
      await this.conn.reset(instanceId);
    }
  }

  async listGuests(): Promise<GuestStatus[]> {
    const out: GuestStatus[] = [];
    for (const { meta, state, memoryMiB, cores } of await this.ownDomains()) {
      const id = meta.instanceId;
      const g: GuestStatus = { instanceId: id, state: 'running', cores: cores || meta.cores, memoryMiB: memoryMiB || meta.memoryMiB };
      if (this.stopping.has(id) || state === DomainState.SHUTDOWN) g.state = 'shutting-down';
      else if (this.launching.has(id)) g.state = 'pending';
      else if (this.migration.leaving.has(id)) g.state = 'running'; // shut off here once it runs on the destination: not a power-off
      else if (state === DomainState.SHUTOFF || state === DomainState.CRASHED) {
        // The guest powered itself off (or crashed, or the host rebooted): an instance-store instance
        // is then terminated, as on EC2; its domain and disks are cleaned up now.
        g.state = 'terminated';
        g.reason = state === DomainState.CRASHED ? 'the guest crashed' : 'the guest powered itself off';
        this.reap(id);
      }
      out.push(g);
    }
    return out;
  }

  private reap(instanceId: string): void {
    if (this.stopping.has(instanceId)) return;
    this.terminateInstance(instanceId, { force: true }).catch((err: unknown) =>
      this.log.error({ instanceId, err: (err as Error).message }, 'cleaning up a powered-off guest failed'),
    );
  }

  async consoleOutput(instanceId: string): Promise<Buffer> {
    const xml = await this.conn.domainXml(instanceId);
    const meta = xml ? parseDomainXml(xml).metadata : undefined;
    if (!meta || meta.node !== this.node) throw new GuestNotFoundError(instanceId);
    const files = instanceFiles(meta.instanceDir);
    const read = (file: string) => readFile(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return Buffer.alloc(0);
      throw err;
    });
    // A migrated guest: what it wrote on the earlier node(s), then what it writes here.
    return Buffer.concat([await read(files.consoleEarlier), await read(files.consoleLog)]);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.launching.values(), ...this.stopping.values()]);
    await this.conn.close();
    this.initialised = false;
  }

  /** What the image cache holds and has done (downloads, hits, evictions). */
  imageCacheStats(): Promise<ImageCacheStats> {
    return this.cache.stats();
  }

  /** The domain XML of one of our guests (for inspection and tests), or undefined. */
  async domainXml(instanceId: string): Promise<string | undefined> {
    const xml = await this.conn.domainXml(instanceId);
    return xml && parseDomainXml(xml).metadata?.node === this.node ? xml : undefined;
  }

  private async ownState(instanceId: string): Promise<number | undefined> {
    return (await this.domainXml(instanceId)) === undefined ? undefined : this.conn.domainState(instanceId);
  }

  private async ownDomains(): Promise<{ meta: MalleeDomainMetadata; state: number; memoryMiB: number; cores: number; xml: string }[]> {
    const out = [];
    for (const d of await this.conn.listDomains()) {
      const parsed = parseDomainXml(d.xml);
      if (parsed.metadata?.node !== this.node || parsed.metadata.instanceId !== d.name) continue;
      out.push({ meta: parsed.metadata, state: d.state, memoryMiB: parsed.memoryMiB, cores: parsed.cores, xml: d.xml });
    }
    return out;
  }
}

/**
 * The host's memory: /proc/meminfo's MemTotal. libvirt's node info sums the NUMA nodes' memory, which
 * some virtualised hosts report far below the real total (5.6 of 24 GiB on this project's machines).
 */
async function hostMemoryKiB(fromLibvirt: number): Promise<number> {
  try {
    const m = /^MemTotal:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'));
    if (m) return Math.max(Number(m[1]), fromLibvirt);
  } catch {
    // not Linux, or no /proc: libvirt's figure
  }
  return fromLibvirt;
}

/**
 * The command line of a kernel boot. no_timer_check: under QEMU/TCG on a loaded host the kernel's IO-APIC
 * timer check can miss its window and panic ("IO-APIC + timer doesn't work!"); cloud images boot with it.
 */
export function kernelCmdline(instanceId: string): string {
  return `console=ttyS0 root=/dev/vda rw no_timer_check mallee.instance_id=${instanceId}`;
}

export const createHypervisor: CreateHypervisor = (ctx) => new LibvirtHypervisor(ctx);

/** The driver for an NC with this configuration and home (what `createHypervisor` builds from a context). */
export function createLibvirtHypervisor(config: MalleeConfig, home: string, log: Logger, opts: LibvirtOptions = {}): LibvirtHypervisor {
  return new LibvirtHypervisor({ config, home, log }, opts);
}
