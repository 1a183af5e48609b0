// Where a volume's bytes live (Eucalyptus's block managers): sparse files, LVM logical volumes or RBD images.
// The rest of the SC talks only to this interface.
import type { FileHandle } from 'node:fs/promises';

export interface VolumeBackend {
  /** "file", "lvm" or "ceph-rbd". */
  readonly name: string;
  /** Backends whose volumes nodes open themselves (RBD): snapshots as incremental diffs, no iSCSI export. */
  readonly diffs?: DiffSnapshots;
  /** Check the host can serve this backend (LVM: the volume group exists); throws with what is missing. */
  probe(): Promise<void>;
  /** The block device or file tgtd exports for the volume. */
  path(volumeId: string): string;
  exists(volumeId: string): Promise<boolean>;
  /** A new, zeroed volume of `bytes`; replaces a leftover of a crashed earlier attempt. */
  create(volumeId: string, bytes: number): Promise<void>;
  /**
   * Fill a new volume by `write` (restore from a snapshot) and make it appear only once complete:
   * a crash in between leaves no half-written volume under the volume's own name.
   */
  createFilled(volumeId: string, bytes: number, fill: (fh: FileHandle) => Promise<void>): Promise<void>;
  remove(volumeId: string): Promise<void>;
  /**
   * The point-in-time copy a snapshot is uploaded from, made while the guest's I/O is held: a
   * sparse-aware (or reflink) copy of the file, or an LVM snapshot. Returns what to read.
   */
  cut(volumeId: string, snapshotId: string): Promise<string>;
  /**
   * The byte ranges of a cut that may hold data ([start, end) pairs); everything else reads as zeros.
   * Undefined when the backend cannot tell (then every chunk is read).
   */
  allocated(path: string): Promise<[number, number][] | undefined>;
  /** Drop the copy once its upload is done (or abandoned). */
  dropCut(snapshotId: string, path: string): Promise<void>;
}

/** An RBD snapshot: where a volume may be cloned from. */
export interface RbdLocation { pool: string; image: string; snap: string }

/** RBD: the cut outlives its upload (the next diff's base, a clone's parent); uploads are `rbd export-diff` streams. */
export interface DiffSnapshots {
  /** What a node needs to open the volume, the cephx key in the clear (the SC seals it). */
  target(volumeId: string): { kind: 'rbd'; pool: string; image: string; monitors: { host: string; port: number }[]; user: string; secret: string };
  /** The cut `path` (as cut() returned it) still exists. */
  hasCut(path: string): Promise<boolean>;
  location(path: string): RbdLocation;
  changedBytes(path: string, fromSnap?: string): Promise<number>;
  /** The export-diff stream of cut `path` since the volume's snapshot `fromSnap` (everything without one). */
  exportDiff(path: string, fromSnap?: string, signal?: AbortSignal): AsyncGenerator<Buffer>;
  /** A new volume: a clone of `source` where it is still here, else the segments (export-diff streams, oldest first) imported. */
  restoreFrom(volumeId: string, bytes: number, source: RbdLocation, segments: AsyncIterable<Buffer>[]): Promise<'clone' | 'import'>;
}
