// The filesystem ObjectStore: bytes in a BlobStore under <home>/walrus, metadata in walrus.sqlite.
// Order on every write: blob durable (fsync + rename + dir fsync) → metadata committed → replaced
// blobs unlinked. A crash between steps leaves only unreferenced blobs, which the next start removes.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Db, Statement } from '@mallee/store';
import { S3Error, s3Errors } from '@mallee/aws-protocol';
import { BlobStore, type Blobs, type WrittenBlob } from './blobs.js';
import type {
  Acl, BucketInfo, ByteRange, DeleteResult, ListObjectsOptions, ListObjectsResult, ListVersionsOptions, ListVersionsResult,
  ObjectHeaders, ObjectInfo, ObjectStore, Owner, PartInfo, PutObjectOptions, Quotas, UploadInfo,
} from './types.js';

/** Sorts after every key that starts with the same prefix (UTF-8 binary order, as SQLite compares). */
const AFTER_PREFIX = '\u{10FFFF}';
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PARTS = 10_000;

interface BucketRow { name: string; owner_id: string; owner_name: string; created_at: string; location: string; versioning: string; acl: string; policy: string | null; bytes: number }
interface ObjectRow {
  seq: number; bucket: string; key: string; version_id: string; is_latest: number; delete_marker: number; blob: string | null;
  size: number; etag: string; last_modified: string; headers: string; acl: string; owner_id: string; owner_name: string;
}
interface UploadRow { upload_id: string; bucket: string; key: string; initiated: string; owner_id: string; owner_name: string; headers: string; acl: string }
interface PartRow { upload_id: string; part_number: number; blob: string; size: number; etag: string; last_modified: string }

const toBucket = (r: BucketRow): BucketInfo => ({
  name: r.name,
  owner: { id: r.owner_id, displayName: r.owner_name },
  created: new Date(r.created_at),
  location: r.location,
  versioning: r.versioning as BucketInfo['versioning'],
  acl: JSON.parse(r.acl) as Acl,
  ...(r.policy !== null ? { policy: r.policy } : {}),
  bytes: r.bytes,
});
type Stored = ObjectInfo & { blob: string | null; seq: number };
interface Content {
  size: number;
  etag: string;
  /** A single blob, or the segments (part blobs, in order) of a multipart object. */
  blob?: string;
  segments?: { blob: string; size: number }[];
}

const toObject = (r: ObjectRow): Stored => ({
  bucket: r.bucket,
  key: r.key,
  versionId: r.version_id,
  isLatest: r.is_latest === 1,
  deleteMarker: r.delete_marker === 1,
  size: r.size,
  etag: r.etag,
  lastModified: new Date(r.last_modified),
  headers: JSON.parse(r.headers) as ObjectHeaders,
  acl: JSON.parse(r.acl) as Acl,
  owner: { id: r.owner_id, displayName: r.owner_name },
  blob: r.blob,
  seq: r.seq,
});
const toUpload = (r: UploadRow): UploadInfo => ({
  uploadId: r.upload_id,
  bucket: r.bucket,
  key: r.key,
  initiated: new Date(r.initiated),
  owner: { id: r.owner_id, displayName: r.owner_name },
  headers: JSON.parse(r.headers) as ObjectHeaders,
  acl: JSON.parse(r.acl) as Acl,
});
const toPart = (r: PartRow): PartInfo => ({ partNumber: r.part_number, etag: r.etag, size: r.size, lastModified: new Date(r.last_modified) });

/** Version and upload ids: URL-safe, unguessable, 32 characters. */
const newVersionId = () => randomBytes(24).toString('base64url');

export interface FsObjectStoreOptions {
  /** Directory holding data/ and tmp/ (same filesystem, so rename is atomic). */
  root: string;
  db: Db;
  /** Fixed quotas, or where to read the current ones (cloud properties change while Walrus runs). */
  quotas?: Quotas | (() => Quotas);
  /** Where the bytes go instead of files under root (WALRUS_BACKEND=s3: S3Blobs). */
  blobs?: Blobs;
}

const quotaExceeded = (what: string) => new S3Error('QuotaExceeded', `The ${what} storage quota would be exceeded by this request.`);

export class FsObjectStore implements ObjectStore {
  readonly blobs: Blobs;
  private readonly db: Db;
  private readonly quotaSource: () => Quotas;

