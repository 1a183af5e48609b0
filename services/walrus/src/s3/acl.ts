// Access control lists: canned ACLs and x-amz-grant-* headers into an Acl, AccessControlPolicy XML
// both ways, and the permission check every action makes (owner, grants, AllUsers/AuthenticatedUsers).
import type { IncomingHttpHeaders } from 'node:http';
import { S3Error, XSI_NAMESPACE, parseS3Xml, xmlList, xmlText, type Principal, type S3XmlObject } from '@mallee/aws-protocol';
import type { Acl, Grant, Grantee, Owner, Permission } from '../store/types.js';

export const ALL_USERS = 'http://acs.amazonaws.com/groups/global/AllUsers';
export const AUTHENTICATED_USERS = 'http://acs.amazonaws.com/groups/global/AuthenticatedUsers';
export const LOG_DELIVERY = 'http://acs.amazonaws.com/groups/s3/LogDelivery';
const PERMISSIONS: readonly Permission[] = ['FULL_CONTROL', 'READ', 'WRITE', 'READ_ACP', 'WRITE_ACP'];

export const ownerOf = (p: Principal): Owner => ({ id: p.accountId, displayName: p.accountName });

const fullControl = (o: Owner): Grant => ({ grantee: { type: 'CanonicalUser', id: o.id, displayName: o.displayName }, permission: 'FULL_CONTROL' });
const group = (uri: string, permission: Permission): Grant => ({ grantee: { type: 'Group', uri }, permission });

/** The ACL a canned name stands for; bucketOwner is the owner of the bucket an object goes into. */
export function cannedAcl(name: string, owner: Owner, bucketOwner?: Owner): Acl {
  const grants: Grant[] = [fullControl(owner)];
  switch (name) {
    case 'private':
      break;
    // euca-upload-bundle's default (and ec2-bundle-read): EC2 may read the bundle. Here that is the
    // cloud admin, who passes every check anyway, so both are private to everyone else.
    case 'aws-exec-read':
    case 'ec2-bundle-read':
      break;
    case 'public-read':
      grants.push(group(ALL_USERS, 'READ'));
      break;
    case 'public-read-write':
      grants.push(group(ALL_USERS, 'READ'), group(ALL_USERS, 'WRITE'));
      break;
    case 'authenticated-read':
      grants.push(group(AUTHENTICATED_USERS, 'READ'));
      break;
    case 'bucket-owner-read':
      if (bucketOwner && bucketOwner.id !== owner.id) grants.push({ grantee: { type: 'CanonicalUser', ...bucketOwner }, permission: 'READ' });
      break;
    case 'bucket-owner-full-control':
      if (bucketOwner && bucketOwner.id !== owner.id) grants.push(fullControl(bucketOwner));
      break;
    case 'log-delivery-write':
      grants.push(group(LOG_DELIVERY, 'WRITE'), group(LOG_DELIVERY, 'READ_ACP'));
      break;
    default:
      throw new S3Error('InvalidArgument', `Invalid canned ACL ${name}`, { ArgumentName: 'x-amz-acl', ArgumentValue: name });
  }
  return { owner, grants };
}

const GRANT_HEADERS: Record<string, Permission> = {
  'x-amz-grant-full-control': 'FULL_CONTROL',
  'x-amz-grant-read': 'READ',
  'x-amz-grant-write': 'WRITE',
  'x-amz-grant-read-acp': 'READ_ACP',
  'x-amz-grant-write-acp': 'WRITE_ACP',
};

/** `id="…", uri="…"` lists from x-amz-grant-* headers. */
function parseGrantHeader(value: string, permission: Permission): Grant[] {
  return value.split(',').map((item) => {
    const m = /^\s*(id|uri|emailAddress)\s*=\s*"?([^"]*)"?\s*$/.exec(item);
    if (!m) throw new S3Error('InvalidArgument', `Invalid grant ${item.trim()}`, { ArgumentName: 'x-amz-grant', ArgumentValue: item.trim() });
    if (m[1] === 'uri') return group(m[2]!, permission);
    if (m[1] === 'emailAddress') throw new S3Error('NotImplemented', 'Grants by email address are not supported; grant by canonical id (the account id)');
    return { grantee: { type: 'CanonicalUser', id: m[2]! }, permission };
  });
}

