// Object actions: Put/Get/Head/DeleteObject, CopyObject, DeleteObjects, Get/PutObjectAcl.
import { S3Error, parseS3Xml, xmlList, xmlText, type S3XmlObject } from '@mallee/aws-protocol';
import { checkObjectKey } from '../store/names.js';
import type { ObjectInfo } from '../store/types.js';
import { aclFromHeaders, aclXml, allowed, cannedAcl, ownerOf, parseAclXml } from './acl.js';
import { authorize } from './access.js';
import { bucketOf, signedIn } from './actions-buckets.js';
import type { S3Action, S3Request } from './context.js';
import { checkConditions, objectHeadersFrom, objectResponseHeaders, parseRange, quoted, responseOverrides } from './http.js';

const versionIdOf = (req: S3Request) => req.query.get('versionId') || undefined;

/** Reads an object the requester may read (READ on the object's ACL). */
export function readableObject(req: Pick<S3Request, 'principal' | 'store'>, bucket: string, key: string, versionId?: string): ObjectInfo {
  const b = req.store.getBucket(bucket);
  if (!b) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
  let info: ObjectInfo;
  try {
    info = req.store.getObjectInfo(bucket, key, versionId);
  } catch (e) {
    // Without READ on the bucket, a missing key is AccessDenied (no listing by probing), as in S3.
    if (e instanceof S3Error && e.code === 'NoSuchKey') authorize(req, b, 's3:ListBucket', undefined, allowed(b.acl, req.principal, 'READ'));
    throw e;
  }
  authorize(req, b, versionId === undefined ? 's3:GetObject' : 's3:GetObjectVersion', key, allowed(info.acl, req.principal, 'READ'));
  return info;
}

/** x-amz-copy-source: `bucket/key[?versionId=…]`, URL-encoded, optional leading slash. */
export function parseCopySource(value: string): { bucket: string; key: string; versionId?: string } {
  const [path, query] = value.split('?', 2) as [string, string | undefined];
  let decoded: string;
  try {
    decoded = decodeURIComponent(path.replace(/^\//, ''));
  } catch {
    throw new S3Error('InvalidArgument', 'Invalid copy source encoding', { ArgumentName: 'x-amz-copy-source', ArgumentValue: value });
  }
  const slash = decoded.indexOf('/');
  if (slash <= 0 || slash === decoded.length - 1) throw new S3Error('InvalidArgument', 'Copy Source must mention the source bucket and key: sourcebucket/sourcekey', { ArgumentName: 'x-amz-copy-source', ArgumentValue: value });
  const versionId = query ? new URLSearchParams(query).get('versionId') ?? undefined : undefined;
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1), ...(versionId ? { versionId } : {}) };
}

function writableBucket(req: S3Request) {
  const b = bucketOf(req);
  authorize(req, b, 's3:PutObject', req.key, allowed(b.acl, req.principal, 'WRITE'));
  checkObjectKey(req.key!);
  return b;
}

function getObject(req: S3Request, head: boolean) {
  const info = readableObject(req, req.bucket!, req.key!, versionIdOf(req));
  const headers = objectResponseHeaders(info);
  if (checkConditions(req.headers, info) === 'not-modified') {
    return { status: 304, headers: { etag: headers.etag!, 'last-modified': headers['last-modified']! } };
  }
  const partNumber = req.query.get('partNumber');
  if (partNumber !== undefined && partNumber !== '1') throw new S3Error('InvalidPartNumber', 'The requested partnumber is not satisfiable', {}, 416);
  const range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, info.size);
  Object.assign(headers, responseOverrides(req.query));
  if (range) {
    headers['content-range'] = `bytes ${range.start}-${range.end}/${info.size}`;
    headers['content-length'] = String(range.end - range.start + 1);
  } else headers['content-length'] = String(info.size);
  const status = range ? 206 : 200;
  if (head || info.size === 0) return { status, headers, body: head ? undefined : '' };
  return { status, headers, body: req.store.openObject(info, range) };
}

