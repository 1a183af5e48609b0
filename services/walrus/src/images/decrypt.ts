// Walrus's cache of decrypted bundles: the image a bundle stored here turns back into (verified
// signature, parts and digests, unwrapped with the cloud key; @mallee/image does the unbundling),
// kept as a durable file (temp, fsync, rename) with its size and SHA-256 beside it, keyed by the
// manifest's version and ETag, so a replaced manifest is a different image.
//
// Bounded (walrus.storagemaxcachesizeinmb, Eucalyptus's property): before an image is built, the least
// recently used images are evicted until it fits — never one being served or built. When everything
// else is in use the cache goes over its bound rather than refuse an image (and says so in the log).
//
// Pinned reads: a launch's URL names the SHA-256 the clc recorded at registration, and only that
// image is answered — from the cache even when the bundle was replaced since, else rebuilt from the
// bundle if it still turns into that image, else refused (PreconditionFailed): an image id never
// changes what it boots.
import { createHash, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { open, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { S3Error } from '@mallee/aws-protocol';
import { ManifestError, parseManifest, unbundle, type BundleManifest } from '@mallee/image';
import type { ObjectInfo, ObjectStore } from '../store/types.js';

export const invalidManifest = (why: string) => new S3Error('InvalidManifest', `The image bundle is not valid: ${why}`);

async function readSmall(stream: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += (c as Buffer).length;
    if (n > limit) {
      stream.destroy();
      throw invalidManifest('the manifest is larger than 1 MiB');
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface DecryptedImage {
  path: string;
  bytes: number;
  sha256: string;
  /** Who signed the manifest (from verify). */
  signedBy: string;
}

/** A decrypted image held for reading: it is not evicted until release(). */
export interface HeldImage extends DecryptedImage {
  release(): void;
}

export interface DecryptedImageCacheOptions {
  store: ObjectStore;
  /** Directory for decrypted images (same filesystem as its temp files). */
  dir: string;
  /** The cloud's private key (PEM or KeyObject), read when needed; undefined = not installed. */
  cloudKey: () => KeyObject | string | undefined;
  /** Checks the manifest's signature (throws S3Error when it does not verify); returns who signed. */
  verify: (manifest: BundleManifest) => Promise<string>;
  /** The bound on the decrypted images kept, in bytes, read at each build (default: unbounded). */
  maxBytes?: () => number;
  log?: Logger;
}

export interface DecryptedImageCacheStats extends Record<string, number> {
  entries: number;
  bytes: number;
  builds: number;
  hits: number;
  evictions: number;
}

interface Meta { bytes: number; sha256: string; signedBy: string; bucket: string; manifestKey: string }
interface Entry extends Meta { id: string; used: number }

export class DecryptedImageCache {
  private readonly building = new Map<string, Promise<Entry>>();
  private readonly entries = new Map<string, Entry>();
  /** Images being read (GetDecryptedImage streams), with how many readers each. */
  private readonly held = new Map<string, number>();
  private readonly counters = { builds: 0, hits: 0, evictions: 0 };

  constructor(private readonly opts: DecryptedImageCacheOptions) {
    mkdirSync(join(opts.dir, 'tmp'), { recursive: true });
    for (const f of readdirSync(join(opts.dir, 'tmp'))) rmSync(join(opts.dir, 'tmp', f), { force: true });
    this.load();
  }

  /** The index from the directory: an image with its description; halves of either are removed. */
  private load(): void {
    const names = new Set(readdirSync(this.opts.dir));
    for (const f of names) {
      const m = /^([0-9a-f]{64})\.(img|json)$/.exec(f);
      if (!m) continue;
      const id = m[1]!;
      const img = join(this.opts.dir, `${id}.img`);
      const json = join(this.opts.dir, `${id}.json`);
      if (m[2] === 'json' && names.has(`${id}.img`)) {
        try {
          const meta = JSON.parse(readFileSync(json, 'utf8')) as Meta;
          this.entries.set(id, { ...meta, id, used: statSync(img).mtimeMs });
          continue;
        } catch {
          // unreadable description: built again on use
        }
      }
      // An image without its description (an interrupted build, or an older Walrus) is built again.
      if (!this.entries.has(id)) {
        rmSync(img, { force: true });
        rmSync(json, { force: true });
      }
    }
  }

  hasCloudKey(): boolean {
    return this.opts.cloudKey() !== undefined;
  }

  /** How many decrypted images are kept. */
  count(): number {
    return this.entries.size;
  }

  stats(): DecryptedImageCacheStats {
    let bytes = 0;
    for (const e of this.entries.values()) bytes += e.bytes;
    return { entries: this.entries.size, bytes, ...this.counters };
  }

  /** The manifest object stored now at bucket/key (NoSuchBucket / NoSuchKey when there is none). */
  manifestInfo(bucket: string, manifestKey: string): ObjectInfo {
    return this.opts.store.getObjectInfo(bucket, manifestKey);
  }

  /** That manifest object, parsed (InvalidManifest when it is not one). */
  async manifest(info: ObjectInfo): Promise<BundleManifest> {
    const store = this.opts.store;
    const xml = await readSmall(store.openObject(info), 1024 * 1024);
    try {
      return parseManifest(xml, { fileName: info.key });
    } catch (e) {
      if (e instanceof ManifestError) throw invalidManifest(e.message);
      throw e;
    }
  }

  private idOf(info: ObjectInfo): string {
    return createHash('sha256').update(`${info.bucket}\0${info.key}\0${info.versionId}\0${info.etag}`).digest('hex');
  }

  /**
   * The decrypted image of the bundle at bucket/key (or of exactly the manifest version `manifest`),
   * built and verified on first use, held until release(). With `sha256`, only that image is answered.
   */
  async open(bucket: string, manifestKey: string, opts: { sha256?: string; manifest?: ObjectInfo } = {}): Promise<HeldImage> {
    let entry: Entry | undefined;
    if (opts.sha256 && !opts.manifest) {
      // The registered image, wherever the bundle has gone since: a verified decryption of it is kept.
      for (const e of this.entries.values()) if (e.bucket === bucket && e.manifestKey === manifestKey && e.sha256 === opts.sha256) entry = e;
    }
    if (!entry) {
      const info = opts.manifest ?? this.manifestInfo(bucket, manifestKey);
      const id = this.idOf(info);
      entry = this.entries.get(id);
      if (!entry) {
        let job = this.building.get(id);
        if (!job) {
          job = this.build(info, id).finally(() => this.building.delete(id));
          this.building.set(id, job);
        }
        entry = await job;
      } else this.counters.hits++;
    } else this.counters.hits++;
    if (opts.sha256 && entry.sha256 !== opts.sha256) {
      throw new S3Error('PreconditionFailed', `The bundle ${bucket}/${manifestKey} changed since the image was registered: it now decrypts to an image with SHA-256 ${entry.sha256}, not ${opts.sha256}. Register the new bundle as a new image.`, {}, 412);
    }
    return this.hold(entry);
  }

  /** The decrypted image, not held (CheckImage only needs its description). */
  async get(bucket: string, manifestKey: string, opts: { sha256?: string; manifest?: ObjectInfo } = {}): Promise<DecryptedImage> {
    const held = await this.open(bucket, manifestKey, opts);
    held.release();
    const { release: _release, ...image } = held;
    return image;
  }

  private hold(e: Entry): HeldImage {
    this.held.set(e.id, (this.held.get(e.id) ?? 0) + 1);
    const path = join(this.opts.dir, `${e.id}.img`);
    const now = Date.now();
    e.used = now;
    try {
      utimesSync(path, now / 1000, now / 1000); // the LRU order survives a restart
    } catch {
      // evicted by a flush meanwhile: the open stream still reads it
    }
    let released = false;
    return {
      path, bytes: e.bytes, sha256: e.sha256, signedBy: e.signedBy,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.held.get(e.id) ?? 1) - 1;
        if (n > 0) this.held.set(e.id, n);
        else this.held.delete(e.id);
      },
    };
  }

  /** Forgets the decrypted image of every version of bucket/key. */
  flush(bucket: string, manifestKey: string): number {
    let n = 0;
    for (const e of [...this.entries.values()]) {
      if (e.bucket !== bucket || e.manifestKey !== manifestKey) continue;
      this.remove(e);
      n++;
    }
    return n;
  }

  private remove(e: Entry): void {
    this.entries.delete(e.id);
    // The description first: an image file without one is never served, and is cleaned at start.
    rmSync(join(this.opts.dir, `${e.id}.json`), { force: true });
    rmSync(join(this.opts.dir, `${e.id}.img`), { force: true });
  }

  /** Evicts least recently used images nobody reads until `incoming` more bytes fit under the bound. */
  private makeRoom(incoming: number, keep?: string): void {
    const max = this.opts.maxBytes?.();
    if (max === undefined) return;
    let total = 0;
    for (const e of this.entries.values()) if (e.id !== keep) total += e.bytes;
    if (total + incoming <= max) return;
    for (const e of [...this.entries.values()].sort((a, b) => a.used - b.used)) {
      if (total + incoming <= max) break;
      if (e.id === keep || this.held.has(e.id) || this.building.has(e.id)) continue;
      this.remove(e);
      total -= e.bytes;
      this.counters.evictions++;
      this.opts.log?.info({ bucket: e.bucket, manifestKey: e.manifestKey, bytes: e.bytes }, 'decrypted image evicted from the cache (least recently used)');
    }
    if (total + incoming > max) {
      this.opts.log?.warn({ incoming, cachedBytes: total, maxBytes: max }, 'decrypted-image cache over walrus.storagemaxcachesizeinmb: every other image is being served or built');
    }
  }

  private async build(info: ObjectInfo, id: string): Promise<Entry> {
    const key = this.opts.cloudKey();
    if (key === undefined) throw new S3Error('ServiceUnavailable', 'The cloud private key is not installed on this Walrus (keys/cloud-pk.pem); images cannot be decrypted.');
    const store = this.opts.store;
    const { bucket, key: manifestKey } = info;
    const manifest = await this.manifest(info);
    const signedBy = await this.opts.verify(manifest);
    // The manifest's (signed) image size: room is made before the image is written.
    this.makeRoom(manifest.imageSize ?? 0);
    const dir = posix.dirname(manifestKey);
    const partKey = (filename: string) => (dir === '.' ? filename : `${dir}/${filename}`);
    const tmp = join(this.opts.dir, 'tmp', `${id}.${process.pid}.${Date.now()}`);
    const fh = await open(tmp, 'wx', 0o600);
    let ok = false;
    let meta: Meta;
    try {
      const sink = new Writable({
        highWaterMark: 1 << 20,
        write(chunk: Buffer, _e, cb) {
          fh.write(chunk).then(() => cb(), cb);
        },
      });
      let result;
      try {
        result = await unbundle({
          manifest,
          privateKey: key,
          openPart: (p) => {
            let part;
            try {
              part = store.getObjectInfo(bucket, partKey(p.filename));
            } catch {
              throw new ManifestError(`part ${p.filename} is missing`);
            }
            return store.openObject(part);
          },
          sink,
        });
      } catch (e) {
        if (e instanceof ManifestError) throw invalidManifest(e.message);
        throw e;
      }
      await fh.sync();
      meta = { bytes: result.bytes, sha256: result.sha256, signedBy, bucket, manifestKey };
      await writeFile(join(this.opts.dir, `${id}.json`), JSON.stringify(meta), { flush: true });
      ok = true;
    } finally {
      await fh.close().catch(() => undefined);
      if (!ok) await unlink(tmp).catch(() => undefined);
    }
    // The .img appears last: its presence means the image and its description are complete.
    await rename(tmp, join(this.opts.dir, `${id}.img`));
    const dfh = await open(dirname(tmp), 'r');
    await dfh.sync().finally(() => dfh.close());
    const cfh = await open(this.opts.dir, 'r');
    await cfh.sync().finally(() => cfh.close());
    const entry: Entry = { ...meta, id, used: Date.now() };
    this.entries.set(id, entry);
    this.counters.builds++;
    // Without a size in the manifest, room is made now that the size is known.
    if (manifest.imageSize === undefined || manifest.imageSize !== meta.bytes) this.makeRoom(meta.bytes, id);
    return entry;
  }
}
