// Volumes as LVM logical volumes in SC_LVM_VG (Eucalyptus's LVM block manager): lvcreate/lvremove,
// and a copy-on-write LVM snapshot as the point-in-time cut (instant whatever the volume's size).
// Needs device-mapper in the kernel and an existing volume group; probe() says what is missing.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, open, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { VolumeBackend } from './types.js';

const run = promisify(execFile);

async function lvm(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('lvm', args, { timeout: 120_000 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`lvm ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

export class LvmBackend implements VolumeBackend {
  readonly name = 'lvm';

  constructor(private readonly vg: string) {}

  async probe(): Promise<void> {
    try {
      await access('/dev/mapper/control', constants.F_OK);
    } catch {
      throw new Error('SC_BACKEND=lvm needs device-mapper (/dev/mapper/control is missing: the kernel has no dm_mod); use SC_BACKEND=file');
    }
    await lvm('vgs', '--noheadings', this.vg).catch((err: Error) => {
      throw new Error(`SC_BACKEND=lvm: volume group ${this.vg} (SC_LVM_VG) not usable: ${err.message}; create it with vgcreate ${this.vg} <device>`);
    });
  }

  path(volumeId: string): string {
    return `/dev/${this.vg}/${volumeId}`;
  }

  async exists(volumeId: string): Promise<boolean> {
    return access(this.path(volumeId), constants.F_OK).then(() => true, () => false);
  }

  async create(volumeId: string, bytes: number): Promise<void> {
    if (await this.exists(volumeId)) await this.remove(volumeId);
    await lvm('lvcreate', '-q', '-y', '-Wy', '-Zy', '-L', `${bytes}b`, '-n', volumeId, this.vg);
  }

  async createFilled(volumeId: string, bytes: number, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
    // A partial LV under its own name is removed and refilled by the next attempt (the SC's row says "creating").
    await this.create(volumeId, bytes);
    const fh = await open(this.path(volumeId), 'r+');
    try {
      await fill(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async remove(volumeId: string): Promise<void> {
    if (await this.exists(volumeId)) await lvm('lvremove', '-q', '-f', `${this.vg}/${volumeId}`);
  }

  async cut(volumeId: string, snapshotId: string): Promise<string> {
    const name = `${snapshotId}-cut`;
    // Copy-on-write space for writes made during the upload: 10 % of the origin, at least 64 MiB.
    await lvm('lvcreate', '-q', '-y', '-s', '-l', '10%ORIGIN', '-n', name, `${this.vg}/${volumeId}`);
    return `/dev/${this.vg}/${name}`;
  }

  async allocated(): Promise<undefined> {
    return undefined;
  }

  async dropCut(snapshotId: string): Promise<void> {
    const name = `${snapshotId}-cut`;
    if (await access(`/dev/${this.vg}/${name}`, constants.F_OK).then(() => true, () => false)) await lvm('lvremove', '-q', '-f', `${this.vg}/${name}`);
  }
}
