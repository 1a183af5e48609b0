// Volumes on the libvirt driver: each EBS volume is a network disk (`<disk type='network'>`, protocol
// iscsi: QEMU's own initiator, no kernel initiator on the node) hot-plugged live and into the persistent
// definition, so it survives NC and guest restarts and is read back from the domain XML. CHAP goes
// through a libvirt secret object (never in the XML). Freezing uses the qemu guest agent
// (domfsfreeze) where the guest runs one, else pauses the guest (crash-consistent).
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { XMLParser } from 'fast-xml-parser';
import type { Logger } from 'pino';
import { WireError, type AttachedVolume, type sc } from '@mallee/wire';
import { GuestNotFoundError, targetName, type HypervisorVolumes, type VolumeAttachmentSpec } from '../hypervisor.js';
import { guestDevice } from './volume-devices.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const esc = (s: string | number): string => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

/** A volume disk found in a domain's XML. */
export interface VolumeDisk { volumeId: string; guestDevice: string; iqn: string; xml: string }

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false, isArray: (n) => n === 'disk' || n === 'host' });

/** The iSCSI and RBD network disks (ours carry the volume id as their serial) of a domain XML. */
export function volumeDisks(domainXml: string): VolumeDisk[] {
  const doc = parser.parse(domainXml) as { domain?: { devices?: { disk?: Record<string, unknown>[] } } };
  const out: VolumeDisk[] = [];
  for (const d of doc.domain?.devices?.disk ?? []) {
    const source = d.source as Record<string, unknown> | undefined;
    const serial = String(d.serial ?? '');
    if (d['@type'] !== 'network' || !source || !['iscsi', 'rbd'].includes(String(source?.['@protocol'])) || !/^vol-[0-9a-f]+$/.test(serial)) continue;
    const target = String((d.target as Record<string, unknown> | undefined)?.['@dev'] ?? '');
    const name = String(source['@name'] ?? '');
    out.push({ volumeId: serial, guestDevice: target, iqn: name.replace(/\/\d+$/, ''), xml: diskXmlFor(serial, target) });
  }
  return out;
}

/** Enough XML for virsh detach-device to find the disk (libvirt matches on the target device). */
function diskXmlFor(volumeId: string, target: string): string {
  return `<disk type='network' device='disk'><target dev='${esc(target)}' bus='virtio'/><serial>${esc(volumeId)}</serial></disk>`;
}

export interface LibvirtVolumesOptions {
  uri: string;
  stateDir: string;
  /** The NC's home: secrets are named after it, so two NCs on one host never share one. */
  owner: string;
  log: Logger;
  /** The live XML of one of this NC's guests, or undefined. */
  ownXml(instanceId: string): Promise<string | undefined>;
  ownGuests(): Promise<{ instanceId: string; xml: string }[]>;
  /** ms to wait for a guest to let go of an unplugged disk (default 20 s). */
  detachTimeoutMs?: number;
}

export class LibvirtVolumes implements HypervisorVolumes {
  private readonly frozen = new Map<string, { kind: sc.SnapshotConsistency; timer: NodeJS.Timeout }>();
  /** The device each attachment was asked for (the XML only has the guest's). */
  private readonly requested = new Map<string, string>();

  constructor(private readonly o: LibvirtVolumesOptions) {}

