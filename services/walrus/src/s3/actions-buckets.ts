// Service and bucket actions: ListBuckets, Create/Delete/HeadBucket, GetBucketLocation,
// Get/PutBucketVersioning, Get/PutBucketAcl.
import { S3Error, S3_NAMESPACE, XML_DECLARATION, escapeXml, parseS3Xml, xmlText } from '@mallee/aws-protocol';
import { checkBucketName } from '../store/names.js';
import type { BucketInfo } from '../store/types.js';
import { aclFromHeaders, aclXml, allowed, cannedAcl, ownerOf, parseAclXml } from './acl.js';
import { authorize, isOwner } from './access.js';
import { parsePolicy } from './policy.js';
import type { S3Action, S3Request } from './context.js';

export function signedIn(req: S3Request) {
  if (!req.principal) throw new S3Error('AccessDenied', 'Access Denied');
  return req.principal;
}

export function bucketOf(req: S3Request): BucketInfo {
  const b = req.store.getBucket(req.bucket!);
  if (!b) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: req.bucket! });
  return b;
}

/** Bucket configuration is its owner's (or a cloud admin's), unless a bucket policy says otherwise. */
export function ownedBucket(req: S3Request, action: string): BucketInfo {
  const b = bucketOf(req);
  authorize(req, b, action, undefined, isOwner(req, b));
  return b;
}

/** The policy itself only ever belongs to the owner: a policy cannot lock its owner out of fixing it. */
function policyOwner(req: S3Request): BucketInfo {
  const b = bucketOf(req);
  if (!isOwner(req, b) && !req.principal?.isAdmin) throw new S3Error('AccessDenied', 'Access Denied');
  return b;
}

export const bucketActions: S3Action[] = [
  {
    name: 'ListBuckets',
    method: 'GET',
    target: 'service',
    handler: (req) => {
      const p = signedIn(req);
      return {
        xml: {
          root: 'ListAllMyBucketsResult',
          body: {
            Owner: { ID: p.accountId, DisplayName: p.accountName },
            Buckets: { Bucket: req.store.listBuckets(p.accountId).map((b) => ({ Name: b.name, CreationDate: b.created })) },
          },
        },
      };
    },
  },
  {
    name: 'PutBucketVersioning',
    method: 'PUT',
    target: 'bucket',
    sub: 'versioning',
    handler: async (req) => {
      ownedBucket(req, 's3:PutBucketVersioning');
      const doc = parseS3Xml((await req.readBody()).toString('utf8'), 'VersioningConfiguration');
      const status = xmlText(doc, 'Status');
      if (status !== 'Enabled' && status !== 'Suspended') throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
      req.store.setBucketVersioning(req.bucket!, status);
      return {};
    },
  },
  {
    name: 'GetBucketVersioning',
    method: 'GET',
    target: 'bucket',
    sub: 'versioning',
    handler: (req) => {
      const b = ownedBucket(req, 's3:GetBucketVersioning');
      return { xml: { root: 'VersioningConfiguration', body: b.versioning === '' ? {} : { Status: b.versioning } } };
    },
  },
  {
    name: 'GetBucketLocation',
    method: 'GET',
    target: 'bucket',
    sub: 'location',
    handler: (req) => {
      const b = ownedBucket(req, 's3:GetBucketLocation');
      // A text-only root element, which the object serialiser does not produce.
      return { headers: { 'content-type': 'application/xml' }, body: `${XML_DECLARATION}\n<LocationConstraint xmlns="${S3_NAMESPACE}">${escapeXml(b.location)}</LocationConstraint>` };
    },
  },
  {
    name: 'PutBucketPolicy',
    method: 'PUT',
    target: 'bucket',
    sub: 'policy',
    handler: async (req) => {
      const b = policyOwner(req);
      const text = (await req.readBody(64 * 1024)).toString('utf8');
      parsePolicy(text, b.name);
      req.store.setBucketPolicy(b.name, text);
      return { status: 204 };
    },
  },
  {
    name: 'GetBucketPolicy',
    method: 'GET',
    target: 'bucket',
    sub: 'policy',
    handler: (req) => {
      const b = policyOwner(req);
      if (!b.policy) throw new S3Error('NoSuchBucketPolicy', 'The bucket policy does not exist', { BucketName: b.name });
      return { headers: { 'content-type': 'application/json' }, body: b.policy };
    },
  },
  {
    name: 'DeleteBucketPolicy',
    method: 'DELETE',
    target: 'bucket',
    sub: 'policy',
    handler: (req) => {
      const b = policyOwner(req);
      req.store.setBucketPolicy(b.name, undefined);
      return { status: 204 };
    },
  },
  {
    name: 'PutBucketAcl',
    method: 'PUT',
    target: 'bucket',
    sub: 'acl',
    handler: async (req) => {
      const b = bucketOf(req);
      authorize(req, b, 's3:PutBucketAcl', undefined, allowed(b.acl, req.principal, 'WRITE_ACP'));
      const fromHeaders = aclFromHeaders(req.headers, b.owner);
      const body = await req.readBody();
      const acl = fromHeaders ?? (body.length > 0 ? parseAclXml(body.toString('utf8'), b.owner) : undefined);
      if (!acl) throw new S3Error('MissingSecurityHeader', 'Your request was missing a required header', { MissingHeaderName: 'x-amz-acl' });
      req.store.setBucketAcl(b.name, acl);
      return {};
    },
  },
  {
    name: 'GetBucketAcl',
    method: 'GET',
    target: 'bucket',
    sub: 'acl',
    handler: (req) => {
      const b = bucketOf(req);
      authorize(req, b, 's3:GetBucketAcl', undefined, allowed(b.acl, req.principal, 'READ_ACP'));
      return { xml: { root: 'AccessControlPolicy', body: aclXml(b.acl) } };
    },
  },
  {
    name: 'CreateBucket',
    method: 'PUT',
    target: 'bucket',
    handler: async (req) => {
      const p = signedIn(req);
      checkBucketName(req.bucket!);
      const body = await req.readBody();
      let location = '';
      if (body.length > 0) location = xmlText(parseS3Xml(body.toString('utf8'), 'CreateBucketConfiguration'), 'LocationConstraint') ?? '';
      const owner = ownerOf(p);
      req.store.createBucket(req.bucket!, owner, aclFromHeaders(req.headers, owner) ?? cannedAcl('private', owner), location);
      return { headers: { location: `/${req.bucket}` } };
    },
  },
  {
    name: 'HeadBucket',
    method: 'HEAD',
    target: 'bucket',
    handler: (req) => {
      const b = bucketOf(req);
      authorize(req, b, 's3:ListBucket', undefined, allowed(b.acl, req.principal, 'READ'));
      return { headers: { 'x-amz-bucket-region': b.location || req.region } };
    },
  },
  {
    name: 'DeleteBucket',
    method: 'DELETE',
    target: 'bucket',
    handler: (req) => {
      ownedBucket(req, 's3:DeleteBucket');
      req.store.deleteBucket(req.bucket!);
      return { status: 204 };
    },
  },
];
