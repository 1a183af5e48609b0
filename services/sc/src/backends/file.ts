// Volumes as sparse files in <home>/sc/volumes/<vol>.img: created by ftruncate (no blocks until
// written), cut for snapshots with `cp --sparse=always --reflink=auto` (a reflink where the
// filesystem has them, else a copy of the allocated extents only).
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { VolumeBackend } from './types.js';

const run = promisify(execFile);

export class FileBackend implements VolumeBackend {
  readonly name = 'file';
  private readonly volumes: string;
  private readonly cuts: string;

  constructor(dir: string) {
    this.volumes = join(dir, 'volumes');
    this.cuts = join(dir, 'cuts');
  }

  async probe(): Promise<void> {
    await mkdir(this.volumes, { recursive: true, mode: 0o700 });
    await mkdir(this.cuts, { recursive: true, mode: 0o700 });
  }

  path(volumeId: string): string {
    return join(this.volumes, `${volumeId}.img`);
  }

  async exists(volumeId: string): Promise<boolean> {
    return access(this.path(volumeId), constants.F_OK).then(() => true, () => false);
  }

  async create(volumeId: string, bytes: number): Promise<void> {
    await this.createFilled(volumeId, bytes, async () => {});
  }

  async createFilled(volumeId: string, bytes: number, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
    const tmp = `${this.path(volumeId)}.partial`;
    await rm(tmp, { force: true });
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.truncate(bytes);
      await fill(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path(volumeId));
    await syncDir(this.volumes);
  }

  async remove(volumeId: string): Promise<void> {
    await rm(this.path(volumeId), { force: true });
    await rm(`${this.path(volumeId)}.partial`, { force: true });
  }

  async cut(volumeId: string, snapshotId: string): Promise<string> {
    const dest = join(this.cuts, `${snapshotId}.img`);
    try {
      await run('cp', ['--sparse=always', '--reflink=auto', this.path(volumeId), dest]);
    } catch (err) {
      // A copy cut short (the disk filled up) must not keep the space it took.
      await rm(dest, { force: true });
      throw err;
    }
    return dest;
  }

  /** The file's extents (FIEMAP through e2fsprogs' filefrag): reading a hole costs as much as zero-filling it. */
  async allocated(path: string): Promise<[number, number][] | undefined> {
    try {
      const { stdout } = await run('filefrag', ['-s', '-e', '-b1024', path], { maxBuffer: 64 << 20 });
      const out: [number, number][] = [];
      for (const m of stdout.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):/gm)) out.push([Number(m[1]) * 1024, (Number(m[2]) + 1) * 1024]);
      return out;
    } catch {
      return undefined;
    }
  }

  async dropCut(_snapshotId: string, path: string): Promise<void> {
    await rm(path, { force: true });
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
