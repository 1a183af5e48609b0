// Volumes on the simulated hypervisor: attachments are rows beside the simulated guests (so they
// survive an NC restart as a libvirt domain's disks do); a freeze is a recorded pause.
import { join } from 'node:path';
import { openDatabase, type Db, type Migration } from '@mallee/store';
import type { AttachedVolume, BootVolume, sc } from '@mallee/wire';
import { GuestNotFoundError, targetName, type HypervisorVolumes, type VolumeAttachmentSpec } from '../hypervisor.js';
import { guestDevice } from './volume-devices.js';

const migrations: Migration[] = [{
  id: 1,
  name: 'volumes',
  up: 'CREATE TABLE volumes (instance_id TEXT NOT NULL, volume_id TEXT NOT NULL, device TEXT NOT NULL, guest_device TEXT NOT NULL, iqn TEXT NOT NULL, PRIMARY KEY (instance_id, volume_id))',
}];

export class SimulatedVolumes implements HypervisorVolumes {
  private readonly frozen = new Map<string, NodeJS.Timeout>();
  private opened: Db | undefined;

  /** Attachments live in <dir>/volumes.sqlite, beside (not inside) the guest store. */
  constructor(private readonly dir: string, private readonly alive: (instanceId: string) => boolean) {}

  private db(): Db {
    this.opened ??= openDatabase(join(this.dir, 'volumes.sqlite'), { migrations, synchronous: 'NORMAL' });
    return this.opened;
  }

  close(): void {
    this.opened?.close();
    this.opened = undefined;
  }

  async attachVolume(instanceId: string, spec: VolumeAttachmentSpec): Promise<AttachedVolume> {
    if (!this.alive(instanceId)) throw new GuestNotFoundError(instanceId);
    const existing = (await this.listVolumes()).get(instanceId) ?? [];
    const same = existing.find((v) => v.volumeId === spec.volumeId);
    if (same) return same;
    const dev = guestDevice(spec.device, existing.map((v) => v.guestDevice).concat(['vda', 'vdb', 'vdc', 'vdd']));
    return this.record(instanceId, spec, dev);
  }

  /** An EBS-backed guest's volumes, there from its start: the root as vda, the others as hot-plugged ones. */
  async bootWith(instanceId: string, volumes: readonly BootVolume[]): Promise<void> {
    for (const v of volumes) {
      if (v.root) this.record(instanceId, v, 'vda');
      else await this.attachVolume(instanceId, v);
    }
  }

  private record(instanceId: string, spec: VolumeAttachmentSpec, dev: string): AttachedVolume {
    this.db().prepare('INSERT OR REPLACE INTO volumes (instance_id, volume_id, device, guest_device, iqn) VALUES (?, ?, ?, ?, ?)').run(instanceId, spec.volumeId, spec.device, dev, targetName(spec.target));
    return { volumeId: spec.volumeId, device: spec.device, guestDevice: dev };
  }

  async detachVolume(instanceId: string, volumeId: string): Promise<boolean> {
    this.db().prepare('DELETE FROM volumes WHERE instance_id = ? AND volume_id = ?').run(instanceId, volumeId);
    return true;
  }

  async listVolumes(): Promise<Map<string, AttachedVolume[]>> {
    const out = new Map<string, AttachedVolume[]>();
    const rows = this.db().prepare('SELECT instance_id, volume_id, device, guest_device FROM volumes ORDER BY guest_device').all() as { instance_id: string; volume_id: string; device: string; guest_device: string }[];
    for (const r of rows) {
      // A terminated guest's disks go with it.
      if (!this.alive(r.instance_id)) {
        this.db().prepare('DELETE FROM volumes WHERE instance_id = ?').run(r.instance_id);
        continue;
      }
      out.set(r.instance_id, [...(out.get(r.instance_id) ?? []), { volumeId: r.volume_id, device: r.device, guestDevice: r.guest_device }]);
    }
    return out;
  }

  async freeze(instanceId: string, timeoutMs: number): Promise<sc.SnapshotConsistency> {
    if (!this.alive(instanceId)) throw new GuestNotFoundError(instanceId);
    clearTimeout(this.frozen.get(instanceId));
    const t = setTimeout(() => this.frozen.delete(instanceId), timeoutMs);
    t.unref();
    this.frozen.set(instanceId, t);
    return 'crash';
  }

  async unfreeze(instanceId: string): Promise<void> {
    clearTimeout(this.frozen.get(instanceId));
    this.frozen.delete(instanceId);
  }
}