export const objectActions: S3Action[] = [
  {
    name: 'GetObjectAcl',
    method: 'GET',
    target: 'object',
    sub: 'acl',
    handler: (req) => {
      const b = bucketOf(req);
      const info = req.store.getObjectInfo(req.bucket!, req.key!, versionIdOf(req));
      authorize(req, b, 's3:GetObjectAcl', req.key, allowed(info.acl, req.principal, 'READ_ACP'));
      return { xml: { root: 'AccessControlPolicy', body: aclXml(info.acl) } };
    },
  },
  {
    name: 'PutObjectAcl',
    method: 'PUT',
    target: 'object',
    sub: 'acl',
    handler: async (req) => {
      const b = bucketOf(req);
      const info = req.store.getObjectInfo(req.bucket!, req.key!, versionIdOf(req));
      authorize(req, b, 's3:PutObjectAcl', req.key, allowed(info.acl, req.principal, 'WRITE_ACP'));
      const body = await req.readBody();
      const acl = aclFromHeaders(req.headers, info.owner, b.owner) ?? (body.length > 0 ? parseAclXml(body.toString('utf8'), info.owner) : undefined);
      if (!acl) throw new S3Error('MissingSecurityHeader', 'Your request was missing a required header', { MissingHeaderName: 'x-amz-acl' });
      req.store.setObjectAcl(req.bucket!, req.key!, versionIdOf(req), acl);
      return {};
    },
  },
  {
    name: 'CopyObject',
    method: 'PUT',
    target: 'object',
    when: (req) => typeof req.headers['x-amz-copy-source'] === 'string',
    handler: async (req) => {
      const p = signedIn(req);
      const dest = writableBucket(req);
      const src = parseCopySource(req.headers['x-amz-copy-source'] as string);
      const info = readableObject(req, src.bucket, src.key, src.versionId);
      if (checkConditions(req.headers, info, 'x-amz-copy-source-') === 'not-modified') {
        throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: 'x-amz-copy-source-If-None-Match' });
      }
      const directive = String(req.headers['x-amz-metadata-directive'] ?? 'COPY').toUpperCase();
      if (directive !== 'COPY' && directive !== 'REPLACE') throw new S3Error('InvalidArgument', 'Unknown metadata directive.', { ArgumentName: 'x-amz-metadata-directive', ArgumentValue: directive });
      const owner = ownerOf(p);
      const acl = aclFromHeaders(req.headers, owner, dest.owner) ?? cannedAcl('private', owner);
      const sameObject = src.bucket === req.bucket && src.key === req.key && src.versionId === undefined;
      if (sameObject && directive === 'COPY' && dest.versioning !== 'Enabled') {
        throw new S3Error('InvalidRequest', "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
      }
      const headers = directive === 'REPLACE' ? objectHeadersFrom(req.headers) : info.headers;
      const copied = await req.store.putObject(req.bucket!, req.key!, req.store.openObject(info), { headers, acl, owner, expectedSize: info.size });
      const out: Record<string, string> = {};
      if (info.versionId !== 'null') out['x-amz-copy-source-version-id'] = info.versionId;
      if (copied.versionId !== 'null') out['x-amz-version-id'] = copied.versionId;
      return { headers: out, xml: { root: 'CopyObjectResult', body: { LastModified: copied.lastModified, ETag: quoted(copied.etag) } } };
    },
  },
  {
    name: 'PutObject',
    method: 'PUT',
    target: 'object',
    handler: async (req) => {
      const b = writableBucket(req);
      if (req.integrity.expectedSize === undefined) throw new S3Error('MissingContentLength', 'You must provide the Content-Length HTTP header.');
      const owner = req.principal ? ownerOf(req.principal) : b.owner;
      const acl = aclFromHeaders(req.headers, owner, b.owner) ?? cannedAcl('private', owner);
      const info = await req.store.putObject(req.bucket!, req.key!, req.body, {
        headers: objectHeadersFrom(req.headers),
        acl,
        owner,
        ...req.integrity,
        maxSize: req.maxObjectSize,
      });
      const headers: Record<string, string> = { etag: quoted(info.etag) };
      if (info.versionId !== 'null') headers['x-amz-version-id'] = info.versionId;
      return { headers };
    },
  },
  { name: 'GetObject', method: 'GET', target: 'object', handler: (req) => getObject(req, false) },
  { name: 'HeadObject', method: 'HEAD', target: 'object', handler: (req) => getObject(req, true) },
  {
    name: 'DeleteObject',
    method: 'DELETE',
    target: 'object',
    handler: (req) => {
      const b = bucketOf(req);
      const versionId = versionIdOf(req);
      authorize(req, b, versionId === undefined ? 's3:DeleteObject' : 's3:DeleteObjectVersion', req.key, allowed(b.acl, req.principal, 'WRITE'));
      const r = req.store.deleteObject(req.bucket!, req.key!, versionIdOf(req));
      const headers: Record<string, string> = {};
      if (r.deleteMarker) headers['x-amz-delete-marker'] = 'true';
      if (r.versionId !== undefined && r.versionId !== 'null') headers['x-amz-version-id'] = r.versionId;
      return { status: 204, headers };
    },
  },
  {
    name: 'DeleteObjects',
    method: 'POST',
    target: 'bucket',
    sub: 'delete',
    handler: async (req) => {
      const b = bucketOf(req);
      const body = await req.readBody(2 * 1024 * 1024);
      // S3 insists on an integrity check for multi-delete; Content-MD5 (already verified) or a signed body hash.
      if (req.headers['content-md5'] === undefined && req.integrity.sha256 === undefined && !Object.keys(req.headers).some((h) => h.startsWith('x-amz-checksum-'))) {
        throw new S3Error('InvalidRequest', 'Missing required header for this request: Content-MD5');
      }
      const doc = parseS3Xml(body.toString('utf8'), 'Delete');
      const quiet = xmlText(doc, 'Quiet') === 'true';
      const objects = xmlList(doc, 'Object');
      if (objects.length > 1000) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
      const deleted: S3XmlObject[] = [];
      const errors: S3XmlObject[] = [];
      for (const o of objects) {
        const key = xmlText(o, 'Key') ?? '';
        const versionId = xmlText(o, 'VersionId') || undefined;
        try {
          authorize(req, b, versionId === undefined ? 's3:DeleteObject' : 's3:DeleteObjectVersion', key, allowed(b.acl, req.principal, 'WRITE'));
          const r = req.store.deleteObject(b.name, key, versionId);
          if (quiet) continue;
          deleted.push({
            Key: key,
            VersionId: versionId,
            DeleteMarker: r.deleteMarker ? true : undefined,
            DeleteMarkerVersionId: r.deleteMarker && versionId === undefined ? r.versionId : undefined,
          });
        } catch (e) {
          if (!(e instanceof S3Error)) throw e;
          errors.push({ Key: key, VersionId: versionId, Code: e.code, Message: e.message });
        }
      }
      return { xml: { root: 'DeleteResult', body: { Deleted: deleted, Error: errors } } };
    },
  },
];

