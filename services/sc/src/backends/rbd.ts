// Volumes as RBD images in a Ceph pool (SC_BACKEND=ceph-rbd), through Ceph's own `rbd` CLI (ceph-common):
// no npm librados binding is kept up well enough to carry volumes. Nodes open the images themselves
// through librbd (rbdTarget: monitors, cephx user and key), so there is no iSCSI export. A snapshot's
// cut is an RBD snapshot, kept after its upload: it is the base of the next snapshot's `rbd export-diff`
// and the parent a volume created from the snapshot is cloned from.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, rm, type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { WireError } from '@mallee/wire';
import { compactZeros } from './rbd-diff.js';
import type { DiffSnapshots, RbdLocation, VolumeBackend } from './types.js';

/** Tries of `rbd rm` while the image still has a watcher: 7.5 s of waiting in all (0.5, 1, … 2.5 s). */
const WATCHED_RM_ATTEMPTS = 6;

const run = promisify(execFile);
const MiB = 1024 * 1024;

export interface RbdOptions {
  conf: string;
  pool: string;
  user: string;
  /** Default /etc/ceph/ceph.client.<user>.keyring. */
  keyring?: string;
  /** Where a restore from a chunked (non-RBD) snapshot is assembled before `rbd import`. */
  tmpDir: string;
}

/** The monitors of a ceph.conf's `mon host` (v1/v2 address vectors, bare hosts), one per host. */
export function monitorsOf(confText: string): { host: string; port: number }[] {
  const line = /^\s*mon[ _]host\s*=\s*(.+)$/m.exec(confText)?.[1];
  if (!line) return [];
  const out = new Map<string, number>();
  for (const raw of line.split(/[\s,;[\]]+/).filter(Boolean)) {
    const v2 = raw.startsWith('v2:');
    const addr = raw.replace(/^v[12]:/, '').replace(/\/\d+$/, '');
    const m = /^(.*):(\d+)$/.exec(addr);
    const host = m ? m[1]! : addr;
    if (!out.has(host)) out.set(host, m ? Number(m[2]) : v2 ? 3300 : 6789);
  }
  return [...out].map(([host, port]) => ({ host, port }));
}