  private async virsh(...args: string[]): Promise<string> {
    try {
      const { stdout } = await run('virsh', ['-q', '-c', this.o.uri, ...args], { timeout: 60_000 });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`virsh ${args[0]} ${args[1] ?? ''}: ${(e.stderr ?? '').trim() || e.message}`);
    }
  }

  /** Deterministic per (NC, instance, volume): found again after a restart without any state. */
  secretUuid(instanceId: string, volumeId: string): string {
    const h = createHash('sha256').update(`${this.o.owner}\n${instanceId}\n${volumeId}`).digest('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }

  private async withFile<T>(name: string, content: string | Buffer, fn: (file: string) => Promise<T>): Promise<T> {
    const dir = join(this.o.stateDir, 'tmp');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${name}-${process.pid}-${Date.now()}`);
    await writeFile(file, content, { mode: 0o600 });
    try {
      return await fn(file);
    } finally {
      await rm(file, { force: true });
    }
  }

  private async defineSecret(instanceId: string, spec: VolumeAttachmentSpec): Promise<string> {
    const uuid = this.secretUuid(instanceId, spec.volumeId);
    const usage = `mallee/${uuid}`;
    // One secret per attachment (also for RBD, where several attachments share a cephx user): it lives
    // and dies with its attachment, and detach and restart reconcile already clean it by (instance, volume).
    const t = spec.target;
    const usageXml = t.kind === 'rbd' ? `<usage type='ceph'><name>${esc(usage)}</name></usage>` : `<usage type='iscsi'><target>${esc(usage)}</target></usage>`;
    const what = t.kind === 'rbd' ? `cephx key of ${esc(t.user)}` : 'CHAP';
    const xml = `<secret ephemeral='no' private='yes'><uuid>${uuid}</uuid><description>Mallee ${what} for ${esc(spec.volumeId)} on ${esc(instanceId)}</description>${usageXml}</secret>`;
    await this.withFile('secret', xml, (f) => this.virsh('secret-define', f));
    // libvirt keeps a ceph secret as the raw key bytes (the keyring's value is their base64).
    const value = t.kind === 'rbd' ? Buffer.from(t.secret, 'base64') : Buffer.from(t.chapSecret);
    await this.withFile('value', value, (f) => this.virsh('secret-set-value', uuid, '--file', f, '--plain'));
    return usage;
  }

  async undefineSecret(instanceId: string, volumeId: string): Promise<void> {
    await this.virsh('secret-undefine', this.secretUuid(instanceId, volumeId)).catch(() => undefined);
  }

  /** The <disk> of a volume at guest device `dev`, its CHAP secret defined in libvirt (hot-plug, or an EBS-backed guest's definition). */
  async networkDisk(instanceId: string, spec: VolumeAttachmentSpec, dev: string): Promise<string> {
    const usage = await this.defineSecret(instanceId, spec);
    const t = spec.target;
    this.requested.set(`${instanceId}/${spec.volumeId}`, spec.device);
    if (t.kind === 'rbd') {
      // librbd inside QEMU talks to the monitors and OSDs itself: no iSCSI hop, no block device on the host.
      return `<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/>` +
        `<source protocol='rbd' name='${esc(t.pool)}/${esc(t.image)}'>${t.monitors.map((m) => `<host name='${esc(m.host)}' port='${m.port}'/>`).join('')}` +
        `<auth username='${esc(t.user)}'><secret type='ceph' usage='${esc(usage)}'/></auth></source>` +
        `<target dev='${dev}' bus='virtio'/><serial>${esc(spec.volumeId)}</serial></disk>`;
    }
    return `<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>` +
      `<source protocol='iscsi' name='${esc(t.iqn)}/${t.lun}'><host name='${esc(t.portal)}' port='${t.port}'/>` +
      `<auth username='${esc(t.chapUser)}'><secret type='iscsi' usage='${esc(usage)}'/></auth></source>` +
      `<target dev='${dev}' bus='virtio'/><serial>${esc(spec.volumeId)}</serial></disk>`;
  }

  async attachVolume(instanceId: string, spec: VolumeAttachmentSpec): Promise<AttachedVolume> {
    const xml = await this.o.ownXml(instanceId);
    if (!xml) throw new GuestNotFoundError(instanceId);
    const disks = volumeDisks(xml);
    const known = disks.find((d) => d.volumeId === spec.volumeId);
    if (known && (await readFile(this.releasedFile(instanceId, spec.volumeId)).then(() => true, () => false))) {
      throw new WireError('VolumeInUse', `${instanceId} has not yet let go of ${spec.volumeId} since it was force-detached; retry once the guest released it`, 409);
    }
    if (known) return { volumeId: spec.volumeId, device: this.requested.get(`${instanceId}/${spec.volumeId}`) ?? spec.device, guestDevice: known.guestDevice };
    const taken = [...xml.matchAll(/<target dev='([a-z]+)'/g)].map((m) => m[1]!);
    const dev = guestDevice(spec.device, taken);
    const disk = await this.networkDisk(instanceId, spec, dev);
    try {
      await this.withFile('disk', disk, (f) => this.virsh('attach-device', instanceId, f, '--live', '--config'));
    } catch (err) {
      await this.undefineSecret(instanceId, spec.volumeId);
      this.requested.delete(`${instanceId}/${spec.volumeId}`);
      throw err;
    }
    this.o.log.info({ instanceId, volumeId: spec.volumeId, guestDevice: dev, target: targetName(spec.target) }, 'volume hot-plugged');
    return { volumeId: spec.volumeId, device: spec.device, guestDevice: dev };
  }

  async detachVolume(instanceId: string, volumeId: string, opts: { force: boolean }): Promise<boolean> {
    const xml = await this.o.ownXml(instanceId);
    if (!xml) throw new GuestNotFoundError(instanceId);
    const disk = volumeDisks(xml).find((d) => d.volumeId === volumeId);
    if (!disk) {
      await this.undefineSecret(instanceId, volumeId);
      return true;
    }
    await this.withFile('disk', disk.xml, (f) => this.virsh('detach-device', instanceId, f, '--live', '--config')).catch(async (err: Error) => {
      if (!opts.force) throw err;
      this.o.log.warn({ instanceId, volumeId, err: err.message }, 'live unplug refused; dropping the disk from the definition (force)');
      await this.withFile('disk', disk.xml, (f) => this.virsh('detach-device', instanceId, f, '--config')).catch(() => undefined);
    });
    // The guest acknowledges the unplug in its own time: wait for the disk to leave the live XML.
    const deadline = Date.now() + (this.o.detachTimeoutMs ?? 20_000);
    while (Date.now() < deadline) {
      const now = await this.o.ownXml(instanceId);
      if (!now || !volumeDisks(now).some((d) => d.volumeId === volumeId)) {
        await this.undefineSecret(instanceId, volumeId);
        this.requested.delete(`${instanceId}/${volumeId}`);
        this.o.log.info({ instanceId, volumeId }, 'volume unplugged');
        return true;
      }
      await sleep(200);
    }
    this.o.log.warn({ instanceId, volumeId, force: opts.force }, 'the guest did not release the volume in time');
    if (opts.force) {
      // Forced (EC2's --force): the volume leaves this guest now, whatever the guest does with the unplug
      // request it has pending; the sc drops the export, so the guest's path to it is cut. Until the disk
      // is gone from the live domain it must not count as attached (or the volume could go nowhere else on this node).
      await mkdir(join(this.o.stateDir, 'released'), { recursive: true });
      await writeFile(this.releasedFile(instanceId, volumeId), new Date().toISOString());
      await this.undefineSecret(instanceId, volumeId);
      this.requested.delete(`${instanceId}/${volumeId}`);
    }
    return false;
  }

  private releasedFile(instanceId: string, volumeId: string): string {
    return join(this.o.stateDir, 'released', `${instanceId}.${volumeId}`);
  }

  async listVolumes(): Promise<Map<string, AttachedVolume[]>> {
    const out = new Map<string, AttachedVolume[]>();
    const released = new Set(await readdir(join(this.o.stateDir, 'released')).catch(() => [] as string[]));
    const pending = new Set<string>();
    for (const g of await this.o.ownGuests()) {
      const disks = volumeDisks(g.xml).filter((d) => {
        const key = `${g.instanceId}.${d.volumeId}`;
        if (!released.has(key)) return true;
        pending.add(key);
        return false;
      });
      if (disks.length) {
        out.set(g.instanceId, disks.map((d) => ({ volumeId: d.volumeId, device: this.requested.get(`${g.instanceId}/${d.volumeId}`) ?? `/dev/${d.guestDevice}`, guestDevice: d.guestDevice })));
      }
    }
    // A force-detached disk the guest has let go of since (or whose guest is gone): nothing left to hide.
    for (const key of released) if (!pending.has(key)) await rm(join(this.o.stateDir, 'released', key), { force: true });
    return out;
  }

  private frozenFile(instanceId: string): string {
    return join(this.o.stateDir, 'frozen', instanceId);
  }

  async freeze(instanceId: string, timeoutMs: number): Promise<sc.SnapshotConsistency> {
    if (!(await this.o.ownXml(instanceId))) throw new GuestNotFoundError(instanceId);
    await this.unfreeze(instanceId);
    let kind: sc.SnapshotConsistency;
    // Recorded before the guest is held: a restarted NC thaws what a crashed one left frozen.
    await mkdir(join(this.o.stateDir, 'frozen'), { recursive: true });
    await writeFile(this.frozenFile(instanceId), 'filesystem');
    try {
      await this.virsh('domfsfreeze', instanceId);
      kind = 'filesystem';
    } catch (err) {
      // No guest agent configured or answering: hold the guest's I/O by pausing it (crash-consistent).
      this.o.log.info({ instanceId, why: (err as Error).message }, 'no guest agent freeze; pausing the guest for the cut');
      await writeFile(this.frozenFile(instanceId), 'crash');
      await this.virsh('suspend', instanceId);
      kind = 'crash';
    }
    const timer = setTimeout(() => {
      this.o.log.warn({ instanceId, timeoutMs }, 'no thaw arrived in time; thawing the guest');
      void this.unfreeze(instanceId).catch(() => undefined);
    }, timeoutMs);
    timer.unref();
    this.frozen.set(instanceId, { kind, timer });
    return kind;
  }

  async unfreeze(instanceId: string): Promise<void> {
    const f = this.frozen.get(instanceId);
    let kind = f?.kind;
    if (f) clearTimeout(f.timer);
    this.frozen.delete(instanceId);
    if (!kind) kind = (await readFile(this.frozenFile(instanceId), 'utf8').catch(() => '')) as sc.SnapshotConsistency | '' || undefined;
    if (!kind) return;
    if (kind === 'filesystem') await this.virsh('domfsthaw', instanceId).catch((err: Error) => this.o.log.warn({ instanceId, err: err.message }, 'thaw failed'));
    else await this.virsh('resume', instanceId).catch((err: Error) => { if (!/not paused/i.test(err.message)) throw err; });
    await rm(this.frozenFile(instanceId), { force: true });
  }

  /** At start: thaw guests a crashed NC left frozen or paused. */
  async recover(): Promise<void> {
    const names = await readdir(join(this.o.stateDir, 'frozen')).catch(() => [] as string[]);
    for (const id of names) {
      this.o.log.warn({ instanceId: id }, 'thawing a guest left frozen by an earlier run');
      await this.unfreeze(id).catch((err: unknown) => this.o.log.error({ instanceId: id, err }, 'could not thaw'));
    }
  }
}

