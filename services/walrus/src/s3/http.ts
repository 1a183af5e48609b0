// HTTP details of S3 objects: which request headers are stored with an object, Range parsing,
// conditional requests, and the headers a GET/HEAD answers with.
import type { IncomingHttpHeaders } from 'node:http';
import { S3Error } from '@mallee/aws-protocol';
import type { ByteRange, ObjectHeaders, ObjectInfo } from '../store/types.js';

const STORED_HEADERS = ['content-type', 'content-encoding', 'content-disposition', 'content-language', 'cache-control', 'expires', 'x-amz-website-redirect-location'];
/** S3's limit on user metadata (names and values of x-amz-meta-*). */
export const MAX_USER_METADATA = 2048;

/** Headers of a PUT / multipart create that become part of the object. */
export function objectHeadersFrom(headers: IncomingHttpHeaders): ObjectHeaders {
  const out: ObjectHeaders = {};
  let metaBytes = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const v = Array.isArray(value) ? value.join(',') : value;
    if (name.startsWith('x-amz-meta-')) {
      metaBytes += Buffer.byteLength(name.slice(11)) + Buffer.byteLength(v);
      out[name] = v;
    } else if (STORED_HEADERS.includes(name)) out[name] = v;
  }
  if (metaBytes > MAX_USER_METADATA) throw new S3Error('MetadataTooLarge', 'Your metadata headers exceed the maximum allowed metadata size.', { Size: String(metaBytes), MaxSizeAllowed: String(MAX_USER_METADATA) });
  // aws-chunked is how the body travelled, not how the object is encoded.
  if (out['content-encoding'] !== undefined) {
    const rest = out['content-encoding'].split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== 'aws-chunked');
    if (rest.length === 0) delete out['content-encoding'];
    else out['content-encoding'] = rest.join(',');
  }
  out['content-type'] ??= 'binary/octet-stream';
  return out;
}

export const quoted = (etag: string) => `"${etag}"`;
const httpDate = (d: Date) => d.toUTCString();

/** Response headers for an object (GET and HEAD). */
export function objectResponseHeaders(info: ObjectInfo): Record<string, string> {
  const h: Record<string, string> = {
    ...info.headers,
    etag: quoted(info.etag),
    'last-modified': httpDate(info.lastModified),
    'accept-ranges': 'bytes',
  };
  if (info.versionId !== 'null') h['x-amz-version-id'] = info.versionId;
  return h;
}

/** response-content-type & co. on a GET override the stored headers. */
export function responseOverrides(query: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['content-type', 'content-language', 'expires', 'cache-control', 'content-disposition', 'content-encoding']) {
    const v = query.get(`response-${name}`);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * The range a `Range` header asks for. S3 ignores what it cannot parse and multiple ranges (serving the
 * whole object), and answers InvalidRange when a well-formed range starts past the end.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  const invalid = () => new S3Error('InvalidRange', 'The requested range is not satisfiable', { RangeRequested: header, ActualObjectSize: String(size) });
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) throw invalid();
    return size === 0 ? undefined : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) throw invalid();
  return { start, end };
}

const etagMatches = (list: string, etag: string) =>
  list.split(',').some((t) => {
    const v = t.trim().replace(/^W\//, '');
    return v === '*' || v.replace(/"/g, '') === etag;
  });

/** Conditional GET/HEAD in S3's order: 412 PreconditionFailed, or 'not-modified' for a 304, or undefined to serve. */
export function checkConditions(headers: IncomingHttpHeaders, info: ObjectInfo, prefix = ''): 'not-modified' | undefined {
  const h = (n: string) => (typeof headers[prefix + n] === 'string' ? (headers[prefix + n] as string) : undefined);
  const ifMatch = h('if-match');
  const ifNoneMatch = h('if-none-match');
  const ifModifiedSince = h('if-modified-since');
  const ifUnmodifiedSince = h('if-unmodified-since');
  const modified = Math.floor(info.lastModified.getTime() / 1000) * 1000;
  const failed = () => new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: prefix ? `${prefix}if-match` : 'If-Match' });
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, info.etag)) throw failed();
  } else if (ifUnmodifiedSince !== undefined) {
    const t = Date.parse(ifUnmodifiedSince);
    if (!Number.isNaN(t) && modified > t) throw failed();
  }
  if (ifNoneMatch !== undefined) {
    if (etagMatches(ifNoneMatch, info.etag)) return 'not-modified';
  } else if (ifModifiedSince !== undefined) {
    const t = Date.parse(ifModifiedSince);
    if (!Number.isNaN(t) && modified <= t) return 'not-modified';
  }
  return undefined;
}

/** S3's `encoding-type=url`: form-style percent-encoding that keeps `/`. */
export function urlEncodeKey(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, '+').replace(/%2F/g, '/').replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}
