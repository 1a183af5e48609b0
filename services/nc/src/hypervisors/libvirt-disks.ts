// The instance store, laid out as Eucalyptus does: per instance a directory under INSTANCE_PATH with
// the root disk (a qcow2 overlay on a cached, shared base image), swap, ephemeral0 (sparse, sized from
// the instance type), the kernel and ramdisk, and the console log. Base images are cached once per NC.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bootsFromVolume, type ImageSource, type InstanceSpec } from '@mallee/wire';
import type { ImageCache } from './image-cache.js';

const run = promisify(execFile);
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Swap every instance with a disk allowance gets (Eucalyptus's default swap partition). */
export const SWAP_MiB = 512;

export { ImageCache, ImageNotFoundError, imageSource } from './image-cache.js';

export interface InstanceDisks {
  dir: string;
  /** The root overlay; absent for an EBS-backed instance. */
  root?: string;
  swap?: string;
  ephemeral?: string;
  /** NoCloud config drive (ISO 9660, label cidata): meta-data and user-data for the guest. */
  configDrive?: string;
  kernel?: string;
  ramdisk?: string;
  consoleLog: string;
}

export function instanceDir(instancePath: string, instanceId: string): string {
  return join(instancePath, instanceId);
}

/** Paths of an instance's files (whether built yet or not). */
export function instanceFiles(dir: string): Required<InstanceDisks> & { consoleEarlier: string } {
  return {
    /** What the guest wrote on the console on the node it was migrated from (before console.log). */
    consoleEarlier: join(dir, 'console-earlier.log'),
    dir,
    root: join(dir, 'root.qcow2'),
    swap: join(dir, 'swap.img'),
    ephemeral: join(dir, 'ephemeral0.img'),
    configDrive: join(dir, 'config-drive.iso'),
    kernel: join(dir, 'kernel'),
    ramdisk: join(dir, 'ramdisk'),
    consoleLog: join(dir, 'console.log'),
  };
}

/** The image's format (qcow2, else raw) and virtual size, in one qemu-img call. */
async function imageInfo(file: string): Promise<{ format: 'raw' | 'qcow2'; virtualBytes: number }> {
  const { stdout } = await run('qemu-img', ['info', '--output=json', file]);
  const info = JSON.parse(stdout) as { format: string; 'virtual-size': number };
  return { format: info.format === 'qcow2' ? 'qcow2' : 'raw', virtualBytes: info['virtual-size'] };
}

async function sparseFile(file: string, bytes: number): Promise<void> {
  await run('truncate', ['-s', String(bytes), file]);
}

/**
 * Build an instance's disks in `dir` (rebuilding anything a crashed earlier attempt left). The disk
 * allowance of the type (diskGiB) is shared as Eucalyptus does: root gets its image's size, swap
 * 512 MiB when it fits, ephemeral0 the rest; a type with no disk gets the root overlay only.
 * The machine image stays pinned in the cache (the overlay's base): the caller releases it once the
 * guest's domain exists (from then on the guest itself keeps it from eviction).
 */
export async function buildInstanceDisks(
  cache: ImageCache,
  dir: string,
  spec: InstanceSpec,
  /** For an incoming migration: swap and ephemeral0 left empty (the source's contents are copied into them). */
  opts: { blank?: boolean } = {},
): Promise<InstanceDisks> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const files = instanceFiles(dir);
  const out: InstanceDisks = { dir, consoleLog: files.consoleLog };
  // An EBS-backed instance's root is its volume (an iSCSI disk the driver adds): no image, no overlay.
  let rootBytes = 0;
  if (!bootsFromVolume(spec)) {
    const base = await cache.get(spec.imageId, { ...(spec.imageSources?.machine ? { source: spec.imageSources.machine } : {}), location: spec.imageLocation });
    const baseInfo = await imageInfo(base);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', baseInfo.format, '-b', base, files.root]);
    out.root = files.root;
    rootBytes = baseInfo.virtualBytes;
  }

  // The other files do not depend on each other: made at once (each is a process or a copy; a launch waits for all).
  const work: Promise<void>[] = [];
  const allowance = spec.vmType.diskGiB * GiB;
  if (allowance > 0) {
    let left = allowance - rootBytes;
    if (left >= SWAP_MiB * MiB) {
      out.swap = files.swap;
      work.push(sparseFile(files.swap, SWAP_MiB * MiB).then(() => (opts.blank ? undefined : run('mkswap', ['-q', files.swap]).then(() => undefined, () => undefined))));
      left -= SWAP_MiB * MiB;
    }
    if (left >= 16 * MiB) {
      out.ephemeral = files.ephemeral;
      // ext4 with lazy init writes a few MiB however large the (sparse) disk is.
      work.push(sparseFile(files.ephemeral, left).then(() => opts.blank ? undefined :
        run('mkfs.ext4', ['-q', '-F', '-L', 'ephemeral0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', files.ephemeral]).then(() => undefined, () => undefined)));
    }
  }

  // In MANAGED modes the cluster's metadata service at 169.254.169.254 is where the guest learns who it is (as in
  // Eucalyptus): no config drive, so cloud-init takes its EC2 datasource. Elsewhere nothing serves metadata.
  if (!metadataServiceServes(spec)) {
    work.push(buildConfigDrive(spec, join(dir, 'config-drive'), files.configDrive).then((made) => {
      if (made) out.configDrive = files.configDrive;
    }));
  }

  // Kernel and ramdisk are copied into the instance directory: the cache may evict them afterwards.
  const copyOut = async (id: string, source: ImageSource | undefined, to: string) => {
    const cached = await cache.get(id, source ? { source } : {});
    try {
      await copyFile(cached, to);
    } finally {
      cache.release(id);
    }
  };
  if (spec.kernelId) {
    out.kernel = files.kernel;
    work.push(copyOut(spec.kernelId, spec.imageSources?.kernel, files.kernel));
    if (spec.ramdiskId) {
      out.ramdisk = files.ramdisk;
      work.push(copyOut(spec.ramdiskId, spec.imageSources?.ramdisk, files.ramdisk));
    }
  }
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return out;
}

