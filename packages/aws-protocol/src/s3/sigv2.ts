// S3's own Signature Version 2 (boto 2, s3cmd, euca2ools' bundle upload): HMAC-SHA1 over the verb,
// Content-MD5, Content-Type, Date (or Expires when presigned), the x-amz-* headers and the resource
// with its sub-resources. Carried in `Authorization: AWS key:sig` or `?AWSAccessKeyId&Expires&Signature`.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { CredentialLookup, Principal } from '../action.js';
import { decodeFormComponent } from '../query.js';
import type { HeaderMap } from '../sigv4.js';
import { S3Error } from './errors.js';

/** Query parameters that name a sub-resource and are therefore signed (AWS's list, plus boto's). */
export const SIGNED_SUBRESOURCES = new Set([
  'acl', 'cors', 'delete', 'lifecycle', 'location', 'logging', 'notification', 'partNumber', 'policy', 'requestPayment',
  'response-cache-control', 'response-content-disposition', 'response-content-encoding', 'response-content-language',
  'response-content-type', 'response-expires', 'restore', 'tagging', 'torrent', 'uploadId', 'uploads', 'versionId',
  'versioning', 'versions', 'website', 'select', 'select-type', 'replication', 'accelerate', 'encryption', 'object-lock',
  'legal-hold', 'retention', 'inventory', 'analytics', 'metrics', 'ownershipControls', 'publicAccessBlock', 'intelligent-tiering',
]);

export interface S3SigV2Request {
  method: string;
  headers: HeaderMap;
  /** Raw query string without `?`. */
  query: string;
  /**
   * The resource as the client signed it: `/bucket/key` with the key as sent on the wire (path-style),
   * or `/bucket` + raw path for virtual-host style. Candidates are tried in order.
   */
  resources: readonly string[];
}

export interface S3SigV2Verified {
  form: 'header' | 'query';
  accessKeyId: string;
  principal: Principal;
}

const header = (headers: HeaderMap, name: string): string | undefined => {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    return typeof v === 'string' ? v : v.join(',');
  }
  return undefined;
};

function queryPairs(raw: string): [string, string | undefined][] {
  const out: [string, string | undefined][] = [];
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    out.push(eq < 0 ? [decodeFormComponent(part), undefined] : [decodeFormComponent(part.slice(0, eq)), decodeFormComponent(part.slice(eq + 1))]);
  }
  return out;
}

/** `x-amz-*` headers, lower-cased, sorted, values trimmed and joined with commas, each `name:value\n`. */
export function canonicalAmzHeaders(headers: HeaderMap): string {
  const map = new Map<string, string[]>();
  for (const [k, v] of Object.entries(headers)) {
    const name = k.toLowerCase();
    if (!name.startsWith('x-amz-') || v === undefined) continue;
    const list = map.get(name) ?? [];
    for (const one of typeof v === 'string' ? [v] : v) list.push(one.trim().replace(/\s*\r?\n\s*/g, ' '));
    map.set(name, list);
  }
  return [...map.keys()].sort().map((name) => `${name}:${map.get(name)!.join(',')}\n`).join('');
}

/** Resource plus the signed sub-resources of the query, sorted, values decoded (`/b/k?partNumber=1&uploadId=x`). */
export function canonicalResource(resource: string, rawQuery: string): string {
  const subs = queryPairs(rawQuery)
    .filter(([k]) => SIGNED_SUBRESOURCES.has(k))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([k, v]) => (v === undefined ? k : `${k}=${v}`));
  return subs.length === 0 ? resource : `${resource}?${subs.join('&')}`;
}

/** The SigV2 string to sign; `dateOrExpires` is the Date header (empty when x-amz-date is sent) or the presign Expires. */
export function s3StringToSign(method: string, headers: HeaderMap, dateOrExpires: string, resource: string, rawQuery: string): string {
  return [
    method.toUpperCase(),
    header(headers, 'content-md5')?.trim() ?? '',
    header(headers, 'content-type')?.trim() ?? '',
    dateOrExpires,
  ].join('\n') + '\n' + canonicalAmzHeaders(headers) + canonicalResource(resource, rawQuery);
}

