// Turning a bundle back into its image: the parts are read in order (each checked against its
// SHA-1), AES-128-CBC-decrypted with the key the manifest wraps for the cloud, gunzipped and
// untarred; the tar stream must match the manifest's digest. The image's bytes go to a sink as they
// come; nothing the caller keeps should be trusted unless unbundle() resolves.
import { createDecipheriv, createHash, type KeyObject } from 'node:crypto';
import { PassThrough, Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { unwrapBundleKey } from './crypto.js';
import { ManifestError, type BundleManifest, type BundlePart } from './manifest.js';

/** Hashes what passes through and fails at the end if it is not `expected` (SHA-1 hex). */
class Sha1Check extends Transform {
  private readonly h = createHash('sha1');
  constructor(private readonly expected: string, private readonly what: string) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(c: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.h.update(c);
    cb(null, c);
  }
  override _flush(cb: TransformCallback): void {
    cb(this.h.digest('hex') === this.expected ? null : new ManifestError(`${this.what} does not match its digest`));
  }
}

export interface UnbundleOptions {
  manifest: BundleManifest;
  /** The cloud's private key (what ec2_encrypted_key/_iv were wrapped for). */
  privateKey: KeyObject | string;
  /** The bytes of one part; throw ManifestError when it is missing. */
  openPart: (part: BundlePart) => Readable | Promise<Readable>;
  /** Where the image's bytes go. */
  sink: Writable;
}

export interface Unbundled {
  /** Size and SHA-256 of the image file. */
  bytes: number;
  sha256: string;
  /** The tar entry's name (the image's file name when it was bundled). */
  name: string;
}

export async function unbundle(opts: UnbundleOptions): Promise<Unbundled> {
  const { manifest } = opts;
  const { key, iv } = unwrapBundleKey(opts.privateKey, manifest.ec2EncryptedKey, manifest.ec2EncryptedIv);

  async function* parts(): AsyncGenerator<Buffer> {
    for (const p of manifest.parts) {
      const h = createHash('sha1');
      // Bytes flow on before the part's digest is known; the whole result fails if one does not match.
      for await (const chunk of await opts.openPart(p)) {
        h.update(chunk as Buffer);
        yield chunk as Buffer;
      }
      if (h.digest('hex') !== p.digest) throw new ManifestError(`part ${p.filename} does not match its digest`);
    }
  }

  const untar = extract();
  // tar-stream is a streamx stream: Node's pipeline reports its errors but does not listen for them.
  untar.on('error', () => undefined);
  const image = new PassThrough({ highWaterMark: 1 << 20 });
  const sha256 = createHash('sha256');
  let bytes = 0;
  let name: string | undefined;
  untar.on('entry', (header, stream, next) => {
    // An entry is destroyed with the pipeline's error; the pipeline reports it.
    stream.on('error', () => undefined);
    if (name !== undefined || header.type !== 'file') {
      stream.on('end', next);
      stream.resume();
      return;
    }
    name = header.name;
    stream.on('data', (data) => {
      const c = data as Buffer;
      sha256.update(c);
      bytes += c.length;
      if (!image.write(c)) {
        stream.pause();
        image.once('drain', () => stream.resume());
      }
    });
    stream.on('end', next);
  });
  untar.on('finish', () => image.end());
  await Promise.all([
    pipeline(parts, createDecipheriv('aes-128-cbc', key, iv), createGunzip(), new Sha1Check(manifest.imageDigest, 'the image'), untar).catch((e: unknown) => {
      const err = e instanceof ManifestError ? e : new ManifestError(`the bundle does not decrypt (${(e as Error).message})`);
      image.destroy(err);
      throw err;
    }),
    pipeline(image, opts.sink).catch((e: unknown) => {
      untar.destroy(e as Error);
      throw e;
    }),
  ]);
  if (name === undefined) throw new ManifestError('the bundle holds no image file');
  if (manifest.imageSize !== undefined && manifest.imageSize !== bytes) throw new ManifestError(`the image is ${bytes} bytes, the manifest says ${manifest.imageSize}`);
  return { bytes, sha256: sha256.digest('hex'), name };
}