  /** Prepared statements by SQL text (preparing one costs about as much as running it). */
  private readonly statements = new Map<string, Statement>();

  private sql(text: string): Statement {
    const known = this.statements.get(text);
    if (known) return known;
    const st: Statement = this.db.prepare(text);
    this.statements.set(text, st);
    return st;
  }

  constructor(opts: FsObjectStoreOptions) {
    this.db = opts.db;
    const q = opts.quotas ?? {};
    this.quotaSource = typeof q === 'function' ? q : () => q;
    this.blobs = opts.blobs ?? new BlobStore(opts.root);
  }

  /** Start-up recovery: drop temp files and blobs no row references. */
  recover(): { tempFiles: number; orphanBlobs: number } {
    const tempFiles = this.blobs.cleanTemp();
    const referenced = this
      .sql('SELECT 1 FROM objects WHERE blob = ? UNION ALL SELECT 1 FROM parts WHERE blob = ? UNION ALL SELECT 1 FROM object_segments WHERE blob = ? LIMIT 1')
      .pluck();
    const orphanBlobs = this.blobs.collectGarbage((id) => referenced.get(id, id, id) !== undefined);
    return { tempFiles, orphanBlobs };
  }

  usage(): { buckets: number; objects: number; bytes: number } {
    const b = this.sql('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS bytes FROM buckets').get() as { n: number; bytes: number };
    const objects = this.sql('SELECT COUNT(*) FROM objects WHERE is_latest = 1 AND delete_marker = 0').pluck().get() as number;
    return { buckets: b.n, objects, bytes: b.bytes };
  }

  close(): void {
    // The database belongs to the daemon, which closes it.
  }

  // ---- buckets

