// Multipart upload actions: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
// ListMultipartUploads. The object's ETag is md5(part md5s)-N.
import { Readable } from 'node:stream';
import { S3Error, parseS3Xml, xmlList, xmlText } from '@mallee/aws-protocol';
import { checkObjectKey } from '../store/names.js';
import type { UploadInfo } from '../store/types.js';
import { MAX_PARTS } from '../store/fs-store.js';
import { aclFromHeaders, allowed, cannedAcl, ownerOf } from './acl.js';
import { authorize } from './access.js';
import { bucketOf } from './actions-buckets.js';
import { parseCopySource, readableObject } from './actions-objects.js';
import type { S3Action, S3Request } from './context.js';
import { checkConditions, objectHeadersFrom, quoted } from './http.js';

function writable(req: S3Request, action = 's3:PutObject') {
  const b = bucketOf(req);
  authorize(req, b, action, action === 's3:ListBucketMultipartUploads' ? undefined : req.key, allowed(b.acl, req.principal, 'WRITE'));
  return b;
}

/** The upload named by ?uploadId, which only its initiator or the bucket's owner may touch. */
function uploadOf(req: S3Request, action = 's3:PutObject'): UploadInfo {
  const b = writable(req, action);
  const upload = req.store.getUpload(req.bucket!, req.key!, req.query.get('uploadId') ?? '');
  const p = req.principal;
  if (p && !p.isAdmin && p.accountId !== upload.owner.id && p.accountId !== b.owner.id) throw new S3Error('AccessDenied', 'Access Denied');
  return upload;
}

