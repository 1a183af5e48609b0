// Object bytes in an S3 store (Ceph's radosgw) instead of files: one bucket, one object per blob
// under random ids, so several stateless Walrus front ends sharing the bucket and the metadata
// database (DB_URL) serve one object store. Buckets, keys, versions, ACLs and policies stay Walrus's
// own (its metadata): the S3 store below only ever sees blob ids.
import { AbortMultipartUploadCommand, CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { Digester, newBlobId, type BlobLimits, type Blobs, type WrittenBlob } from './blobs.js';

export interface S3BlobsOptions {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  /** Key prefix for this cloud's blobs (several clouds, or test clouds, may share a bucket). */
  prefix?: string;
  log?: Logger;
  /** Leftovers younger than this are another front end's write in progress, never garbage (default 1 h). */
  graceMs?: number;
  /** A replaced blob is deleted this long after the commit, so reads already streaming it finish (default 30 s). */
  deleteDelayMs?: number;
}

const PART_SIZE = 8 * 1024 * 1024;
// Node 20 is this project's platform (Debian 12); the SDK's notice about its future support is noise in every daemon log.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export class S3Blobs implements Blobs {
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly graceMs: number;
  private readonly deleteDelayMs: number;
  private readonly pendingDeletes = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: S3BlobsOptions) {
    this.s3 = new S3Client({
      endpoint: opts.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey },
      // radosgw checks Content-MD5/SHA-256 itself; the SDK's default CRC trailers it may not know.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 5,
    });
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ?? '';
    this.graceMs = opts.graceMs ?? 3600_000;
    this.deleteDelayMs = opts.deleteDelayMs ?? 30_000;
  }

  private keyOf(id: string): string {
    if (!/^[0-9a-f]{32}$/.test(id)) throw new Error(`bad blob id ${id}`);
    return `${this.prefix}${id.slice(0, 2)}/${id}`;
  }

  /** Makes the bucket if it is not there (the first front end to start does). */
  async ensureBucket(): Promise<void> {
    try {
      await this.s3.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch {
      try {
        await this.s3.send(new CreateBucketCommand({ Bucket: this.bucket }));
      } catch (err) {
        // Another front end made it meanwhile.
        if (!(err instanceof S3ServiceException && ['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes(err.name))) throw err;
      }
    }
  }

  async write(sources: Readable | (() => Readable)[], limits: BlobLimits = {}): Promise<WrittenBlob> {
    const id = newBlobId();
    const digest = new Digester(limits.maxSize ?? Number.MAX_SAFE_INTEGER, limits.sha256 ?? false);
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    const source = Array.isArray(sources)
      ? async function* concat() {
          for (const open of sources) yield* open();
        }
      : sources;
    // radosgw acknowledges a PUT (or multipart completion) once the OSDs have it on disk.
    const upload = new Upload({ client: this.s3, params: { Bucket: this.bucket, Key: this.keyOf(id), Body: body }, partSize: PART_SIZE, queueSize: 2, leavePartsOnError: false });
    const feeding = pipeline(source, digest, body);
    try {
      await Promise.all([feeding, upload.done()]);
    } catch (err) {
      body.destroy();
      await upload.abort().catch(() => undefined);
      await this.deleteNow(id).catch(() => undefined);
      throw await feeding.then(() => err, (feedErr: unknown) => feedErr);
    }
    return { id, size: digest.size, md5: digest.md5.digest(), ...(digest.sha256 ? { sha256: digest.sha256.digest('hex') } : {}) };
  }

  open(id: string, range?: { start: number; end: number }): Readable {
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    // Sent now, not when read: a concurrent overwrite deletes the old blob only later (deleteDelayMs).
    this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(id), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }))
      .then((res) => {
        const body = res.Body as Readable | undefined;
        if (!body) return void out.end();
        body.on('error', (e) => out.destroy(e));
        body.pipe(out);
        out.on('close', () => body.destroy());
      }, (err: unknown) => out.destroy(err as Error));
    return out;
  }

  /**
   * Deletes after deleteDelayMs: a reader looks the blob up in the metadata, then sends its GET, and
   * a concurrent overwrite's delete must not overtake that GET (radosgw finishes GETs in flight).
   */
  discard(id: string): void {
    const t = setTimeout(() => {
      this.pendingDeletes.delete(t);
      this.deleteNow(id).catch((err: unknown) => this.opts.log?.warn({ err, id }, 'could not delete a replaced blob (a later sweep will)'));
    }, this.deleteDelayMs);
    t.unref();
    this.pendingDeletes.add(t);
  }

  async remove(id: string): Promise<void> {
    this.discard(id);
  }

  private async deleteNow(id: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(id) }));
  }

  /** Multipart uploads a crashed front end left open, older than the grace period, are aborted (in the background). */
  cleanTemp(): number {
    void this.sweepUploads().catch((err: unknown) => this.opts.log?.warn({ err }, 'sweeping abandoned uploads failed'));
    return 0;
  }

  /** Blobs no metadata row refers to and older than the grace period are deleted (in the background). */
  collectGarbage(isReferenced: (id: string) => boolean): number {
    void this.sweepObjects(isReferenced).catch((err: unknown) => this.opts.log?.warn({ err }, 'sweeping orphan blobs failed'));
    return 0;
  }

  async sweepUploads(): Promise<number> {
    let n = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.s3.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      for (const u of page.Uploads ?? []) {
        if (u.Initiated && Date.now() - u.Initiated.getTime() > this.graceMs) {
          await this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          n++;
        }
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
    if (n) this.opts.log?.info({ uploads: n }, 'aborted abandoned blob uploads');
    return n;
  }

  async sweepObjects(isReferenced: (id: string) => boolean): Promise<number> {
    let n = 0;
    let token: string | undefined;
    do {
      const page = await this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const id = o.Key?.slice(this.prefix.length + 3);
        if (!id || !/^[0-9a-f]{32}$/.test(id)) continue;
        if (o.LastModified && Date.now() - o.LastModified.getTime() <= this.graceMs) continue;
        if (!isReferenced(id)) {
          await this.deleteNow(id);
          n++;
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    if (n) this.opts.log?.info({ blobs: n }, 'removed orphan blobs');
    return n;
  }

  /** Stops; deletes still waiting are left to a later sweep (they are orphans by then). */
  close(): void {
    for (const t of this.pendingDeletes) clearTimeout(t);
    this.s3.destroy();
  }
}
