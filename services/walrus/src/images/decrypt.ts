// Walrus's cache of decrypted bundles: the image a bundle stored here turns back into (verified
// signature, parts and digests, unwrapped with the cloud key; @mallee/image does the unbundling),
// kept as a durable file (temp, fsync, rename) with its size and SHA-256 beside it, keyed by the
// manifest's version and ETag, so a replaced manifest is a different image.
import { createHash, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { open, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { S3Error } from '@mallee/aws-protocol';
import { ManifestError, parseManifest, unbundle, type BundleManifest } from '@mallee/image';
import type { ObjectStore } from '../store/types.js';

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
  manifest: BundleManifest;
  /** Who signed the manifest (from verify). */
  signedBy: string;
}

export interface DecryptedImageCacheOptions {
  store: ObjectStore;
  /** Directory for decrypted images (same filesystem as its temp files). */
  dir: string;
  /** The cloud's private key (PEM or KeyObject), read when needed; undefined = not installed. */
  cloudKey: () => KeyObject | string | undefined;
  /** Checks the manifest's signature (throws S3Error when it does not verify); returns who signed. */
  verify: (manifest: BundleManifest) => Promise<string>;
}

interface Meta { bytes: number; sha256: string; signedBy: string; bucket: string; manifestKey: string }

export class DecryptedImageCache {
  private readonly building = new Map<string, Promise<void>>();

  constructor(private readonly opts: DecryptedImageCacheOptions) {
    mkdirSync(join(opts.dir, 'tmp'), { recursive: true });
    for (const f of readdirSync(join(opts.dir, 'tmp'))) rmSync(join(opts.dir, 'tmp', f), { force: true });
  }

  hasCloudKey(): boolean {
    return this.opts.cloudKey() !== undefined;
  }

  /** How many decrypted images are kept. */
  count(): number {
    return readdirSync(this.opts.dir).filter((f) => f.endsWith('.img')).length;
  }

  /** The manifest stored at bucket/key, parsed (InvalidManifest when it is not one). */
  async manifest(bucket: string, manifestKey: string): Promise<BundleManifest> {
    const store = this.opts.store;
    const xml = await readSmall(store.openObject(store.getObjectInfo(bucket, manifestKey)), 1024 * 1024);
    try {
      return parseManifest(xml, { fileName: manifestKey });
    } catch (e) {
      if (e instanceof ManifestError) throw invalidManifest(e.message);
      throw e;
    }
  }

  private idOf(bucket: string, manifestKey: string): string {
    const info = this.opts.store.getObjectInfo(bucket, manifestKey);
    return createHash('sha256').update(`${bucket}\0${manifestKey}\0${info.versionId}\0${info.etag}`).digest('hex');
  }

  /** The decrypted image of the manifest at bucket/key, building (and verifying) it on first use. */
  async get(bucket: string, manifestKey: string): Promise<DecryptedImage> {
    const id = this.idOf(bucket, manifestKey);
    const path = join(this.opts.dir, `${id}.img`);
    // An image without its description (written by an older Walrus) is built again.
    if (!existsSync(path) || !existsSync(join(this.opts.dir, `${id}.json`))) {
      let job = this.building.get(id);
      if (!job) {
        job = this.build(bucket, manifestKey, id).finally(() => this.building.delete(id));
        this.building.set(id, job);
      }
      await job;
    }
    const meta = JSON.parse(readFileSync(join(this.opts.dir, `${id}.json`), 'utf8')) as Meta;
    return { path, bytes: meta.bytes, sha256: meta.sha256, signedBy: meta.signedBy, manifest: await this.manifest(bucket, manifestKey) };
  }

  /** Forgets the decrypted image of every version of bucket/key. */
  flush(bucket: string, manifestKey: string): number {
    let n = 0;
    for (const f of readdirSync(this.opts.dir).filter((x) => x.endsWith('.json'))) {
      try {
        const meta = JSON.parse(readFileSync(join(this.opts.dir, f), 'utf8')) as Meta;
        if (meta.bucket !== bucket || meta.manifestKey !== manifestKey) continue;
      } catch {
        continue;
      }
      const id = f.slice(0, -'.json'.length);
      rmSync(join(this.opts.dir, `${id}.img`), { force: true });
      rmSync(join(this.opts.dir, f), { force: true });
      n++;
    }
    return n;
  }

  private async build(bucket: string, manifestKey: string, id: string): Promise<void> {
    const key = this.opts.cloudKey();
    if (key === undefined) throw new S3Error('ServiceUnavailable', 'The cloud private key is not installed on this Walrus (keys/cloud-pk.pem); images cannot be decrypted.');
    const store = this.opts.store;
    const manifest = await this.manifest(bucket, manifestKey);
    const signedBy = await this.opts.verify(manifest);
    const dir = posix.dirname(manifestKey);
    const partKey = (filename: string) => (dir === '.' ? filename : `${dir}/${filename}`);
    const tmp = join(this.opts.dir, 'tmp', `${id}.${process.pid}.${Date.now()}`);
    const fh = await open(tmp, 'wx', 0o600);
    let ok = false;
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
            let info;
            try {
              info = store.getObjectInfo(bucket, partKey(p.filename));
            } catch {
              throw new ManifestError(`part ${p.filename} is missing`);
            }
            return store.openObject(info);
          },
          sink,
        });
      } catch (e) {
        if (e instanceof ManifestError) throw invalidManifest(e.message);
        throw e;
      }
      await fh.sync();
      const meta: Meta = { bytes: result.bytes, sha256: result.sha256, signedBy, bucket, manifestKey };
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
  }
}
