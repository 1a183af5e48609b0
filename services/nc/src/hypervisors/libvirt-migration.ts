// Live migration on the libvirt driver (issue 7), shared-nothing as real Eucalyptus/OpenStack nodes do it
// without shared instance storage:
// - the destination NC builds the instance directory as a launch would (root overlay on the same base image,
//   fetched into its own cache from Walrus; swap and ephemeral0 empty; kernel, ramdisk), defines a libvirt
//   secret per attached volume for its own export of it, and answers where those are;
// - the source NC rewrites the live domain for the destination (instance directory, owner tag, each volume
//   disk's <source>: the destination's target and secret; the backing chain dropped, the destination's
//   qcow2 header names its own base) and has its libvirtd migrate the guest peer to peer
//   (`virsh migrate --live --p2p --copy-storage-inc --migrate-disks <local disks>`): QEMU copies the
//   overlay's own clusters and the swap/ephemeral contents over NBD while the guest runs, then its memory,
//   and the guest resumes on the destination. The iSCSI disks are not copied: the destination's QEMU
//   opens the same volume through its own export. Same tap name, same bridge name, same MAC there.
// The source libvirtd must reach the destination's (the cc's MIGRATE_LIBVIRT_URI: qemu+tcp here, TLS or ssh in a real deployment: see
// DESIGN.md) and the destination's QEMU must accept the migration stream and NBD on its private address.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { WireError, type InstanceSpec, type nc } from '@mallee/wire';
import { GuestNotFoundError, type HypervisorMigration, type VolumeAttachmentSpec } from '../hypervisor.js';
import type { ImageCache } from './image-cache.js';
import { buildInstanceDisks, instanceDir, instanceFiles } from './libvirt-disks.js';
import { parseDomainXml } from './libvirt-domain-xml.js';
import type { LibvirtVolumes } from './libvirt-volumes.js';
import type { LibvirtConnection } from './libvirt-connection.js';

const run = promisify(execFile);
/** Console output carried to the destination: as much as GetConsoleOutput returns. */
const CONSOLE_KEEP_BYTES = 64 * 1024;

export interface LibvirtMigrationOptions {
  conn: LibvirtConnection;
  volumes: LibvirtVolumes;
  cache: ImageCache;
  instancePath: string;
  /** This NC's owner tag (its home). */
  owner: string;
  stateDir: string;
  log: Logger;
  /** Seconds of live copying after which the guest is paused to finish (virsh migrate --timeout; default 120). */
  convergeTimeoutS?: number;
}

const reEsc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const xmlEsc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');

/** Local, writable file disks of a domain (what QEMU copies to the destination): their target devices. */
export function localDisks(domainXml: string): string[] {
  const out: string[] = [];
  for (const m of domainXml.matchAll(/<disk\b[^>]*\btype='file'[^>]*>([\s\S]*?)<\/disk>/g)) {
    const body = m[1]!;
    if (/<readonly\/>/.test(body) || !/device='disk'/.test(m[0])) continue;
    const dev = /<target dev='([a-z]+)'/.exec(body)?.[1];
    if (dev) out.push(dev);
  }
  return out;
}

/**
 * The source's live domain XML as the destination must define it: the instance directory moved, the owner
 * tag changed, each volume disk's <source> replaced with the destination's, backing chains dropped (they name
 * the source's cache; the destination's overlay header names its own base).
 */
export function rewriteForDestination(xml: string, from: { instanceDir: string; owner: string }, to: nc.MigrationDestination): string {
  let out = xml.split(xmlEsc(from.instanceDir)).join(xmlEsc(to.instanceDir));
  out = out.replace(new RegExp(`(<(?:[\\w-]+:)?node>)${reEsc(xmlEsc(from.owner))}(</(?:[\\w-]+:)?node>)`), `$1${xmlEsc(to.owner)}$2`);
  for (;;) {
    const next = out.replace(/<backingStore\/>/g, '').replace(/<backingStore\b[^>]*>(?:(?!<backingStore)[\s\S])*?<\/backingStore>/g, '');
    if (next === out) break;
    out = next;
  }
  for (const d of to.disks) {
    const disk = new RegExp(`(<disk\\b[^>]*type='network'[^>]*>(?:(?!</disk>)[\\s\\S])*?)<source\\b[\\s\\S]*?</source>((?:(?!</disk>)[\\s\\S])*?<serial>${reEsc(d.volumeId)}</serial>)`);
    if (!disk.test(out)) throw new WireError('InvalidParameterValue', `the guest has no disk of volume ${d.volumeId}`);
    out = out.replace(disk, `$1${d.source}$2`);
  }
  return out;
}

export class LibvirtMigration implements HypervisorMigration {
  /**
   * Guests being migrated away. From the switch-over until migrateOut has read and removed the source's files the
   * source domain shows shut off, which the driver must not take for a power-off: reaping it deleted the instance
   * directory under migrateOut, and the console output with it (seen under load: GetConsoleOutput empty after a move).
   */
  readonly leaving = new Set<string>();

  constructor(private readonly o: LibvirtMigrationOptions) {}

