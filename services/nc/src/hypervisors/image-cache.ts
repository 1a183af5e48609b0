// The NC's cache of base images (Eucalyptus's NC image cache): each image id is fetched once — from
// the presigned Walrus URL a launch carries (streamed to a temp file, its size and SHA-256 checked
// against what the clc recorded at registration, fsynced, renamed into place), or copied from a local
// file (file:// imageLocation, or <home>/images/<id>) — and shared by every instance's overlay.
// The cache is bounded by NC_CACHE_SIZE (MiB): least recently used images go first, and never one a
// guest still uses (an overlay's base) or one a launch is working with.
import { createHash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { access, chmod, copyFile, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ImageSource } from '@mallee/wire';

export class ImageNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageNotFoundError';
  }
}

/** Where a local image's file is: the imageLocation when local (path or file:// URL), else <imagesDir>/<id>. */
export function imageSource(imagesDir: string, id: string, location?: string): string {
  if (location) {
    if (location.startsWith('file://')) return fileURLToPath(location);
    if (isAbsolute(location)) return location;
  }
  return join(imagesDir, id);
}

async function readable(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export interface ImageCacheOptions {
  /** Where cached images live (one file per image id). */
  dir: string;
  /** Where local images are looked for when a launch carries no URL (<home>/images). */
  imagesDir: string;
  /** Bound on the cache's bytes (NC_CACHE_SIZE MiB); 0 keeps only images in use. */
  maxBytes: number;
  /** Image ids guests on this node use now (their overlays' bases): never evicted. */
  inUse: () => Promise<Set<string>>;
  log: Logger;
  /** Per download (default 30 minutes: a big image through a busy Walrus). */
  downloadTimeoutMs?: number;
}

export interface ImageRequest {
  /** The launch's presigned URL with the expected SHA-256 and size. */
  source?: ImageSource;
  /** A local imageLocation (path or file:// URL), for images not in Walrus. */
  location?: string;
}

export interface ImageCacheStats {
  downloads: number;
  downloadedBytes: number;
  hits: number;
  evictions: number;
  entries: number;
  bytes: number;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export class ImageCache {
  private readonly inflight = new Map<string, Promise<string>>();
  /** Images a launch holds (between get() and release()), with how many launches hold each. */
  private readonly pinned = new Map<string, number>();
  private readonly counters = { downloads: 0, downloadedBytes: 0, hits: 0, evictions: 0 };

  constructor(private readonly opts: ImageCacheOptions) {}

  get dir(): string {
    return this.opts.dir;
  }

  /** The cached copy of image `id`, fetched the first time; pinned until release(id). */
  async get(id: string, req: ImageRequest = {}): Promise<string> {
    if (!ID.test(id)) throw new ImageNotFoundError(`invalid image id ${JSON.stringify(id)}`);
    this.pinned.set(id, (this.pinned.get(id) ?? 0) + 1);
    try {
      let p = this.inflight.get(id);
      if (!p) {
        p = this.fill(id, req).finally(() => this.inflight.delete(id));
        this.inflight.set(id, p);
      }
      return await p;
    } catch (err) {
      this.release(id);
      throw err;
    }
  }

  release(id: string): void {
    const n = (this.pinned.get(id) ?? 1) - 1;
    if (n > 0) this.pinned.set(id, n);
    else this.pinned.delete(id);
  }

  private async fill(id: string, req: ImageRequest): Promise<string> {
    await mkdir(this.opts.dir, { recursive: true, mode: 0o755 });
    const cached = join(this.opts.dir, id);
    if (await readable(cached)) {
      this.counters.hits++;
      const now = new Date();
      await utimes(cached, now, now).catch(() => undefined);
      return cached;
    }
    const tmp = join(this.opts.dir, `.${id}.tmp-${process.pid}-${Date.now()}`);
    try {
      if (req.source) {
        await this.makeRoom(id, req.source.bytes);
        await this.download(id, req.source, tmp);
      } else {
        const src = imageSource(this.opts.imagesDir, id, req.location);
        if (!(await readable(src))) {
          throw new ImageNotFoundError(`image ${id} is not on this node and the launch carries no URL for it (looked for ${src}); register it from a bundle in Walrus, or place it at ${join(this.opts.imagesDir, id)}`);
        }
        await this.makeRoom(id, (await stat(src)).size);
        await copyFile(src, tmp, constants.COPYFILE_FICLONE);
      }
      // Readable by the QEMU user libvirt runs guests as.
      await chmod(tmp, 0o644);
      await rename(tmp, cached);
    } finally {
      await rm(tmp, { force: true });
    }
    return cached;
  }

  private async download(id: string, source: ImageSource, tmp: string): Promise<void> {
    const started = Date.now();
    let res: Response;
    try {
      res = await fetch(source.url, { signal: AbortSignal.timeout(this.opts.downloadTimeoutMs ?? 30 * 60_000) });
    } catch (err) {
      throw new ImageNotFoundError(`image ${id}: Walrus did not answer at ${new URL(source.url).origin} (${(err as Error).message})`);
    }
    if (res.status !== 200 || !res.body) {
      const text = await res.text().catch(() => '');
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? String(res.status);
      const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? '';
      throw new ImageNotFoundError(`image ${id}: Walrus refused the download: ${code} ${message}`.trim());
    }
    const hash = createHash('sha256');
    let bytes = 0;
    const count = new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        cb(null, chunk);
      },
    });
    // flush: fsync before the file is closed, so the renamed image is on disk.
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), count, createWriteStream(tmp, { mode: 0o644, flush: true }));
    const sha256 = hash.digest('hex');
    if (bytes !== source.bytes || sha256 !== source.sha256) {
      throw new ImageNotFoundError(`image ${id} from Walrus is not the registered image (${bytes} bytes, SHA-256 ${sha256}; expected ${source.bytes} bytes, ${source.sha256})`);
    }
    this.counters.downloads++;
    this.counters.downloadedBytes += bytes;
    this.opts.log.info({ imageId: id, bytes, ms: Date.now() - started }, 'image downloaded from Walrus into the cache');
  }

  /** The cached images with their sizes and last use (oldest first). */
  private async entries(): Promise<{ id: string; bytes: number; used: number }[]> {
    let names: string[];
    try {
      names = await readdir(this.opts.dir);
    } catch {
      return [];
    }
    const out = [];
    for (const id of names.filter((n) => !n.startsWith('.') && ID.test(n))) {
      try {
        const st = await stat(join(this.opts.dir, id));
        if (st.isFile()) out.push({ id, bytes: st.size, used: st.mtimeMs });
      } catch {
        // evicted meanwhile
      }
    }
    return out.sort((a, b) => a.used - b.used);
  }

  /** Evicts least recently used images no guest or launch holds until `bytes` more fit (as far as it can). */
  private async makeRoom(incoming: string, bytes: number): Promise<void> {
    const entries = await this.entries();
    let total = entries.reduce((s, e) => s + e.bytes, 0);
    if (total + bytes <= this.opts.maxBytes) return;
    const busy = await this.opts.inUse();
    for (const e of entries) {
      if (total + bytes <= this.opts.maxBytes) break;
      if (e.id === incoming || busy.has(e.id) || this.pinned.has(e.id) || this.inflight.has(e.id)) continue;
      await rm(join(this.opts.dir, e.id), { force: true });
      total -= e.bytes;
      this.counters.evictions++;
      this.opts.log.info({ imageId: e.id, bytes: e.bytes }, 'image evicted from the cache (least recently used)');
    }
    if (total + bytes > this.opts.maxBytes) {
      this.opts.log.warn({ imageId: incoming, bytes, cachedBytes: total, maxBytes: this.opts.maxBytes }, 'image cache over NC_CACHE_SIZE: every cached image is in use');
    }
  }

  async stats(): Promise<ImageCacheStats> {
    const entries = await this.entries();
    return { ...this.counters, entries: entries.length, bytes: entries.reduce((s, e) => s + e.bytes, 0) };
  }
}