/** The base64 key of `client.<user>` in a keyring file. */
export function keyOf(keyringText: string, user: string): string | undefined {
  const section = keyringText.split(/^\s*\[/m).find((s) => s.startsWith(`client.${user}]`));
  return section ? /^\s*key\s*=\s*(\S+)/m.exec(section)?.[1] : undefined;
}

export class RbdBackend implements VolumeBackend, DiffSnapshots {
  readonly name = 'ceph-rbd';
  readonly diffs: DiffSnapshots = this;
  private readonly keyring: string;

  /** `prefix` (the SC's own) keeps the images of several SCs sharing a pool apart. */
  constructor(private readonly o: RbdOptions, private readonly prefix: string) {
    this.keyring = o.keyring || `/etc/ceph/ceph.client.${o.user}.keyring`;
  }

  private args(...args: string[]): string[] {
    return ['-c', this.o.conf, '--id', this.o.user, '--keyring', this.keyring, ...args];
  }

  private async rbd(...args: string[]): Promise<string> {
    try {
      const { stdout } = await run('rbd', this.args(...args), { timeout: 600_000, maxBuffer: 64 << 20 });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`rbd ${args.join(' ')}: ${(e.stderr ?? '').trim().split('\n').pop() || e.message}`);
    }
  }

  image(volumeId: string): string {
    return `${this.prefix}.${volumeId}`;
  }

  private spec(volumeId: string): string {
    return `${this.o.pool}/${this.image(volumeId)}`;
  }

  async probe(): Promise<void> {
    try {
      readFileSync(this.o.conf);
    } catch {
      throw new Error(`SC_BACKEND=ceph-rbd: cannot read ${this.o.conf} (SC_CEPH_CONF)`);
    }
    if (!this.secret()) throw new Error(`SC_BACKEND=ceph-rbd: no key of client.${this.o.user} in ${this.keyring} (SC_CEPH_KEYRING)`);
    if (!this.monitors().length) throw new Error(`SC_BACKEND=ceph-rbd: no "mon host" in ${this.o.conf}`);
    await this.rbd('ls', '-p', this.o.pool).catch((err: Error) => {
      throw new Error(`SC_BACKEND=ceph-rbd: pool ${this.o.pool} (SC_CEPH_POOL) not usable as client.${this.o.user}: ${err.message}`);
    });
    await mkdir(this.o.tmpDir, { recursive: true, mode: 0o700 });
  }

  monitors(): { host: string; port: number }[] {
    return monitorsOf(readFileSync(this.o.conf, 'utf8'));
  }

  secret(): string | undefined {
    try {
      return keyOf(readFileSync(this.keyring, 'utf8'), this.o.user);
    } catch {
      return undefined;
    }
  }

  /** What a node needs to open the volume (the key in the clear: the caller seals it). */
  target(volumeId: string): { kind: 'rbd'; pool: string; image: string; monitors: { host: string; port: number }[]; user: string; secret: string } {
    const secret = this.secret();
    if (!secret) throw new Error(`no key of client.${this.o.user} in ${this.keyring}`);
    return { kind: 'rbd', pool: this.o.pool, image: this.image(volumeId), monitors: this.monitors(), user: this.o.user, secret };
  }

  path(volumeId: string): string {
    return `rbd:${this.spec(volumeId)}`;
  }

  async exists(volumeId: string): Promise<boolean> {
    return this.rbd('info', this.spec(volumeId)).then(() => true, () => false);
  }

  async create(volumeId: string, bytes: number): Promise<void> {
    if (await this.exists(volumeId)) await this.remove(volumeId);
    await this.rbd('create', '--size', `${Math.ceil(bytes / MiB)}M`, this.spec(volumeId));
  }

  async createFilled(volumeId: string, bytes: number, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
    // A chunked snapshot (of a file or LVM volume) restored here: assembled in a sparse file, imported
    // sparse (rbd import skips zeros) under a partial name, renamed once complete.
    const tmp = join(this.o.tmpDir, `${volumeId}.img`);
    await rm(tmp, { force: true });
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.truncate(bytes);
      await fill(fh);
    } finally {
      await fh.close();
    }
    try {
      await this.removeImage(`${this.image(volumeId)}.partial`);
      await this.rbd('import', '--image-format', '2', tmp, `${this.spec(volumeId)}.partial`);
      if (await this.exists(volumeId)) await this.remove(volumeId);
      await this.rbd('rename', `${this.spec(volumeId)}.partial`, this.spec(volumeId));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async remove(volumeId: string): Promise<void> {
    await this.removeImage(`${this.image(volumeId)}.partial`);
    await this.removeImage(this.image(volumeId));
  }

  private async snaps(image: string): Promise<{ name: string; protected: string }[]> {
    return JSON.parse(await this.rbd('snap', 'ls', '--format', 'json', `${this.o.pool}/${image}`)) as { name: string; protected: string }[];
  }

  /** Removes an image with its snapshots; volumes cloned from them are flattened first (they keep their data). */
  private async removeImage(image: string): Promise<void> {
    let snaps: { name: string; protected: string }[];
    try {
      snaps = await this.snaps(image);
    } catch (err) {
      if (/No such file|does not exist|\(2\)/.test((err as Error).message)) return;
      throw err;
    }
    for (const s of snaps) await this.removeSnap(image, s.name, s.protected === 'true');
    // A client that closed the image a moment ago (QEMU after a detach) can still show as its watcher for a
    // little while: ask again for a few seconds before failing (the clc asks again at its next poll).
    for (let attempt = 1; ; attempt++) {
      try {
        await this.rbd('rm', '--no-progress', `${this.o.pool}/${image}`);
        return;
      } catch (err) {
        if (!/still open|watchers/.test((err as Error).message)) throw err;
        if (attempt >= WATCHED_RM_ATTEMPTS) {
          const status = await this.rbd('status', '--format', 'json', `${this.o.pool}/${image}`).catch(() => '');
          throw new WireError('VolumeInUse', `RBD image ${this.o.pool}/${image} is still open by a client (rbd status: ${status.trim() || 'unknown'}); ask again once it has closed it`, 409);
        }
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  private async removeSnap(image: string, snap: string, isProtected: boolean): Promise<void> {
    const at = `${this.o.pool}/${image}@${snap}`;
    if (isProtected) {
      const children = JSON.parse(await this.rbd('children', '--format', 'json', at)) as { pool: string; image: string }[];
      for (const c of children) await this.rbd('flatten', '--no-progress', `${c.pool}/${c.image}`);
      await this.rbd('snap', 'unprotect', at);
    }
    await this.rbd('snap', 'rm', '--no-progress', at);
  }

  async cut(volumeId: string, snapshotId: string): Promise<string> {
    const at = `${this.spec(volumeId)}@${snapshotId}`;
    if (!(await this.snaps(this.image(volumeId))).some((s) => s.name === snapshotId)) await this.rbd('snap', 'create', at);
    return at;
  }

  async allocated(): Promise<undefined> {
    return undefined;
  }

  /** Only when the snapshot goes (the cut outlives the upload here): the RBD snapshot, clones of it flattened. */
  async dropCut(snapshotId: string, path: string): Promise<void> {
    const loc = this.parseCut(path);
    if (!loc) return;
    let snaps: { name: string; protected: string }[];
    try {
      snaps = await this.snaps(loc.image);
    } catch {
      return; // the volume (and its snapshots) is gone
    }
    const s = snaps.find((x) => x.name === snapshotId);
    if (s) await this.removeSnap(loc.image, s.name, s.protected === 'true');
  }

  private parseCut(path: string): RbdLocation | undefined {
    const m = /^([^/]+)\/([^@]+)@(.+)$/.exec(path);
    return m ? { pool: m[1]!, image: m[2]!, snap: m[3]! } : undefined;
  }

  location(path: string): RbdLocation {
    const loc = this.parseCut(path);
    if (!loc) throw new Error(`not an RBD snapshot: ${path}`);
    return loc;
  }

  async hasCut(path: string): Promise<boolean> {
    const loc = this.parseCut(path);
    if (!loc || loc.pool !== this.o.pool) return false;
    return this.snaps(loc.image).then((s) => s.some((x) => x.name === loc.snap), () => false);
  }

  /** The bytes `rbd diff` reports changed in cut `path` since `fromSnap` (for progress). */
  async changedBytes(path: string, fromSnap?: string): Promise<number> {
    const extents = JSON.parse(await this.rbd('diff', '--format', 'json', ...(fromSnap ? ['--from-snap', fromSnap] : []), path)) as { length: number }[];
    return extents.reduce((a, e) => a + e.length, 0);
  }

  /** export-diff with the zeros of its data records as zero records (rbd-diff.ts says why). */
  exportDiff(path: string, fromSnap?: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
    return compactZeros(this.rawExportDiff(path, fromSnap, signal));
  }

  private async *rawExportDiff(path: string, fromSnap?: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const child = spawn('rbd', this.args('export-diff', '--no-progress', ...(fromSnap ? ['--from-snap', fromSnap] : []), path, '-'), { stdio: ['ignore', 'pipe', 'pipe'], signal });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.on('error', () => undefined);
    try {
      for await (const piece of child.stdout) yield piece as Buffer;
      const code = await exited;
      if (code !== 0) throw new Error(`rbd export-diff ${path}: ${stderr.trim() || `exit ${code}`}`);
    } finally {
      if (child.exitCode === null) child.kill();
    }
  }

  async restoreFrom(volumeId: string, bytes: number, source: RbdLocation, segments: AsyncIterable<Buffer>[]): Promise<'clone' | 'import'> {
    if (await this.exists(volumeId)) await this.remove(volumeId);
    // The snapshot is still an RBD snapshot in this pool: a copy-on-write clone, instant whatever the size.
    if (source.pool === this.o.pool && (await this.hasCut(`${source.pool}/${source.image}@${source.snap}`))) {
      const at = `${source.pool}/${source.image}@${source.snap}`;
      const snap = (await this.snaps(source.image)).find((s) => s.name === source.snap);
      if (snap && snap.protected !== 'true') await this.rbd('snap', 'protect', at);
      await this.rbd('clone', at, this.spec(volumeId));
      await this.rbd('resize', '--no-progress', '--size', `${Math.ceil(bytes / MiB)}M`, this.spec(volumeId));
      return 'clone';
    }
    // Else the diffs from Walrus, oldest first, into a new image under a partial name.
    const partial = `${this.image(volumeId)}.partial`;
    await this.removeImage(partial);
    await this.rbd('create', '--size', `${Math.ceil(bytes / MiB)}M`, `${this.o.pool}/${partial}`);
    for (const seg of segments) await this.importDiff(`${this.o.pool}/${partial}`, seg);
    // import-diff sets the size the volume had at the snapshot: the new volume may be larger.
    await this.rbd('resize', '--no-progress', '--size', `${Math.ceil(bytes / MiB)}M`, `${this.o.pool}/${partial}`);
    for (const s of await this.snaps(partial)) await this.rbd('snap', 'rm', '--no-progress', `${this.o.pool}/${partial}@${s.name}`);
    await this.rbd('rename', `${this.o.pool}/${partial}`, this.spec(volumeId));
    return 'import';
  }

  private async importDiff(spec: string, data: AsyncIterable<Buffer>): Promise<void> {
    const child = spawn('rbd', this.args('import-diff', '--no-progress', '-', spec), { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on('close', resolve);
      child.on('error', reject);
    });
    child.stdin.on('error', () => undefined);
    try {
      for await (const buf of data) {
        if (!child.stdin.write(buf)) await new Promise<void>((r) => child.stdin.once('drain', () => r()));
      }
      child.stdin.end();
    } catch (err) {
      child.kill();
      await exited.catch(() => undefined);
      throw err;
    }
    const code = await exited;
    if (code !== 0) throw new Error(`rbd import-diff into ${spec}: ${stderr.trim() || `exit ${code}`}`);
  }

  /** Every image of this SC in the pool (tests, and operators looking for leftovers). */
  async images(): Promise<string[]> {
    return (JSON.parse(await this.rbd('ls', '--format', 'json', this.o.pool)) as string[]).filter((n) => n.startsWith(`${this.prefix}.`));
  }
}
