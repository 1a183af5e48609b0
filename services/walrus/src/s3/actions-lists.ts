// Listing actions: ListObjects (v1), ListObjectsV2, ListObjectVersions.
import { S3Error, type S3XmlValue } from '@mallee/aws-protocol';
import type { ObjectInfo } from '../store/types.js';
import { allowed } from './acl.js';
import { authorize } from './access.js';
import { bucketOf } from './actions-buckets.js';
import type { S3Action, S3Request } from './context.js';
import { quoted, urlEncodeKey } from './http.js';

function maxKeysOf(req: S3Request, name = 'max-keys'): number {
  const v = req.query.get(name);
  if (v === undefined || v === '') return 1000;
  if (!/^\d+$/.test(v)) throw new S3Error('InvalidArgument', `Provided ${name} not an integer or within integer range`, { ArgumentName: name, ArgumentValue: v });
  return Math.min(Number(v), 1000);
}

function listing(req: S3Request, action = 's3:ListBucket') {
  const b = bucketOf(req);
  authorize(req, b, action, undefined, allowed(b.acl, req.principal, 'READ'));
  const encodingType = req.query.get('encoding-type');
  if (encodingType !== undefined && encodingType !== 'url') throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request', { ArgumentName: 'encoding-type', ArgumentValue: encodingType });
  const enc = (s: string | undefined) => (s === undefined || encodingType !== 'url' ? s : urlEncodeKey(s));
  return { b, enc, encodingType, prefix: req.query.get('prefix') ?? '', delimiter: req.query.get('delimiter') || undefined };
}

const owner = (o: ObjectInfo) => ({ ID: o.owner.id, DisplayName: o.owner.displayName });

function contents(objects: ObjectInfo[], enc: (s: string) => string | undefined, withOwner: boolean): S3XmlValue[] {
  return objects.map((o) => ({ Key: enc(o.key), LastModified: o.lastModified, ETag: quoted(o.etag), Size: o.size, ...(withOwner ? { Owner: owner(o) } : {}), StorageClass: 'STANDARD' }));
}

export const listActions: S3Action[] = [
  {
    name: 'ListObjectVersions',
    method: 'GET',
    target: 'bucket',
    sub: 'versions',
    handler: (req) => {
      const { b, enc, encodingType, prefix, delimiter } = listing(req, 's3:ListBucketVersions');
      const maxKeys = maxKeysOf(req);
      const keyMarker = req.query.get('key-marker') || undefined;
      const versionIdMarker = req.query.get('version-id-marker') || undefined;
      const r = req.store.listObjectVersions(b.name, { prefix, ...(delimiter ? { delimiter } : {}), ...(keyMarker ? { keyMarker } : {}), ...(versionIdMarker ? { versionIdMarker } : {}), maxKeys });
      return {
        xml: {
          root: 'ListVersionsResult',
          body: {
            Name: b.name,
            Prefix: enc(prefix),
            KeyMarker: enc(keyMarker ?? ''),
            VersionIdMarker: versionIdMarker ?? '',
            NextKeyMarker: r.isTruncated ? enc(r.nextKeyMarker) : undefined,
            NextVersionIdMarker: r.isTruncated ? r.nextVersionIdMarker : undefined,
            MaxKeys: maxKeys,
            Delimiter: enc(delimiter),
            IsTruncated: r.isTruncated,
            $seq: r.versions.map((v): [string, S3XmlValue] =>
              v.deleteMarker
                ? ['DeleteMarker', { Key: enc(v.key), VersionId: v.versionId, IsLatest: v.isLatest, LastModified: v.lastModified, Owner: owner(v) }]
                : ['Version', { Key: enc(v.key), VersionId: v.versionId, IsLatest: v.isLatest, LastModified: v.lastModified, ETag: quoted(v.etag), Size: v.size, Owner: owner(v), StorageClass: 'STANDARD' }],
            ),
            CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: enc(p) })),
            EncodingType: encodingType,
          },
        },
      };
    },
  },
  {
    name: 'ListObjectsV2',
    method: 'GET',
    target: 'bucket',
    when: (req) => req.query.get('list-type') === '2',
    handler: (req) => {
      const { b, enc, encodingType, prefix, delimiter } = listing(req);
      const maxKeys = maxKeysOf(req);
      const token = req.query.get('continuation-token');
      const startAfter = req.query.get('start-after') || undefined;
      let after = startAfter;
      if (token !== undefined) {
        const decoded = Buffer.from(token, 'base64url').toString('utf8');
        if (token === '' || !decoded.startsWith('1:')) throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect', { ArgumentName: 'continuation-token', ArgumentValue: token });
        after = decoded.slice(2);
      }
      const r = req.store.listObjects(b.name, { prefix, ...(delimiter ? { delimiter } : {}), ...(after !== undefined ? { after } : {}), maxKeys });
      const fetchOwner = req.query.get('fetch-owner') === 'true';
      return {
        xml: {
          root: 'ListBucketResult',
          body: {
            Name: b.name,
            Prefix: enc(prefix),
            MaxKeys: maxKeys,
            Delimiter: enc(delimiter),
            IsTruncated: r.isTruncated,
            Contents: contents(r.objects, enc, fetchOwner),
            CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: enc(p) })),
            EncodingType: encodingType,
            KeyCount: r.objects.length + r.commonPrefixes.length,
            ContinuationToken: token,
            NextContinuationToken: r.isTruncated && r.nextMarker !== undefined ? Buffer.from('1:' + r.nextMarker).toString('base64url') : undefined,
            StartAfter: enc(startAfter),
          },
        },
      };
    },
  },
  {
    name: 'ListObjects',
    method: 'GET',
    target: 'bucket',
    handler: (req) => {
      const { b, enc, encodingType, prefix, delimiter } = listing(req);
      const maxKeys = maxKeysOf(req);
      const marker = req.query.get('marker') || undefined;
      const r = req.store.listObjects(b.name, { prefix, ...(delimiter ? { delimiter } : {}), ...(marker !== undefined ? { after: marker } : {}), maxKeys });
      return {
        xml: {
          root: 'ListBucketResult',
          body: {
            Name: b.name,
            Prefix: enc(prefix),
            Marker: enc(marker ?? ''),
            NextMarker: r.isTruncated && delimiter ? enc(r.nextMarker) : undefined,
            MaxKeys: maxKeys,
            Delimiter: enc(delimiter),
            IsTruncated: r.isTruncated,
            Contents: contents(r.objects, enc, true),
            CommonPrefixes: r.commonPrefixes.map((p) => ({ Prefix: enc(p) })),
            EncodingType: encodingType,
          },
        },
      };
    },
  },
];