/** The ACL a request asks for with x-amz-acl or x-amz-grant-* headers; undefined when it names none. */
export function aclFromHeaders(headers: IncomingHttpHeaders, owner: Owner, bucketOwner?: Owner): Acl | undefined {
  const canned = headers['x-amz-acl'];
  const grantHeaders = Object.keys(GRANT_HEADERS).filter((h) => typeof headers[h] === 'string');
  if (typeof canned === 'string' && grantHeaders.length > 0) {
    throw new S3Error('InvalidRequest', 'Specifying both Canned ACLs and Header Grants is not allowed');
  }
  if (typeof canned === 'string') return cannedAcl(canned.trim(), owner, bucketOwner);
  if (grantHeaders.length === 0) return undefined;
  return { owner, grants: grantHeaders.flatMap((h) => parseGrantHeader(headers[h] as string, GRANT_HEADERS[h]!)) };
}

export function aclXml(acl: Acl): S3XmlObject {
  return {
    Owner: { ID: acl.owner.id, DisplayName: acl.owner.displayName },
    AccessControlList: {
      Grant: acl.grants.map((g) => ({
        Grantee:
          g.grantee.type === 'CanonicalUser'
            ? { $attrs: { 'xmlns:xsi': XSI_NAMESPACE, 'xsi:type': 'CanonicalUser' }, ID: g.grantee.id, DisplayName: g.grantee.displayName }
            : { $attrs: { 'xmlns:xsi': XSI_NAMESPACE, 'xsi:type': 'Group' }, URI: g.grantee.uri },
        Permission: g.permission,
      })),
    },
  };
}

/** An AccessControlPolicy document; the owner in it must be the resource's owner. */
export function parseAclXml(xml: string, owner: Owner): Acl {
  const doc = parseS3Xml(xml, 'AccessControlPolicy');
  const ownerId = xmlText(doc['Owner'], 'ID');
  if (ownerId !== undefined && ownerId !== owner.id) throw new S3Error('AccessDenied', 'Access Denied');
  const list = doc['AccessControlList'];
  const grants = xmlList(list, 'Grant').map((g): Grant => {
    const grantee = (g as Record<string, unknown>)['Grantee'] as Record<string, unknown> | undefined;
    const permission = xmlText(g, 'Permission') as Permission | undefined;
    if (!grantee || !permission || !PERMISSIONS.includes(permission)) throw new S3Error('MalformedACLError', 'The XML you provided was not well-formed or did not validate against our published schema');
    const type = String(grantee['@type'] ?? grantee['@xsi:type'] ?? '');
    let who: Grantee;
    if (type.endsWith('Group') || xmlText(grantee, 'URI') !== undefined) who = { type: 'Group', uri: xmlText(grantee, 'URI') ?? '' };
    else if (xmlText(grantee, 'ID') !== undefined) {
      const name = xmlText(grantee, 'DisplayName');
      who = { type: 'CanonicalUser', id: xmlText(grantee, 'ID')!, ...(name ? { displayName: name } : {}) };
    } else throw new S3Error('MalformedACLError', 'Grants by email address are not supported');
    return { grantee: who, permission };
  });
  return { owner, grants };
}

/** May this principal (undefined = anonymous) act with `permission` on a resource with this ACL? */
export function allowed(acl: Acl, principal: Principal | undefined, permission: Permission): boolean {
  if (principal?.isAdmin) return true;
  if (principal && principal.accountId === acl.owner.id && (permission === 'READ_ACP' || permission === 'WRITE_ACP')) return true;
  return acl.grants.some((g) => {
    if (g.permission !== permission && g.permission !== 'FULL_CONTROL') return false;
    if (g.grantee.type === 'Group') return g.grantee.uri === ALL_USERS || (g.grantee.uri === AUTHENTICATED_USERS && principal !== undefined);
    return principal !== undefined && g.grantee.id === principal.accountId;
  });
}

export function requirePermission(acl: Acl, principal: Principal | undefined, permission: Permission): void {
  if (!allowed(acl, principal, permission)) throw new S3Error('AccessDenied', 'Access Denied');
}