  createBucket(name: string, owner: Owner, acl: Acl, location: string): void {
    const existing = this.getBucket(name);
    const max = this.quotaSource().maxBucketsPerAccount;
    if (!existing && max && this.countBuckets(owner.id) >= max) {
      throw new S3Error('TooManyBuckets', 'You have attempted to create more buckets than allowed', { MaxBuckets: String(max) });
    }
    if (existing) {
      if (existing.owner.id === owner.id) throw new S3Error('BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.', { BucketName: name });
      throw new S3Error('BucketAlreadyExists', 'The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.', { BucketName: name });
    }
    this
      .sql('INSERT INTO buckets (name, owner_id, owner_name, created_at, location, versioning, acl) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(name, owner.id, owner.displayName, new Date().toISOString(), location, '', JSON.stringify(acl));
  }

  getBucket(name: string): BucketInfo | undefined {
    const row = this.sql('SELECT * FROM buckets WHERE name = ?').get(name) as BucketRow | undefined;
    return row && toBucket(row);
  }

  private bucket(name: string): BucketInfo {
    const b = this.getBucket(name);
    if (!b) throw s3Errors.noSuchBucket(name);
    return b;
  }

  listBuckets(ownerId?: string): BucketInfo[] {
    const rows = ownerId === undefined
      ? this.sql('SELECT * FROM buckets ORDER BY name').all()
      : this.sql('SELECT * FROM buckets WHERE owner_id = ? ORDER BY name').all(ownerId);
    return (rows as BucketRow[]).map(toBucket);
  }

  countBuckets(ownerId: string): number {
    return this.sql('SELECT COUNT(*) FROM buckets WHERE owner_id = ?').pluck().get(ownerId) as number;
  }

  deleteBucket(name: string): void {
    this.db.transaction(() => {
      this.bucket(name);
      const used = this.sql('SELECT 1 FROM objects WHERE bucket = ? LIMIT 1').get(name) ?? this.sql('SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1').get(name);
      if (used) throw new S3Error('BucketNotEmpty', 'The bucket you tried to delete is not empty', { BucketName: name });
      this.sql('DELETE FROM buckets WHERE name = ?').run(name);
    })();
  }

  setBucketAcl(name: string, acl: Acl): void {
    if (this.sql('UPDATE buckets SET acl = ? WHERE name = ?').run(JSON.stringify(acl), name).changes === 0) throw s3Errors.noSuchBucket(name);
  }

  setBucketVersioning(name: string, status: 'Enabled' | 'Suspended'): void {
    if (this.sql('UPDATE buckets SET versioning = ? WHERE name = ?').run(status, name).changes === 0) throw s3Errors.noSuchBucket(name);
  }

  setBucketPolicy(name: string, policy: string | undefined): void {
    if (this.sql('UPDATE buckets SET policy = ? WHERE name = ?').run(policy ?? null, name).changes === 0) throw s3Errors.noSuchBucket(name);
  }

  /** Refuses a write that would take the bucket or its owner past a quota (`added` bytes net). */
  private checkQuota(bucket: BucketInfo, added: number): void {
    if (added <= 0) return;
    const { maxBucketBytes, maxAccountBytes } = this.quotaSource();
    if (maxBucketBytes && bucket.bytes + added > maxBucketBytes) throw quotaExceeded('bucket');
    if (maxAccountBytes) {
      const used = this.sql('SELECT COALESCE(SUM(bytes), 0) FROM buckets WHERE owner_id = ?').pluck().get(bucket.owner.id) as number;
      if (used + added > maxAccountBytes) throw quotaExceeded('account');
    }
  }

  // ---- objects

  private async writeChecked(data: Readable | (() => Readable)[], opts: Omit<PutObjectOptions, 'headers' | 'acl' | 'owner'>): Promise<WrittenBlob> {
    const blob = await this.blobs.write(data, { ...(opts.maxSize === undefined ? {} : { maxSize: opts.maxSize }), sha256: opts.sha256 !== undefined });
    const fail = async (err: S3Error) => {
      await this.blobs.remove(blob.id);
      throw err;
    };
    if (opts.expectedSize !== undefined && blob.size !== opts.expectedSize) {
      await fail(new S3Error('IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header'));
    }
    if (opts.contentMd5 !== undefined && blob.md5.toString('base64') !== opts.contentMd5) {
      await fail(new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.', { ExpectedDigest: opts.contentMd5, CalculatedDigest: blob.md5.toString('base64') }));
    }
    if (opts.sha256 !== undefined && blob.sha256 !== opts.sha256.toLowerCase()) {
      await fail(new S3Error('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.", { ClientComputedContentSHA256: opts.sha256, S3ComputedContentSHA256: blob.sha256 ?? '' }));
    }
    return blob;
  }

  /** Every blob holding a stored version's bytes. */
  private blobsOf(row: { seq: number; blob: string | null }): string[] {
    if (row.blob) return [row.blob];
    return this.sql('SELECT blob FROM object_segments WHERE object_seq = ? ORDER BY idx').pluck().all(row.seq) as string[];
  }

  /**
   * Makes a durable blob the key's newest version (or a delete marker when blob is null), honouring the
   * bucket's versioning state. Returns the row and the blobs it displaced, which the caller unlinks.
   */
  private commitVersion(
    bucket: string,
    key: string,
    content: Content | null,
    meta: { headers: ObjectHeaders; acl: Acl; owner: Owner },
  ): { info: ObjectInfo; displaced: string[] } {
    return this.db.transaction(() => {
      const b = this.bucket(bucket);
      const versionId = b.versioning === 'Enabled' ? newVersionId() : 'null';
      const displaced: string[] = [];
      let freed = 0;
      if (versionId === 'null') {
        const old = this.sql('SELECT seq, blob, size FROM objects WHERE bucket = ? AND key = ? AND version_id = ?').get(bucket, key, 'null') as { seq: number; blob: string | null; size: number } | undefined;
        if (old) {
          freed = old.size;
          displaced.push(...this.blobsOf(old));
          this.sql('DELETE FROM objects WHERE bucket = ? AND key = ? AND version_id = ?').run(bucket, key, 'null');
        }
      }
      this.checkQuota(b, (content?.size ?? 0) - freed);
      this.sql('UPDATE buckets SET bytes = bytes + ? WHERE name = ?').run((content?.size ?? 0) - freed, bucket);
      this.sql('UPDATE objects SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1').run(bucket, key);
      const now = new Date();
      const r = this
        .sql(`INSERT INTO objects (bucket, key, version_id, is_latest, delete_marker, blob, size, etag, last_modified, headers, acl, owner_id, owner_name)
                  VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`)
        .get(bucket, key, versionId, content ? 0 : 1, content?.blob ?? null, content?.size ?? 0, content?.etag ?? '', now.toISOString(), JSON.stringify(meta.headers), JSON.stringify(meta.acl), meta.owner.id, meta.owner.displayName) as ObjectRow;
      const addSegment = this.sql('INSERT INTO object_segments (object_seq, idx, blob, size) VALUES (?, ?, ?, ?)');
      content?.segments?.forEach((s, i) => addSegment.run(r.seq, i, s.blob, s.size));
      return { info: toObject(r), displaced };
    })();
  }

  private async commitBlob(bucket: string, key: string, blob: WrittenBlob, etag: string, meta: { headers: ObjectHeaders; acl: Acl; owner: Owner }): Promise<ObjectInfo> {
    let result;
    try {
      result = this.commitVersion(bucket, key, { blob: blob.id, size: blob.size, etag }, meta);
    } catch (e) {
      await this.blobs.remove(blob.id);
      throw e;
    }
    for (const id of result.displaced) await this.blobs.remove(id);
    return stripBlob(result.info);
  }

  async putObject(bucket: string, key: string, data: Readable, opts: PutObjectOptions): Promise<ObjectInfo> {
    const b = this.bucket(bucket);
    // Refuse early what cannot fit; the commit checks again with the exact size.
    if (opts.expectedSize !== undefined) this.checkQuota(b, opts.expectedSize - (this.row(bucket, key, 'null')?.size ?? 0));
    const blob = await this.writeChecked(data, opts);
    return this.commitBlob(bucket, key, blob, blob.md5.toString('hex'), opts);
  }

  private row(bucket: string, key: string, versionId?: string): Stored | undefined {
    const r = (versionId === undefined
      ? this.sql('SELECT * FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1').get(bucket, key)
      : this.sql('SELECT * FROM objects WHERE bucket = ? AND key = ? AND version_id = ?').get(bucket, key, versionId)) as ObjectRow | undefined;
    return r && toObject(r);
  }

  getObjectInfo(bucket: string, key: string, versionId?: string): ObjectInfo {
    this.bucket(bucket);
    const r = this.row(bucket, key, versionId);
    if (!r) {
      if (versionId !== undefined) throw new S3Error('NoSuchVersion', 'The specified version does not exist.', { Key: key, VersionId: versionId });
      throw s3Errors.noSuchKey(key);
    }
    if (r.deleteMarker) {
      if (versionId !== undefined) throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.', { Method: 'GET', ResourceType: 'DeleteMarker', DeleteMarker: 'true', VersionId: r.versionId });
      throw Object.assign(s3Errors.noSuchKey(key), { deleteMarker: r.versionId });
    }
    return stripBlob(r);
  }

  openObject(info: ObjectInfo, range?: ByteRange): Readable {
    const r = this.row(info.bucket, info.key, info.versionId);
    if (!r || r.deleteMarker) throw s3Errors.noSuchKey(info.key);
    if (r.blob) return this.blobs.open(r.blob, range);
    const segments = this.sql('SELECT blob, size FROM object_segments WHERE object_seq = ? ORDER BY idx').all(r.seq) as { blob: string; size: number }[];
    return this.openSegments(segments, range ?? { start: 0, end: r.size - 1 });
  }

  /** The bytes of a range of consecutive segments as one stream; every needed blob is opened at once. */
  private openSegments(segments: { blob: string; size: number }[], range: ByteRange): Readable {
    const streams: Readable[] = [];
    let offset = 0;
    for (const s of segments) {
      const first = offset;
      const last = offset + s.size - 1;
      offset += s.size;
      if (s.size === 0 || last < range.start || first > range.end) continue;
      streams.push(this.blobs.open(s.blob, { start: Math.max(range.start, first) - first, end: Math.min(range.end, last) - first }));
    }
    async function* concat() {
      try {
        for (const st of streams) yield* st;
      } finally {
        for (const st of streams) st.destroy();
      }
    }
    return Readable.from(concat(), { objectMode: false, highWaterMark: 1 << 20 });
  }

  deleteObject(bucket: string, key: string, versionId?: string): DeleteResult {
    const { result, displaced } = this.db.transaction(() => {
      const b = this.bucket(bucket);
      if (versionId === undefined) {
        if (b.versioning === '') {
          const old = this.row(bucket, key, 'null');
          const blobs = old ? this.blobsOf(old) : [];
          if (old) {
            this.sql('DELETE FROM objects WHERE seq = ?').run(old.seq);
            this.sql('UPDATE buckets SET bytes = bytes - ? WHERE name = ?').run(old.size, bucket);
          }
          return { result: { deleteMarker: false }, displaced: blobs };
        }
        return { result: undefined, displaced: [] as string[] };
      }
      const r = this.row(bucket, key, versionId);
      if (!r) return { result: { deleteMarker: false, versionId }, displaced: [] };
      const blobs = this.blobsOf(r);
      this.sql('DELETE FROM objects WHERE bucket = ? AND key = ? AND version_id = ?').run(bucket, key, versionId);
      this.sql('UPDATE buckets SET bytes = bytes - ? WHERE name = ?').run(r.size, bucket);
      if (r.isLatest) {
        this.sql('UPDATE objects SET is_latest = 1 WHERE seq = (SELECT MAX(seq) FROM objects WHERE bucket = ? AND key = ?)').run(bucket, key);
      }
      return { result: { deleteMarker: r.deleteMarker, versionId }, displaced: r.deleteMarker ? [] : blobs };
    })();
    for (const id of displaced) this.blobs.discard(id);
    if (result) return result;
    // Versioned bucket, no version named: a delete marker becomes the newest version.
    const { info, displaced: more } = this.commitVersion(bucket, key, null, { headers: {}, acl: { owner: { id: '', displayName: '' }, grants: [] }, owner: { id: '', displayName: '' } });
    for (const id of more) this.blobs.discard(id);
    return { deleteMarker: true, versionId: info.versionId };
  }

  setObjectAcl(bucket: string, key: string, versionId: string | undefined, acl: Acl): void {
    const info = this.getObjectInfo(bucket, key, versionId);
    this.sql('UPDATE objects SET acl = ? WHERE bucket = ? AND key = ? AND version_id = ?').run(JSON.stringify(acl), bucket, key, info.versionId);
  }

  listObjects(bucket: string, opts: ListObjectsOptions): ListObjectsResult {
    this.bucket(bucket);
    const prefix = opts.prefix ?? '';
    const upper = prefix === '' ? AFTER_PREFIX.repeat(2) : prefix + AFTER_PREFIX;
    const stmt = this.sql(
      'SELECT * FROM objects WHERE bucket = ? AND is_latest = 1 AND delete_marker = 0 AND key > ? AND key >= ? AND key < ? ORDER BY key LIMIT ?',
    );
    const out: ListObjectsResult = { objects: [], commonPrefixes: [], isTruncated: false };
    let after = opts.after ?? '';
    const marker = opts.after;
    let count = 0;
    while (true) {
      const rows = stmt.all(bucket, after, prefix, upper, Math.max(opts.maxKeys + 1, 100)) as ObjectRow[];
      if (rows.length === 0) return out;
      let skipped = false;
      for (const row of rows) {
        let cp: string | undefined;
        if (opts.delimiter) {
          const i = row.key.indexOf(opts.delimiter, prefix.length);
          if (i >= 0) cp = row.key.slice(0, i + opts.delimiter.length);
        }
        if (cp !== undefined && marker !== undefined && marker.startsWith(cp)) {
          after = cp + AFTER_PREFIX;
          skipped = true;
          break;
        }
        if (count === opts.maxKeys) {
          out.isTruncated = true;
          return out;
        }
        count++;
        if (cp !== undefined) {
          out.commonPrefixes.push(cp);
          out.nextMarker = cp;
          after = cp + AFTER_PREFIX;
          skipped = true;
          break;
        }
        out.objects.push(stripBlob(toObject(row)));
        out.nextMarker = row.key;
        after = row.key;
      }
      if (!skipped && rows.length < Math.max(opts.maxKeys + 1, 100)) return out;
    }
  }

  listObjectVersions(bucket: string, opts: ListVersionsOptions): ListVersionsResult {
    this.bucket(bucket);
    const prefix = opts.prefix ?? '';
    const upper = prefix === '' ? AFTER_PREFIX.repeat(2) : prefix + AFTER_PREFIX;
    const out: ListVersionsResult = { versions: [], commonPrefixes: [], isTruncated: false };
    // Resume inside the marker key after the named version (versions of a key go newest first).
    let afterKey = opts.keyMarker ?? '';
    let afterSeq = Number.MAX_SAFE_INTEGER;
    if (opts.keyMarker !== undefined && opts.versionIdMarker !== undefined) {
      const m = this.sql('SELECT seq FROM objects WHERE bucket = ? AND key = ? AND version_id = ?').pluck().get(bucket, opts.keyMarker, opts.versionIdMarker) as number | undefined;
      if (m !== undefined) {
        afterSeq = m;
        afterKey = opts.keyMarker;
      }
    } else if (opts.keyMarker !== undefined) afterSeq = -1;
    const stmt = this.sql(
      `SELECT * FROM objects WHERE bucket = ? AND ((key = ? AND seq < ?) OR key > ?) AND key >= ? AND key < ?
       ORDER BY key, seq DESC LIMIT 200`,
    );
    let count = 0;
    while (true) {
      const rows = stmt.all(bucket, afterKey, afterSeq, afterKey, prefix, upper) as ObjectRow[];
      if (rows.length === 0) return out;
      let skipped = false;
      for (const row of rows) {
        let cp: string | undefined;
        if (opts.delimiter) {
          const i = row.key.indexOf(opts.delimiter, prefix.length);
          if (i >= 0) cp = row.key.slice(0, i + opts.delimiter.length);
        }
        if (cp !== undefined && opts.keyMarker !== undefined && opts.keyMarker.startsWith(cp)) {
          afterKey = cp + AFTER_PREFIX;
          afterSeq = -1;
          skipped = true;
          break;
        }
        if (count === opts.maxKeys) {
          out.isTruncated = true;
          return out;
        }
        count++;
        if (cp !== undefined) {
          out.commonPrefixes.push(cp);
          out.nextKeyMarker = cp;
          delete out.nextVersionIdMarker;
          afterKey = cp + AFTER_PREFIX;
          afterSeq = -1;
          skipped = true;
          break;
        }
        out.versions.push(stripBlob(toObject(row)));
        out.nextKeyMarker = row.key;
        out.nextVersionIdMarker = row.version_id;
        afterKey = row.key;
        afterSeq = row.seq;
      }
      if (!skipped && rows.length < 200) return out;
    }
  }

  // ---- multipart

  createMultipartUpload(bucket: string, key: string, opts: { headers: ObjectHeaders; acl: Acl; owner: Owner }): UploadInfo {
    this.bucket(bucket);
    const row = this
      .sql('INSERT INTO uploads (upload_id, bucket, key, initiated, owner_id, owner_name, headers, acl) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *')
      .get(newVersionId(), bucket, key, new Date().toISOString(), opts.owner.id, opts.owner.displayName, JSON.stringify(opts.headers), JSON.stringify(opts.acl)) as UploadRow;
    return toUpload(row);
  }

  getUpload(bucket: string, key: string, uploadId: string): UploadInfo {
    this.bucket(bucket);
    const row = this.sql('SELECT * FROM uploads WHERE upload_id = ? AND bucket = ? AND key = ?').get(uploadId, bucket, key) as UploadRow | undefined;
    if (!row) throw s3Errors.noSuchUpload(uploadId);
    return toUpload(row);
  }

  async putObjectPart(upload: UploadInfo, partNumber: number, data: Readable, opts: Omit<PutObjectOptions, 'headers' | 'acl' | 'owner'>): Promise<PartInfo> {
    const blob = await this.writeChecked(data, opts);
    const etag = blob.md5.toString('hex');
    let displaced: string | undefined;
    let row: PartRow;
    try {
      row = this.db.transaction(() => {
        if (!this.sql('SELECT 1 FROM uploads WHERE upload_id = ?').get(upload.uploadId)) throw s3Errors.noSuchUpload(upload.uploadId);
        displaced = this.sql('SELECT blob FROM parts WHERE upload_id = ? AND part_number = ?').pluck().get(upload.uploadId, partNumber) as string | undefined;
        return this
          .sql('INSERT OR REPLACE INTO parts (upload_id, part_number, blob, size, etag, last_modified) VALUES (?, ?, ?, ?, ?, ?) RETURNING *')
          .get(upload.uploadId, partNumber, blob.id, blob.size, etag, new Date().toISOString()) as PartRow;
      })();
    } catch (e) {
      await this.blobs.remove(blob.id);
      throw e;
    }
    if (displaced) await this.blobs.remove(displaced);
    return toPart(row);
  }

  listParts(upload: UploadInfo, opts: { after: number; maxParts: number }): { parts: PartInfo[]; isTruncated: boolean } {
    const rows = this.sql('SELECT * FROM parts WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?').all(upload.uploadId, opts.after, opts.maxParts + 1) as PartRow[];
    return { parts: rows.slice(0, opts.maxParts).map(toPart), isTruncated: rows.length > opts.maxParts };
  }

  listMultipartUploads(bucket: string, opts: { prefix?: string; keyMarker?: string; uploadIdMarker?: string; maxUploads: number }): { uploads: UploadInfo[]; isTruncated: boolean } {
    this.bucket(bucket);
    const prefix = opts.prefix ?? '';
    const upper = prefix === '' ? AFTER_PREFIX.repeat(2) : prefix + AFTER_PREFIX;
    const km = opts.keyMarker ?? '';
    const um = opts.uploadIdMarker ?? (opts.keyMarker !== undefined ? AFTER_PREFIX : '');
    const rows = this
      .sql(`SELECT * FROM uploads WHERE bucket = ? AND key >= ? AND key < ? AND (key > ? OR (key = ? AND upload_id > ?))
                ORDER BY key, initiated, upload_id LIMIT ?`)
      .all(bucket, prefix, upper, km, km, um, opts.maxUploads + 1) as UploadRow[];
    return { uploads: rows.slice(0, opts.maxUploads).map(toUpload), isTruncated: rows.length > opts.maxUploads };
  }

  abortMultipartUpload(upload: UploadInfo): void {
    const blobs = this.db.transaction(() => {
      const ids = this.sql('SELECT blob FROM parts WHERE upload_id = ?').pluck().all(upload.uploadId) as string[];
      if (this.sql('DELETE FROM uploads WHERE upload_id = ?').run(upload.uploadId).changes === 0) throw s3Errors.noSuchUpload(upload.uploadId);
      return ids;
    })();
    for (const id of blobs) this.blobs.discard(id);
  }

  async completeMultipartUpload(upload: UploadInfo, requested: { partNumber: number; etag: string }[]): Promise<ObjectInfo> {
    if (requested.length === 0) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
    let unused: string[] = [];
    // One transaction from reading the parts to committing the object: a part re-uploaded meanwhile
    // cannot swap its blob out from under the new object.
    const result = this.db.transaction(() => {
      const stored = new Map((this.sql('SELECT * FROM parts WHERE upload_id = ?').all(upload.uploadId) as PartRow[]).map((p) => [p.part_number, p]));
      const chosen: PartRow[] = [];
      let last = 0;
      for (const want of requested) {
        if (want.partNumber <= last) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.');
        last = want.partNumber;
        const p = stored.get(want.partNumber);
        if (!p || p.etag !== want.etag.replace(/"/g, '').toLowerCase()) {
          throw new S3Error('InvalidPart', 'One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part\'s entity tag.', { UploadId: upload.uploadId, PartNumber: String(want.partNumber), ETag: want.etag });
        }
        chosen.push(p);
      }
      chosen.forEach((p, i) => {
        if (i < chosen.length - 1 && p.size < MIN_PART_SIZE) {
          throw new S3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.', { ProposedSize: String(p.size), MinSizeAllowed: String(MIN_PART_SIZE), PartNumber: String(p.part_number), ETag: p.etag });
        }
      });
      const md5s = createHash('md5');
      for (const p of chosen) md5s.update(Buffer.from(p.etag, 'hex'));
      const etag = `${md5s.digest('hex')}-${chosen.length}`;
      // The parts' blobs become the object's segments: no second write of the data.
      const kept = new Set(chosen.map((p) => p.blob));
      unused = [...stored.values()].map((p) => p.blob).filter((b) => !kept.has(b));
      if (this.sql('DELETE FROM uploads WHERE upload_id = ?').run(upload.uploadId).changes === 0) throw s3Errors.noSuchUpload(upload.uploadId);
      const size = chosen.reduce((n, p) => n + p.size, 0);
      return this.commitVersion(upload.bucket, upload.key, { size, etag, segments: chosen.map((p) => ({ blob: p.blob, size: p.size })) }, upload);
    })();
    for (const id of [...result.displaced, ...unused]) await this.blobs.remove(id);
    return stripBlob(result.info);
  }
}

function stripBlob(info: ObjectInfo & { blob?: string | null; seq?: number }): ObjectInfo {
  const { blob: _blob, seq: _seq, ...rest } = info;
  return rest;
}

export function walrusDataRoot(home: string): string {
  return join(home, 'walrus');
}
