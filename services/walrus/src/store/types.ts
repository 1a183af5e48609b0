// The storage interface every S3 handler talks to (MinIO's ObjectLayer): buckets, object versions,
// ACLs and multipart uploads. The filesystem backend is one implementation; handlers never see files.
import type { Readable } from 'node:stream';

export interface Owner {
  /** Canonical user id: the account id. */
  id: string;
  displayName: string;
}

export type Permission = 'FULL_CONTROL' | 'READ' | 'WRITE' | 'READ_ACP' | 'WRITE_ACP';
export type Grantee = { type: 'CanonicalUser'; id: string; displayName?: string } | { type: 'Group'; uri: string };
export interface Grant {
  grantee: Grantee;
  permission: Permission;
}
export interface Acl {
  owner: Owner;
  grants: Grant[];
}

export type Versioning = '' | 'Enabled' | 'Suspended';

export interface BucketInfo {
  name: string;
  owner: Owner;
  created: Date;
  location: string;
  versioning: Versioning;
  acl: Acl;
  /** Bucket policy JSON as the owner sent it. */
  policy?: string;
  /** Bytes stored in all versions of all objects. */
  bytes: number;
}

/** 0 or undefined = unlimited. */
export interface Quotas {
  maxBucketsPerAccount?: number;
  maxBucketBytes?: number;
  maxAccountBytes?: number;
}

/** Headers stored with an object and returned on GET (Content-Type, Cache-Control, x-amz-meta-*, …). */
export type ObjectHeaders = Record<string, string>;

export interface ObjectInfo {
  bucket: string;
  key: string;
  /** 'null' for objects written while versioning was never enabled or suspended. */
  versionId: string;
  isLatest: boolean;
  deleteMarker: boolean;
  size: number;
  /** Hex MD5, or `md5-N` for multipart objects (without quotes). */
  etag: string;
  lastModified: Date;
  headers: ObjectHeaders;
  acl: Acl;
  owner: Owner;
}

export interface PutObjectOptions {
  headers: ObjectHeaders;
  acl: Acl;
  owner: Owner;
  /** Base64 MD5 the client sent (Content-MD5): BadDigest when the data differs. */
  contentMd5?: string;
  /** Hex SHA-256 the client signed (x-amz-content-sha256): XAmzContentSHA256Mismatch when it differs. */
  sha256?: string;
  /** Content-Length (or decoded length) the client declared: IncompleteBody when fewer bytes arrive. */
  expectedSize?: number;
  /** Largest acceptable object. */
  maxSize?: number;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export interface ListObjectsOptions {
  prefix?: string;
  delimiter?: string;
  /** Keys strictly after this one (marker / start-after / continuation token). */
  after?: string;
  maxKeys: number;
}

export interface ListObjectsResult {
  objects: ObjectInfo[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** Last key or common prefix returned (the next marker). */
  nextMarker?: string;
}

export interface ListVersionsOptions {
  prefix?: string;
  delimiter?: string;
  keyMarker?: string;
  versionIdMarker?: string;
  maxKeys: number;
}

export interface ListVersionsResult {
  versions: ObjectInfo[];
  commonPrefixes: string[];
  isTruncated: boolean;
  nextKeyMarker?: string;
  nextVersionIdMarker?: string;
}

export interface DeleteResult {
  versionId?: string;
  deleteMarker: boolean;
}

export interface UploadInfo {
  uploadId: string;
  bucket: string;
  key: string;
  initiated: Date;
  owner: Owner;
  headers: ObjectHeaders;
  acl: Acl;
}

export interface PartInfo {
  partNumber: number;
  etag: string;
  size: number;
  lastModified: Date;
}

export interface ObjectStore {
  createBucket(name: string, owner: Owner, acl: Acl, location: string): void;
  /** undefined when the bucket does not exist. */
  getBucket(name: string): BucketInfo | undefined;
  listBuckets(ownerId?: string): BucketInfo[];
  deleteBucket(name: string): void;
  setBucketAcl(name: string, acl: Acl): void;
  setBucketVersioning(name: string, status: 'Enabled' | 'Suspended'): void;
  /** undefined removes the policy. */
  setBucketPolicy(name: string, policy: string | undefined): void;
  countBuckets(ownerId: string): number;

  /** Streams data to durable storage, then makes it visible; the stream is consumed even on error. */
  putObject(bucket: string, key: string, data: Readable, opts: PutObjectOptions): Promise<ObjectInfo>;
  /** The latest version (or the given one); NoSuchKey when absent or the latest is a delete marker. */
  getObjectInfo(bucket: string, key: string, versionId?: string): ObjectInfo;
  /** The object's bytes, whole or a range of them. */
  openObject(info: ObjectInfo, range?: ByteRange): Readable;
  deleteObject(bucket: string, key: string, versionId?: string): DeleteResult;
  setObjectAcl(bucket: string, key: string, versionId: string | undefined, acl: Acl): void;
  listObjects(bucket: string, opts: ListObjectsOptions): ListObjectsResult;
  listObjectVersions(bucket: string, opts: ListVersionsOptions): ListVersionsResult;

  createMultipartUpload(bucket: string, key: string, opts: { headers: ObjectHeaders; acl: Acl; owner: Owner }): UploadInfo;
  getUpload(bucket: string, key: string, uploadId: string): UploadInfo;
  putObjectPart(upload: UploadInfo, partNumber: number, data: Readable, opts: Omit<PutObjectOptions, 'headers' | 'acl' | 'owner'>): Promise<PartInfo>;
  listParts(upload: UploadInfo, opts: { after: number; maxParts: number }): { parts: PartInfo[]; isTruncated: boolean };
  listMultipartUploads(bucket: string, opts: { prefix?: string; keyMarker?: string; uploadIdMarker?: string; maxUploads: number }): { uploads: UploadInfo[]; isTruncated: boolean };
  abortMultipartUpload(upload: UploadInfo): void;
  completeMultipartUpload(upload: UploadInfo, parts: { partNumber: number; etag: string }[]): Promise<ObjectInfo>;

  /** Totals for metrics. */
  usage(): { buckets: number; objects: number; bytes: number };

  close(): void;
}
