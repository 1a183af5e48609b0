// GetDecryptedImage: turns a bundle stored in Walrus back into the image file NCs boot from.
// Parts are streamed in order (each checked against its SHA-1), AES-128-CBC-decrypted with the key
// the manifest wraps for the cloud, gunzipped and untarred; the tar stream must match the manifest's
// digest. The result is cached as a durable file (temp, fsync, rename), keyed by the manifest's ETag.
import { constants, createDecipheriv, createHash, privateDecrypt, type KeyObject } from 'node:crypto';
import { mkdirSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { PassThrough, Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { S3Error } from '@mallee/aws-protocol';
import type { ObjectStore } from '../store/types.js';
import { parseManifest } from './manifest.js';

const invalid = (why: string) => new S3Error('InvalidManifest', `The image bundle is not valid: ${why}`);

/** RSA PKCS#1 v1.5 decryption (Node 20 refuses that padding in privateDecrypt; bundles use it). */
export function rsaPkcs1Decrypt(key: KeyObject | string, data: Buffer): Buffer {
  let block: Buffer;
  try {
    block = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, data);
  } catch {
    throw invalid('the image key was not encrypted for this cloud');
  }
  const sep = block.indexOf(0, 2);
  if (block[0] !== 0 || block[1] !== 2 || sep < 10) throw invalid('the image key was not encrypted for this cloud');
  return block.subarray(sep + 1);
}

/** Hashes what passes through and fails at the end if it is not `expected` (SHA-1 hex). */
class Sha1Check extends Transform {
  private readonly h = createHash('sha1');
  constructor(private readonly expected: string, private readonly what: string) {
    super();
  }
  override _transform(c: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.h.update(c);
    cb(null, c);
  }
  override _flush(cb: TransformCallback): void {
    cb(this.h.digest('hex') === this.expected ? null : invalid(`${this.what} does not match its digest`));
  }
}

async function readSmall(stream: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += (c as Buffer).length;
    if (n > limit) throw invalid('manifest too large');
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface DecryptedImageCacheOptions {
  store: ObjectStore;
  /** Directory for decrypted images (same filesystem as its temp files). */
  dir: string;
  /** The cloud's private key (PEM or KeyObject), read when needed; undefined = not installed. */
  cloudKey: () => KeyObject | string | undefined;
}

export class DecryptedImageCache {
  private readonly building = new Map<string, Promise<string>>();

  constructor(private readonly opts: DecryptedImageCacheOptions) {
    mkdirSync(join(opts.dir, 'tmp'), { recursive: true });
    for (const f of readdirSync(join(opts.dir, 'tmp'))) rmSync(join(opts.dir, 'tmp', f), { force: true });
  }

  /** Path of the decrypted image for the manifest at bucket/key, building it on first use. */
  async get(bucket: string, manifestKey: string): Promise<{ path: string; size: number }> {
    const info = this.opts.store.getObjectInfo(bucket, manifestKey);
    const id = createHash('sha256').update(`${bucket}\0${manifestKey}\0${info.versionId}\0${info.etag}`).digest('hex');
    const path = join(this.opts.dir, `${id}.img`);
    if (!existsSync(path)) {
      let job = this.building.get(id);
      if (!job) {
        job = this.build(bucket, manifestKey, path).finally(() => this.building.delete(id));
        this.building.set(id, job);
      }
      await job;
    }
    const fh = await open(path, 'r');
    try {
      return { path, size: (await fh.stat()).size };
    } finally {
      await fh.close();
    }
  }

  private async build(bucket: string, manifestKey: string, path: string): Promise<string> {
    const key = this.opts.cloudKey();
    if (key === undefined) throw new S3Error('ServiceUnavailable', 'The cloud private key is not installed on this Walrus; images cannot be decrypted.');
    const store = this.opts.store;
    const manifest = parseManifest(await readSmall(store.openObject(store.getObjectInfo(bucket, manifestKey)), 1024 * 1024));
    const aesKey = Buffer.from(rsaPkcs1Decrypt(key, Buffer.from(manifest.ec2EncryptedKey, 'hex')).toString('latin1'), 'hex');
    const iv = Buffer.from(rsaPkcs1Decrypt(key, Buffer.from(manifest.ec2EncryptedIv, 'hex')).toString('latin1'), 'hex');
    if (aesKey.length !== 16 || iv.length !== 16) throw invalid('the image key or IV is not 128 bits');
    const dir = posix.dirname(manifestKey);
    const partKey = (filename: string) => (dir === '.' ? filename : `${dir}/${filename}`);

    async function* parts() {
      for (const p of manifest.parts) {
        let info;
        try {
          info = store.getObjectInfo(bucket, partKey(p.filename));
        } catch {
          throw invalid(`part ${p.filename} is missing`);
        }
        // Bytes flow on before the part's digest is known; nothing is kept unless every check passes.
        const h = createHash('sha1');
        for await (const chunk of store.openObject(info)) {
          h.update(chunk as Buffer);
          yield chunk as Buffer;
        }
        if (h.digest('hex') !== p.digest) throw invalid(`part ${p.filename} does not match its digest`);
      }
    }

    const tmp = join(this.opts.dir, 'tmp', `${posix.basename(path)}.${process.pid}.${Date.now()}`);
    const fh = await open(tmp, 'wx', 0o600);
    let ok = false;
    try {
      const tarDigest = new Sha1Check(manifest.imageDigest, 'the image');
      const untar = extract();
      // tar-stream is a streamx stream: Node's pipeline reports its errors but does not listen for them.
      untar.on('error', () => undefined);
      let found = false;
      const image = new PassThrough({ highWaterMark: 1 << 20 });
      untar.on('entry', (header, stream, next) => {
        // An entry is destroyed with the pipeline's error; the pipeline reports it.
        stream.on('error', () => undefined);
        if (found || header.type !== 'file') {
          stream.on('end', next);
          stream.resume();
          return;
        }
        found = true;
        stream.on('data', (c) => {
          if (!image.write(c as Buffer)) {
            stream.pause();
            image.once('drain', () => stream.resume());
          }
        });
        stream.on('end', next);
      });
      untar.on('finish', () => image.end());
      const sink = new Writable({
        write(chunk: Buffer, _e, cb) {
          fh.write(chunk).then(() => cb(), cb);
        },
      });
      const decipher = createDecipheriv('aes-128-cbc', aesKey, iv);
      await Promise.all([
        pipeline(parts, decipher, createGunzip(), tarDigest, untar).catch((e: unknown) => {
          image.destroy(e as Error);
          throw e instanceof S3Error ? e : invalid(`decryption failed (${(e as Error).message})`);
        }),
        pipeline(image, sink),
      ]);
      if (!found) throw invalid('the bundle holds no image file');
      await fh.sync();
      ok = true;
    } finally {
      await fh.close().catch(() => undefined);
      if (!ok) await unlink(tmp).catch(() => undefined);
    }
    await rename(tmp, path);
    const dfh = await open(dirname(path), 'r');
    await dfh.sync().finally(() => dfh.close());
    return path;
  }
}