export function s3SignV2(stringToSign: string, secretAccessKey: string): string {
  return createHmac('sha1', secretAccessKey).update(stringToSign, 'utf8').digest('base64');
}

/** Which S3 SigV2 form a request carries, if any. */
export function s3SigV2Form(req: Pick<S3SigV2Request, 'headers' | 'query'>): 'header' | 'query' | undefined {
  const auth = header(req.headers, 'authorization');
  if (auth !== undefined && /^AWS [^:\s]+:/.test(auth.trim())) return 'header';
  if (/(^|&)AWSAccessKeyId=/.test(req.query) && /(^|&)Signature=/.test(req.query)) return 'query';
  return undefined;
}

const mismatch = () =>
  new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');

export interface VerifyS3SigV2Options {
  credentials: CredentialLookup;
  maxSkewSeconds?: number;
  now?: Date;
}

export async function verifyS3SigV2(req: S3SigV2Request, opts: VerifyS3SigV2Options): Promise<S3SigV2Verified> {
  const form = s3SigV2Form(req);
  if (form === undefined) throw new S3Error('AccessDenied', 'Access Denied');
  const now = opts.now ?? new Date();
  let accessKeyId: string;
  let signature: string;
  let dateOrExpires: string;
  // Query authentication: the signed query parameters are not part of the canonical resource.
  let query = req.query;
  let headers = req.headers;
  if (form === 'header') {
    const auth = header(req.headers, 'authorization')!.trim();
    const colon = auth.lastIndexOf(':');
    accessKeyId = auth.slice(4, colon);
    signature = auth.slice(colon + 1);
    const amzDate = header(req.headers, 'x-amz-date');
    const date = header(req.headers, 'date');
    const when = Date.parse(amzDate ?? date ?? '');
    if (Number.isNaN(when)) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
    const skew = (opts.maxSkewSeconds ?? 900) * 1000;
    if (Math.abs(now.getTime() - when) > skew) {
      throw new S3Error('RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.', {
        RequestTime: amzDate ?? date ?? '',
        ServerTime: now.toISOString(),
      });
    }
    dateOrExpires = amzDate !== undefined ? '' : (date ?? '').trim();
  } else {
    const pairs = queryPairs(req.query);
    const get = (k: string) => pairs.find(([key]) => key === k)?.[1];
    accessKeyId = get('AWSAccessKeyId') ?? '';
    signature = (get('Signature') ?? '').replace(/ /g, '+');
    const expires = get('Expires');
    if (expires === undefined || !/^\d{1,12}$/.test(expires)) throw new S3Error('AccessDenied', 'Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters');
    if (now.getTime() > +expires * 1000) throw new S3Error('AccessDenied', 'Request has expired', { Expires: new Date(+expires * 1000).toISOString(), ServerTime: now.toISOString() });
    dateOrExpires = expires;
    // Presigned URLs carry x-amz-* "headers" (boto 2 puts x-amz-meta-* there) that were signed as headers.
    const amz = pairs.filter(([k]) => k.toLowerCase().startsWith('x-amz-'));
    if (amz.length > 0) {
      const merged: Record<string, string | readonly string[] | undefined> = { ...headers };
      for (const [k, v] of amz) merged[k.toLowerCase()] = v ?? '';
      headers = merged;
    }
    query = req.query
      .split('&')
      .filter((p) => !/^(AWSAccessKeyId|Expires|Signature)(=|$)/.test(p))
      .join('&');
  }
  const found = await opts.credentials(accessKeyId);
  if (found === undefined) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: accessKeyId });
  const given = Buffer.from(signature, 'utf8');
  for (const resource of req.resources) {
    const expected = Buffer.from(s3SignV2(s3StringToSign(req.method, headers, dateOrExpires, resource, query), found.secretAccessKey), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) return { form, accessKeyId, principal: found.principal };
  }
  throw mismatch();
}