  async prepareIncoming(spec: InstanceSpec, volumes: VolumeAttachmentSpec[]): Promise<nc.MigrationDestination> {
    const id = spec.instanceId;
    if ((await this.o.conn.domainState(id)) !== undefined) throw new WireError('InvalidInstanceID.Duplicate', `a guest named ${id} already exists on this node`, 409);
    const dir = instanceDir(this.o.instancePath, id);
    try {
      await buildInstanceDisks(this.o.cache, dir, spec, { blank: true });
      const disks: nc.MigrationDestination['disks'] = [];
      for (const v of volumes) {
        const xml = await this.o.volumes.networkDisk(id, v, 'vdz');
        disks.push({ volumeId: v.volumeId, source: /<source\b[\s\S]*?<\/source>/.exec(xml)![0] });
      }
      this.o.log.info({ instanceId: id, dir, volumes: volumes.map((v) => v.volumeId) }, 'prepared for an incoming migration');
      return { instanceDir: dir, owner: this.o.owner, disks };
    } catch (err) {
      await this.abortIncoming(id, volumes.map((v) => v.volumeId));
      throw err;
    } finally {
      // The guest holds its base from the moment it exists here (abortIncoming removes the overlay otherwise).
      if (spec.imageId) this.o.cache.release(spec.imageId);
    }
  }

  async migrateOut(instanceId: string, to: { libvirtUri: string; migrateUri: string; destination: nc.MigrationDestination }): Promise<{ console: Buffer }> {
    const xml = await this.virsh('dumpxml', '--migratable', instanceId).catch(() => undefined);
    const meta = xml ? parseDomainXml(xml).metadata : undefined;
    if (!xml || meta?.node !== this.o.owner) throw new GuestNotFoundError(instanceId);
    this.leaving.add(instanceId);
    try {
      return await this.handOver(instanceId, xml, meta.instanceDir, to);
    } finally {
      this.leaving.delete(instanceId);
    }
  }

  private async handOver(instanceId: string, xml: string, dir: string, to: { libvirtUri: string; migrateUri: string; destination: nc.MigrationDestination }): Promise<{ console: Buffer }> {
    const destXml = rewriteForDestination(xml, { instanceDir: dir, owner: this.o.owner }, to.destination);
    const copy = localDisks(xml);
    const tmp = join(this.o.stateDir, 'tmp');
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    const file = join(tmp, `migrate-${instanceId}-${process.pid}-${Date.now()}.xml`);
    await writeFile(file, destXml, { mode: 0o600 });
    const started = Date.now();
    try {
      await this.virsh(
        'migrate', '--live', '--p2p', '--persistent', '--undefinesource', '--auto-converge',
        '--timeout', String(this.o.convergeTimeoutS ?? 120),
        ...(copy.length ? ['--copy-storage-inc', '--migrate-disks', copy.join(',')] : []),
        '--xml', file, '--persistent-xml', file,
        instanceId, to.libvirtUri, '--migrateuri', to.migrateUri,
      );
    } finally {
      await rm(file, { force: true });
    }
    this.o.log.info({ instanceId, to: to.libvirtUri, ms: Date.now() - started, copied: copy }, 'guest migrated away');
    // Gone from here: its files and secrets go too (the destination has its own); its console so far goes with the answer.
    const files = instanceFiles(dir);
    const earlier = await readFile(files.consoleEarlier).catch(() => Buffer.alloc(0));
    const console = Buffer.concat([earlier, await readFile(files.consoleLog).catch(() => Buffer.alloc(0))]);
    await rm(dir, { recursive: true, force: true });
    for (const v of to.destination.disks) await this.o.volumes.undefineSecret(instanceId, v.volumeId);
    return { console: console.subarray(Math.max(0, console.length - CONSOLE_KEEP_BYTES)) };
  }

  async keepEarlierConsole(instanceId: string, earlier: Buffer): Promise<void> {
    await writeFile(instanceFiles(instanceDir(this.o.instancePath, instanceId)).consoleEarlier, earlier);
  }

  async abortIncoming(instanceId: string, volumeIds: string[]): Promise<void> {
    const xml = await this.o.conn.domainXml(instanceId);
    if (xml) {
      // Ours: it arrived after all (the source's libvirtd finished after our caller gave up) and runs the guest,
      // so it stays. Someone else's domain of that name is never touched either.
      if (parseDomainXml(xml).metadata?.node === this.o.owner) this.o.log.warn({ instanceId }, 'an incoming migration was called off but the guest is here; keeping it');
      return;
    }
    await rm(instanceDir(this.o.instancePath, instanceId), { recursive: true, force: true });
    for (const v of volumeIds) await this.o.volumes.undefineSecret(instanceId, v);
  }

  private async virsh(...args: string[]): Promise<string> {
    try {
      const { stdout } = await run('virsh', ['-q', '-c', this.o.conn.uri, ...args], { timeout: 900_000, maxBuffer: 16 << 20 });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new WireError('MigrationFailed', `virsh ${args[0]}: ${(e.stderr ?? '').trim() || e.message}`, 500);
    }
  }
}