/** Bytes the instance's files really take on disk (sparse files count what is allocated). */
export async function allocatedBytes(file: string): Promise<number> {
  try {
    return (await stat(file)).blocks * 512;
  } catch {
    return 0;
  }
}

/** The cc serves this guest's metadata (MANAGED, MANAGED-NOVLAN: the cc DNATs 169.254.169.254 of its network to itself). */
export function metadataServiceServes(spec: InstanceSpec): boolean {
  return spec.network?.mode === 'MANAGED' || spec.network?.mode === 'MANAGED-NOVLAN';
}

/**
 * The instance's identity, key and user data as a NoCloud config drive (what cloud-init reads when
 * there is no metadata service yet): an ISO 9660 image labelled `cidata` with `meta-data` (YAML)
 * and `user-data` (the decoded EC2 user data). Needs genisoimage; without it the guest gets none
 * (false is returned) and still boots.
 */
export async function buildConfigDrive(spec: InstanceSpec, staging: string, iso: string): Promise<boolean> {
  await mkdir(staging, { recursive: true });
  const q = (v: string) => JSON.stringify(v); // a JSON string is a valid YAML scalar
  const meta = [
    `instance-id: ${q(spec.instanceId)}`,
    `local-hostname: ${q(spec.instanceId)}`,
    `ami-id: ${q(spec.imageId)}`,
    `reservation-id: ${q(spec.reservationId)}`,
    `instance-type: ${q(spec.vmType.name)}`,
    `ami-launch-index: ${spec.launchIndex}`,
  ];
  if (spec.publicKey) meta.push('public-keys:', `  - ${q(spec.publicKey.trim())}`);
  await writeFile(join(staging, 'meta-data'), meta.join('\n') + '\n');
  await writeFile(join(staging, 'user-data'), spec.userData ? Buffer.from(spec.userData, 'base64') : Buffer.alloc(0));
  try {
    await run('genisoimage', ['-quiet', '-output', iso, '-volid', 'cidata', '-joliet', '-rock', staging]);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