function partNumberOf(req: S3Request): number {
  const v = req.query.get('partNumber') ?? '';
  const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= MAX_PARTS)) throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`, { ArgumentName: 'partNumber', ArgumentValue: v });
  return n;
}

const initiator = (u: UploadInfo) => ({ ID: u.owner.id, DisplayName: u.owner.displayName });

function intParam(req: S3Request, name: string, dflt: number, max: number): number {
  const v = req.query.get(name);
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v)) throw new S3Error('InvalidArgument', `Provided ${name} not an integer or within integer range`, { ArgumentName: name, ArgumentValue: v });
  return Math.min(Number(v), max);
}

export const multipartActions: S3Action[] = [
  {
    name: 'CreateMultipartUpload',
    method: 'POST',
    target: 'object',
    sub: 'uploads',
    handler: (req) => {
      const b = writable(req);
      checkObjectKey(req.key!);
      const owner = req.principal ? ownerOf(req.principal) : b.owner;
      const upload = req.store.createMultipartUpload(b.name, req.key!, {
        headers: objectHeadersFrom(req.headers),
        acl: aclFromHeaders(req.headers, owner, b.owner) ?? cannedAcl('private', owner),
        owner,
      });
      return { xml: { root: 'InitiateMultipartUploadResult', body: { Bucket: b.name, Key: req.key, UploadId: upload.uploadId } } };
    },
  },
  {
    name: 'UploadPartCopy',
    method: 'PUT',
    target: 'object',
    sub: 'uploadId',
    when: (req) => req.query.has('partNumber') && typeof req.headers['x-amz-copy-source'] === 'string',
    handler: async (req) => {
      const upload = uploadOf(req);
      const partNumber = partNumberOf(req);
      const src = parseCopySource(req.headers['x-amz-copy-source'] as string);
      const info = readableObject(req, src.bucket, src.key, src.versionId);
      if (checkConditions(req.headers, info, 'x-amz-copy-source-') === 'not-modified') {
        throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      }
      let range: { start: number; end: number } | undefined;
      const rangeHeader = req.headers['x-amz-copy-source-range'];
      if (typeof rangeHeader === 'string') {
        const m = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader.trim());
        if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) >= info.size) {
          throw new S3Error('InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy', { ArgumentName: 'x-amz-copy-source-range', ArgumentValue: rangeHeader });
        }
        range = { start: Number(m[1]), end: Number(m[2]) };
      }
      const expectedSize = range ? range.end - range.start + 1 : info.size;
      const data = info.size === 0 ? Readable.from([]) : req.store.openObject(info, range);
      const part = await req.store.putObjectPart(upload, partNumber, data, { expectedSize });
      const headers: Record<string, string> = {};
      if (info.versionId !== 'null') headers['x-amz-copy-source-version-id'] = info.versionId;
      return { headers, xml: { root: 'CopyPartResult', body: { LastModified: part.lastModified, ETag: quoted(part.etag) } } };
    },
  },
  {
    name: 'UploadPart',
    method: 'PUT',
    target: 'object',
    sub: 'uploadId',
    handler: async (req) => {
      const upload = uploadOf(req);
      const partNumber = partNumberOf(req);
      if (req.integrity.expectedSize === undefined) throw new S3Error('MissingContentLength', 'You must provide the Content-Length HTTP header.');
      const part = await req.store.putObjectPart(upload, partNumber, req.body, { ...req.integrity, maxSize: 5 * 1024 ** 3 });
      return { headers: { etag: quoted(part.etag) } };
    },
  },
  {
    name: 'CompleteMultipartUpload',
    method: 'POST',
    target: 'object',
    sub: 'uploadId',
    handler: async (req) => {
      const upload = uploadOf(req);
      const doc = parseS3Xml((await req.readBody(4 * 1024 * 1024)).toString('utf8'), 'CompleteMultipartUpload');
      const parts = xmlList(doc, 'Part').map((p) => {
        const n = Number(xmlText(p, 'PartNumber'));
        const etag = xmlText(p, 'ETag');
        if (!Number.isInteger(n) || etag === undefined) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
        return { partNumber: n, etag };
      });
      const info = await req.store.completeMultipartUpload(upload, parts);
      const headers: Record<string, string> = {};
      if (info.versionId !== 'null') headers['x-amz-version-id'] = info.versionId;
      return {
        headers,
        xml: { root: 'CompleteMultipartUploadResult', body: { Location: `/${upload.bucket}/${encodeURIComponent(upload.key).replace(/%2F/g, '/')}`, Bucket: upload.bucket, Key: upload.key, ETag: quoted(info.etag) } },
      };
    },
  },
  {
    name: 'AbortMultipartUpload',
    method: 'DELETE',
    target: 'object',
    sub: 'uploadId',
    handler: (req) => {
      req.store.abortMultipartUpload(uploadOf(req, 's3:AbortMultipartUpload'));
      return { status: 204 };
    },
  },
  {
    name: 'ListParts',
    method: 'GET',
    target: 'object',
    sub: 'uploadId',
    handler: (req) => {
      const upload = uploadOf(req, 's3:ListMultipartUploadParts');
      const maxParts = intParam(req, 'max-parts', 1000, 1000);
      const after = intParam(req, 'part-number-marker', 0, MAX_PARTS);
      const r = req.store.listParts(upload, { after, maxParts });
      return {
        xml: {
          root: 'ListPartsResult',
          body: {
            Bucket: upload.bucket,
            Key: upload.key,
            UploadId: upload.uploadId,
            Initiator: initiator(upload),
            Owner: initiator(upload),
            StorageClass: 'STANDARD',
            PartNumberMarker: after,
            NextPartNumberMarker: r.parts.length > 0 ? r.parts[r.parts.length - 1]!.partNumber : undefined,
            MaxParts: maxParts,
            IsTruncated: r.isTruncated,
            Part: r.parts.map((p) => ({ PartNumber: p.partNumber, LastModified: p.lastModified, ETag: quoted(p.etag), Size: p.size })),
          },
        },
      };
    },
  },
  {
    name: 'ListMultipartUploads',
    method: 'GET',
    target: 'bucket',
    sub: 'uploads',
    handler: (req) => {
      const b = writable(req, 's3:ListBucketMultipartUploads');
      const maxUploads = intParam(req, 'max-uploads', 1000, 1000);
      const prefix = req.query.get('prefix') ?? '';
      const keyMarker = req.query.get('key-marker') || undefined;
      const uploadIdMarker = req.query.get('upload-id-marker') || undefined;
      const r = req.store.listMultipartUploads(b.name, { prefix, ...(keyMarker ? { keyMarker } : {}), ...(uploadIdMarker ? { uploadIdMarker } : {}), maxUploads });
      const last = r.uploads[r.uploads.length - 1];
      return {
        xml: {
          root: 'ListMultipartUploadsResult',
          body: {
            Bucket: b.name,
            KeyMarker: keyMarker ?? '',
            UploadIdMarker: uploadIdMarker ?? '',
            NextKeyMarker: r.isTruncated ? last?.key : undefined,
            NextUploadIdMarker: r.isTruncated ? last?.uploadId : undefined,
            Prefix: prefix,
            MaxUploads: maxUploads,
            IsTruncated: r.isTruncated,
            Upload: r.uploads.map((u) => ({ Key: u.key, UploadId: u.uploadId, Initiator: initiator(u), Owner: initiator(u), StorageClass: 'STANDARD', Initiated: u.initiated })),
          },
        },
      };
    },
  },
];
