// Making a bundle the way ec2-bundle-image / euca-bundle-image do: the image file goes into a tar
// (one entry), through gzip and AES-128-CBC, and is cut into parts (10 MiB by default) written as
// <prefix>.part.NN; the manifest lists them with their SHA-1s, the SHA-1 of the tar stream, the
// AES key and IV wrapped for the cloud and for the user, and the user's signature. Streams all the
// way: memory stays bounded whatever the image's size.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { signManifestText, wrapSecret } from './crypto.js';
import { renderManifest, type BlockDeviceMapping, type BundlePart, type ImageType } from './manifest.js';

export const DEFAULT_PART_SIZE = 10 * 1024 * 1024;

export interface BundleImageOptions {
  /** The image file. */
  image: string;
  /** Directory the manifest and parts go into (created when missing). */
  destination: string;
  /** File-name prefix of the bundle (default: the image's file name). */
  prefix?: string;
  architecture: string;
  imageType?: ImageType;
  /** For a machine image: the kernel and ramdisk it boots with (eki-/eri- ids). */
  kernelId?: string;
  ramdiskId?: string;
  blockDeviceMappings?: BlockDeviceMapping[];
  /** The bundling account's id (<image><user>). */
  accountId: string;
  /** PEM: the user's certificate and private key (signs the manifest), and the cloud's certificate. */
  userCertificate: string;
  userPrivateKey: string;
  cloudCertificate: string;
  partSize?: number;
  /** Told the bytes of the image read so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface BundleResult {
  manifestPath: string;
  partPaths: string[];
  imageSize: number;
  bundledSize: number;
  manifestXml: string;
}

/** Passes bytes on, hashing them. */
class Digest extends Transform {
  readonly hash = createHash('sha1');
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    cb(null, chunk);
  }
}

/** Writes what it receives into numbered part files of partSize bytes, each with its SHA-1. */
class PartWriter extends Writable {
  readonly parts: (BundlePart & { path: string; size: number })[] = [];
  private fh: FileHandle | undefined;
  private hash = createHash('sha1');
  private filled = 0;
  bytes = 0;

  constructor(private readonly dir: string, private readonly prefix: string, private readonly partSize: number) {
    super({ highWaterMark: 1 << 20 });
  }

  private async startPart(): Promise<void> {
    const index = this.parts.length;
    const filename = `${this.prefix}.part.${String(index).padStart(2, '0')}`;
    const path = join(this.dir, filename);
    this.fh = await open(path, 'w', 0o644);
    this.hash = createHash('sha1');
    this.filled = 0;
    this.parts.push({ index, filename, digest: '', path, size: 0 });
  }

  private async finishPart(): Promise<void> {
    if (!this.fh) return;
    await this.fh.close();
    this.fh = undefined;
    const part = this.parts[this.parts.length - 1]!;
    part.digest = this.hash.digest('hex');
    part.size = this.filled;
  }

  override _write(chunk: Buffer, _e: BufferEncoding, cb: (err?: Error | null) => void): void {
    (async () => {
      let at = 0;
      while (at < chunk.length) {
        if (!this.fh) await this.startPart();
        const n = Math.min(chunk.length - at, this.partSize - this.filled);
        const slice = chunk.subarray(at, at + n);
        await this.fh!.write(slice);
        this.hash.update(slice);
        this.filled += n;
        this.bytes += n;
        at += n;
        if (this.filled === this.partSize) await this.finishPart();
      }
    })().then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    (async () => {
      if (this.parts.length === 0) await this.startPart();
      await this.finishPart();
    })().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    (fh ? fh.close() : Promise.resolve()).then(() => cb(err), () => cb(err));
  }
}

/** Bundles an image: writes <destination>/<prefix>.part.NN and <prefix>.manifest.xml. */
export async function bundleImage(opts: BundleImageOptions): Promise<BundleResult> {
  const prefix = opts.prefix ?? basename(opts.image);
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/.test(prefix)) {
    throw new Error(`bundle prefix ${JSON.stringify(prefix)} must be 1-100 letters, digits, '.', '_', '+' or '-' (choose one with --prefix)`);
  }
  const st = await stat(opts.image);
  if (!st.isFile()) throw new Error(`${opts.image} is not a file`);
  const imageType = opts.imageType ?? 'machine';
  if (imageType !== 'machine' && (opts.kernelId || opts.ramdiskId)) throw new Error(`a ${imageType} image cannot name a kernel or ramdisk`);
  await mkdir(opts.destination, { recursive: true });

  const key = randomBytes(16);
  const iv = randomBytes(16);
  const tar = pack();
  const tarDigest = new Digest();
  const writer = new PartWriter(opts.destination, prefix, opts.partSize ?? DEFAULT_PART_SIZE);
  const bundled = pipeline(tar, tarDigest, createGzip(), createCipheriv('aes-128-cbc', key, iv), writer);
  // tar-stream is a streamx stream: errors reach the pipeline, which does not listen for them itself.
  tar.on('error', () => undefined);

  let done = 0;
  const feed = (async () => {
    let entryDone!: (err?: Error | null) => void;
    const finished = new Promise<void>((resolve, reject) => {
      entryDone = (err) => (err ? reject(err) : resolve());
    });
    const entry = tar.entry({ name: prefix, size: st.size, mode: 0o644, mtime: st.mtime, type: 'file' }, (err) => entryDone(err));
    entry.on('error', () => undefined);
    for await (const chunk of createReadStream(opts.image, { highWaterMark: 1 << 20 })) {
      done += (chunk as Buffer).length;
      opts.onProgress?.(done, st.size);
      if (!entry.write(chunk as Buffer)) await new Promise<void>((resolve) => entry.once('drain', () => resolve()));
    }
    if (done !== st.size) throw new Error(`${opts.image} changed size while it was bundled`);
    entry.end(undefined as never);
    await finished;
    tar.finalize();
  })();
  try {
    await Promise.all([feed.catch((e: unknown) => {
      tar.destroy(e as Error);
      throw e;
    }), bundled]);
  } catch (err) {
    await Promise.all(writer.parts.map((p) => rm(p.path, { force: true })));
    throw err;
  }

  const manifestXml = renderManifest({
    architecture: opts.architecture,
    imageType,
    ...(opts.kernelId ? { kernelId: opts.kernelId } : {}),
    ...(opts.ramdiskId ? { ramdiskId: opts.ramdiskId } : {}),
    blockDeviceMappings: opts.blockDeviceMappings ?? [],
    imageName: prefix,
    accountId: opts.accountId,
    imageDigest: tarDigest.hash.digest('hex'),
    imageSize: st.size,
    bundledSize: writer.bytes,
    ec2EncryptedKey: wrapSecret(opts.cloudCertificate, key),
    ec2EncryptedIv: wrapSecret(opts.cloudCertificate, iv),
    userEncryptedKey: wrapSecret(opts.userCertificate, key),
    userEncryptedIv: wrapSecret(opts.userCertificate, iv),
    parts: writer.parts.map(({ index, filename, digest }) => ({ index, filename, digest })),
  }, (text) => signManifestText(text, opts.userPrivateKey));
  const manifestPath = join(opts.destination, `${prefix}.manifest.xml`);
  await writeFile(manifestPath, manifestXml, { mode: 0o644 });
  return { manifestPath, partPaths: writer.parts.map((p) => p.path), imageSize: st.size, bundledSize: writer.bytes, manifestXml };
}
