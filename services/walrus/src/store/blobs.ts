// Object bytes on disk, named by random ids (never by keys). A blob is written to tmp/, fsynced,
// renamed into data/xx/ and the directory fsynced before anyone may point at it, so a crash leaves
// either a whole blob or a temp file that the next start removes.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { S3Error } from '@mallee/aws-protocol';

export interface WrittenBlob {
  id: string;
  size: number;
  md5: Buffer;
  /** Only when asked for (a signed payload hash to check): hashing costs a pass over every byte. */
  sha256?: string;
}

export interface BlobLimits {
  maxSize?: number;
  /** Also compute the SHA-256 (to check a client's x-amz-content-sha256). */
  sha256?: boolean;
}

/** Counts and hashes bytes on their way to storage; fails once more than maxSize bytes arrive. */
export class Digester extends Transform {
  size = 0;
  readonly md5: Hash = createHash('md5');
  readonly sha256: Hash | undefined;
  constructor(private readonly maxSize: number, sha256: boolean) {
    super();
    this.sha256 = sha256 ? createHash('sha256') : undefined;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.maxSize) return cb(new S3Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed object size.', { MaxSizeAllowed: String(this.maxSize) }));
    this.md5.update(chunk);
    this.sha256?.update(chunk);
    cb(null, chunk);
  }
}

export const newBlobId = () => randomBytes(16).toString('hex');

/** Where object bytes live: files (BlobStore) or an S3 store such as Ceph's radosgw (S3Blobs). */
export interface Blobs {
  /** Streams sources in order into one new durable blob. */
  write(sources: Readable | (() => Readable)[], limits?: BlobLimits): Promise<WrittenBlob>;
  /** The blob's bytes, whole or a range; the read is under way before this returns. */
  open(id: string, range?: { start: number; end: number }): Readable;
  /** Removes in the background; a failure only leaves garbage a later sweep collects. */
  discard(id: string): void;
  remove(id: string): Promise<void>;
  /** Start-up: removes what interrupted writes left (the count, when known at once). */
  cleanTemp(): number;
  collectGarbage(isReferenced: (id: string) => boolean): number;
}

export class BlobStore implements Blobs {
  readonly dataDir: string;
  readonly tmpDir: string;

  constructor(root: string) {
    this.dataDir = join(root, 'data');
    this.tmpDir = join(root, 'tmp');
    mkdirSync(this.tmpDir, { recursive: true });
    for (let i = 0; i < 256; i++) mkdirSync(join(this.dataDir, i.toString(16).padStart(2, '0')), { recursive: true });
  }

  pathOf(id: string): string {
    if (!/^[0-9a-f]{32}$/.test(id)) throw new Error(`bad blob id ${id}`);
    return join(this.dataDir, id.slice(0, 2), id);
  }

  /** Removes temp files a crash left behind (none are referenced by metadata). */
  cleanTemp(): number {
    let n = 0;
    for (const name of readdirSync(this.tmpDir)) {
      rmSync(join(this.tmpDir, name), { force: true, recursive: true });
      n++;
    }
    return n;
  }

  /** Removes blobs no metadata row points at (written before a crash, or replaced and not yet unlinked). */
  collectGarbage(isReferenced: (id: string) => boolean): number {
    let n = 0;
    for (const dir of readdirSync(this.dataDir)) {
      for (const id of readdirSync(join(this.dataDir, dir))) {
        if (!isReferenced(id)) {
          rmSync(join(this.dataDir, dir, id), { force: true });
          n++;
        }
      }
    }
    return n;
  }

  /** Streams sources in order into one new durable blob. */
  async write(sources: Readable | (() => Readable)[], limits: BlobLimits = {}): Promise<WrittenBlob> {
    const id = newBlobId();
    const tmp = join(this.tmpDir, id);
    const fh = await open(tmp, 'wx', 0o600);
    const digest = new Digester(limits.maxSize ?? Number.MAX_SAFE_INTEGER, limits.sha256 ?? false);
    let ok = false;
    try {
      const out = fileSink(fh);
      const source = Array.isArray(sources)
        ? async function* concat() {
            for (const open of sources) yield* open();
          }
        : sources;
      await pipeline(source, digest, out);
      await fh.sync();
      ok = true;
    } finally {
      await fh.close().catch(() => undefined);
      if (!ok) await unlink(tmp).catch(() => undefined);
    }
    const final = this.pathOf(id);
    await rename(tmp, final);
    await syncDir(join(this.dataDir, id.slice(0, 2)));
    return { id, size: digest.size, md5: digest.md5.digest(), ...(digest.sha256 ? { sha256: digest.sha256.digest('hex') } : {}) };
  }

  /** Opens at once (not on the next tick), so a concurrent overwrite unlinking the blob cannot cut the read short. */
  open(id: string, range?: { start: number; end: number }): Readable {
    const fd = openSync(this.pathOf(id), 'r');
    return createReadStream('', { fd, autoClose: true, highWaterMark: 1 << 20, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  /** Unlinks in the background; a failure only leaves garbage that the next start collects. */
  discard(id: string): void {
    this.remove(id).catch(() => undefined);
  }

  async remove(id: string): Promise<void> {
    await unlink(this.pathOf(id)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
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

/** Writes into an open file handle and leaves it open (for fsync); partial writes are retried. */
function fileSink(fh: FileHandle): Writable {
  const writeAll = async (buf: Buffer) => {
    let off = 0;
    while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
  };
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      writeAll(chunk).then(() => cb(), cb);
    },
    writev(chunks, cb) {
      writeAll(Buffer.concat(chunks.map((c) => c.chunk as Buffer))).then(() => cb(), cb);
    },
  });
}
