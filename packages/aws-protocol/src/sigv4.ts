// AWS Signature Version 4: verification of incoming requests (Authorization header and presigned
// query forms) against the credential scope the client chose, and a signer for tests and clients.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { CredentialLookup, Principal } from './action.js';
import { Ec2Error } from './errors.js';
import { decodeFormComponent } from './query.js';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** Longest a presigned URL may live (AWS: seven days). */
export const MAX_PRESIGN_SECONDS = 604_800;

export type HeaderMap = Readonly<Record<string, string | readonly string[] | undefined>>;

/** A request as it arrived: the raw path and query exactly as on the wire, headers, and body bytes. */
export interface IncomingRequest {
  method: string;
  /** Raw path, still percent-encoded, without the query. */
  path: string;
  /** Raw query string without the leading `?`. */
  query: string;
  headers: HeaderMap;
  /** The body; undefined when the caller has not buffered it (S3 streaming), so its hash cannot be checked here. */
  body?: Buffer | string;
}

export interface VerifySigV4Options {
  credentials: CredentialLookup;
  /** Service names accepted in the credential scope (EC2: ['ec2'], S3: ['s3']). */
  services: readonly string[];
  /**
   * Also accept, as the scope's service, the first DNS label of the Host header: boto 2 (2.49, Debian's
   * python3-boto) signs EC2 with SigV4 and derives the service from the endpoint's host name
   * (`<service>.<region>.amazonaws.com`), so `clc.example.com` is signed for service `clc`.
   */
  allowHostLabelService?: boolean;
  /** EC2 and most services URI-encode the already-encoded path again; S3 signs the path as sent. Default true. */
  doubleEncodePath?: boolean;
  /** Allowed distance between the request's date and ours. Default 900 s (AWS's 15 minutes). */
  maxSkewSeconds?: number;
  now?: Date;
}

export interface StreamingSeed {
  /** The x-amz-content-sha256 value, e.g. STREAMING-AWS4-HMAC-SHA256-PAYLOAD. */
  mode: string;
  /** Signature of the request headers: the "previous signature" of the first chunk. */
  seedSignature: string;
  signingKey: Buffer;
  amzDate: string;
  /** `date/region/service/aws4_request`. */
  scope: string;
}

export interface SigV4Verified {
  form: 'header' | 'query';
  accessKeyId: string;
  principal: Principal;
  region: string;
  service: string;
  amzDate: string;
  signedHeaders: string[];
  /** The payload hash used in the canonical request. */
  payloadHash: string;
  /**
   * verified: the body's hash was checked; unsigned: UNSIGNED-PAYLOAD (the body is not covered);
   * streaming: the caller must verify chunk signatures from `streaming`; deferred: a hash was claimed
   * but no body was supplied, so the caller must compare it with the bytes it reads.
   */
  payload: 'verified' | 'unsigned' | 'streaming' | 'deferred';
  streaming?: StreamingSeed;
}

const incomplete = (message: string) => new Ec2Error('IncompleteSignature', message);
const signatureMismatch = () =>
  new Ec2Error(
    'SignatureDoesNotMatch',
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
  );
export const authFailure = () => new Ec2Error('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);

const sha256Hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

/** RFC 3986 encoding of the UTF-8 bytes: unreserved characters stay, everything else is %XX (uppercase). */
export function uriEncode(s: string, keepSlash = false): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    if ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e || (keepSlash && b === 0x2f)) {
      out += String.fromCharCode(b);
    } else {
      out += '%' + (b < 16 ? '0' : '') + b.toString(16).toUpperCase();
    }
  }
  return out;
}

/** RFC 3986 §5.2.4 dot-segment removal plus collapsing of empty segments, as botocore does before signing. */
function removeDotSegments(path: string): string {
  if (path === '') return '/';
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  const first = path.startsWith('/') ? '/' : '';
  const last = path.endsWith('/') && out.length > 0 ? '/' : '';
  return first + out.join('/') + last;
}

export function canonicalUri(rawPath: string, doubleEncode: boolean): string {
  if (!doubleEncode) return rawPath === '' ? '/' : rawPath;
  return uriEncode(removeDotSegments(rawPath), true);
}

/** Canonical query from a raw query string: decode each pair, re-encode per RFC 3986, sort. */
export function canonicalQuery(rawQuery: string, exclude?: string): string {
  if (rawQuery === '') return '';
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decodeFormComponent(eq < 0 ? part : part.slice(0, eq));
    if (key === exclude) continue;
    const value = eq < 0 ? '' : decodeFormComponent(part.slice(eq + 1));
    pairs.push([uriEncode(key), uriEncode(value)]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

/** Lower-cased header name → its values (repeated headers keep every value). */
function headerValues(headers: HeaderMap): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const key = name.toLowerCase();
    const list = map.get(key) ?? [];
    if (typeof value === 'string') list.push(value);
    else list.push(...value);
    map.set(key, list);
  }
  return map;
}

function headerValue(headers: Map<string, string[]>, name: string): string | undefined {
  const v = headers.get(name);
  return v === undefined ? undefined : v.join(',');
}

function canonicalHeaders(headers: Map<string, string[]>, signed: readonly string[]): string {
  return signed
    .map((name) => `${name}:${(headers.get(name) ?? []).map((v) => v.trim().replace(/\s+/g, ' ')).join(',')}\n`)
    .join('');
}

/** Derived keys by a digest of (secret, date, region, service): one key serves a client for a day, and
 * deriving it costs four HMACs per request (a tenth of a small S3 request's CPU in Walrus's profile). */
const signingKeys = new Map<string, Buffer>();

export function deriveSigningKey(secretAccessKey: string, date: string, region: string, service: string): Buffer {
  const id = createHash('sha256').update(`${secretAccessKey}\0${date}\0${region}\0${service}`).digest('base64');
  let key = signingKeys.get(id);
  if (!key) {
    key = hmac(hmac(hmac(hmac('AWS4' + secretAccessKey, date), region), service), 'aws4_request');
    if (signingKeys.size >= 1024) signingKeys.clear();
    signingKeys.set(id, key);
  }
  return key;
}

function stringToSign(amzDate: string, scope: string, canonicalRequest: string): string {
  return `${SIGV4_ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
}

function canonicalRequestOf(method: string, uri: string, query: string, headers: string, signed: readonly string[], payloadHash: string): string {
  return `${method.toUpperCase()}\n${uri}\n${query}\n${headers}\n${signed.join(';')}\n${payloadHash}`;
}

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

function parseAmzDate(s: string): Date | undefined {
  const m = AMZ_DATE.exec(s);
  if (!m) return undefined;
  const d = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(d.getTime()) || d.toISOString().slice(0, 19).replace(/[-:]/g, '') + 'Z' !== s ? undefined : d;
}

export function toAmzDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

interface ParsedAuth {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

function parseCredential(credential: string): Omit<ParsedAuth, 'signedHeaders' | 'signature'> {
  const parts = credential.split('/');
  if (parts.length < 5 || parts.slice(-4).some((p) => p === '') || parts.slice(0, -4).join('/') === '') {
    throw incomplete(`Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '${credential}'`);
  }
  const [date, region, service, terminator] = parts.slice(-4) as [string, string, string, string];
  if (terminator !== 'aws4_request') throw incomplete(`Credential should be scoped with a valid terminator: 'aws4_request', not '${terminator}'.`);
  return { accessKeyId: parts.slice(0, -4).join('/'), date, region, service };
}

function parseSignedHeaders(s: string): string[] {
  const names = s.split(';').map((h) => h.trim().toLowerCase());
  if (names.some((n) => n === '' || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(n))) throw incomplete(`Invalid SignedHeaders value '${s}'`);
  return [...new Set(names)].sort();
}

/** Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`. */
export function parseAuthorizationHeader(header: string): ParsedAuth {
  const sp = header.indexOf(' ');
  const algorithm = sp < 0 ? header : header.slice(0, sp);
  if (algorithm !== SIGV4_ALGORITHM) throw incomplete(`Unsupported AWS 'algorithm': '${algorithm}'`);
  const fields = new Map<string, string>();
  for (const item of (sp < 0 ? '' : header.slice(sp + 1)).split(',')) {
    const t = item.trim();
    if (t === '') continue;
    const eq = t.indexOf('=');
    if (eq < 0) throw incomplete(`Authorization header has a malformed element '${t}'`);
    fields.set(t.slice(0, eq).trim(), t.slice(eq + 1).trim());
  }
  const missing = ['Credential', 'SignedHeaders', 'Signature'].filter((k) => !fields.get(k));
  if (missing.length > 0) {
    throw incomplete(missing.map((k) => `Authorization header requires '${k}' parameter.`).join(' ') + ` Authorization=${header.slice(0, 200)}`);
  }
  return { ...parseCredential(fields.get('Credential')!), signedHeaders: parseSignedHeaders(fields.get('SignedHeaders')!), signature: fields.get('Signature')! };
}

/** Which SigV4 form a request carries, if any. */
export function sigV4Form(req: Pick<IncomingRequest, 'headers' | 'query'>): 'header' | 'query' | undefined {
  const auth = headerValue(headerValues(req.headers), 'authorization');
  if (auth !== undefined && auth.trimStart().startsWith('AWS4-')) return 'header';
  if (/(^|&)X-Amz-Algorithm=/i.test(req.query)) return 'query';
  return undefined;
}

function rawQueryParams(rawQuery: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decodeFormComponent(eq < 0 ? part : part.slice(0, eq));
    if (!map.has(key)) map.set(key, eq < 0 ? '' : decodeFormComponent(part.slice(eq + 1)));
  }
  return map;
}

/** First DNS label of a Host header value, as boto 2 splits it (`clc.example.com:8773` → `clc`). */
function hostLabel(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  return host.trim().replace(/:\d+$/, '').split('.')[0];
}

function sameSignature(expectedHex: string, given: string): boolean {
  if (!/^[0-9a-fA-F]{64}$/.test(given)) return false;
  return timingSafeEqual(Buffer.from(expectedHex, 'hex'), Buffer.from(given, 'hex'));
}

function checkDate(amzDate: string, scopeDate: string, now: Date, maxSkewSeconds: number, expires?: number): void {
  const at = parseAmzDate(amzDate);
  if (at === undefined) throw incomplete(`Invalid X-Amz-Date '${amzDate}': expected YYYYMMDD'T'HHMMSS'Z'`);
  if (scopeDate !== amzDate.slice(0, 8)) {
    throw new Ec2Error(
      'SignatureDoesNotMatch',
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}', from '${amzDate}'.`,
    );
  }
  const skewMs = maxSkewSeconds * 1000;
  const delta = now.getTime() - at.getTime();
  if (delta < -skewMs) throw new Ec2Error('RequestExpired', `Request date ${amzDate} is more than ${maxSkewSeconds / 60} minutes in the future.`);
  // S3 tells the two apart (RequestTimeTooSkewed for a signed header, AccessDenied for a presigned URL).
  if (expires === undefined && delta > skewMs) throw new Ec2Error('RequestExpired', `Request date ${amzDate} is more than ${maxSkewSeconds / 60} minutes in the past.`);
  if (expires !== undefined && delta > expires * 1000) throw new Ec2Error('RequestExpired', `Request has expired: it was signed at ${amzDate}.`);
}

/**
 * Verifies a SigV4-signed request. The credential scope's region is taken as the client sent it;
 * its date must be the request date's day and its service one of `services`.
 */
export async function verifySigV4(req: IncomingRequest, opts: VerifySigV4Options): Promise<SigV4Verified> {
  const form = sigV4Form(req);
  if (form === undefined) throw new Ec2Error('MissingAuthenticationToken', 'The request must contain either a valid (registered) AWS access key ID or X.509 certificate.');
  const headers = headerValues(req.headers);
  const now = opts.now ?? new Date();
  const maxSkew = opts.maxSkewSeconds ?? 900;

  let auth: ParsedAuth;
  let amzDate: string;
  let expires: number | undefined;
  let claimedPayload = headerValue(headers, 'x-amz-content-sha256');
  if (form === 'header') {
    auth = parseAuthorizationHeader(headerValue(headers, 'authorization')!.trim());
    const dateHeader = headerValue(headers, 'x-amz-date');
    if (dateHeader !== undefined) amzDate = dateHeader.trim();
    else {
      const date = headerValue(headers, 'date');
      const parsed = date === undefined ? NaN : Date.parse(date);
      if (Number.isNaN(parsed)) throw incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
      amzDate = toAmzDate(new Date(parsed));
    }
  } else {
    const q = rawQueryParams(req.query);
    const algorithm = q.get('X-Amz-Algorithm');
    if (algorithm !== SIGV4_ALGORITHM) throw incomplete(`Unsupported AWS 'algorithm': '${algorithm ?? ''}'`);
    const missing = ['X-Amz-Credential', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Date'].filter((k) => !q.get(k));
    if (missing.length > 0) throw incomplete(missing.map((k) => `Query-string authentication requires the ${k} parameter.`).join(' '));
    auth = { ...parseCredential(q.get('X-Amz-Credential')!), signedHeaders: parseSignedHeaders(q.get('X-Amz-SignedHeaders')!), signature: q.get('X-Amz-Signature')! };
    amzDate = q.get('X-Amz-Date')!;
    const exp = q.get('X-Amz-Expires');
    if (exp !== undefined) {
      if (!/^\d{1,7}$/.test(exp) || +exp < 1 || +exp > MAX_PRESIGN_SECONDS) {
        throw incomplete(`X-Amz-Expires must be a whole number of seconds between 1 and ${MAX_PRESIGN_SECONDS}, not '${exp}'`);
      }
      expires = +exp;
    }
    claimedPayload ??= q.get('X-Amz-Content-Sha256');
  }

  if (!auth.signedHeaders.includes('host')) throw incomplete("'Host' must be a signed header.");
  if (!opts.services.includes(auth.service) && !(opts.allowHostLabelService && auth.service === hostLabel(headerValue(headers, 'host')))) {
    throw new Ec2Error('SignatureDoesNotMatch', `Credential should be scoped to correct service: '${opts.services.join("' or '")}', not '${auth.service}'.`);
  }
  checkDate(amzDate, auth.date, now, maxSkew, expires);
  for (const name of auth.signedHeaders) {
    if (!headers.has(name)) throw new Ec2Error('SignatureDoesNotMatch', `Signed header '${name}' is missing from the request.`);
  }

  // Payload hash candidates, in order: what the client declared, else what it must have hashed.
  let payload: SigV4Verified['payload'];
  let candidates: string[];
  let bodyHash: string | undefined;
  if (claimedPayload !== undefined) {
    claimedPayload = claimedPayload.trim();
    candidates = [claimedPayload];
    if (claimedPayload === UNSIGNED_PAYLOAD) payload = 'unsigned';
    else if (claimedPayload.startsWith('STREAMING-')) payload = 'streaming';
    else if (/^[0-9a-fA-F]{64}$/.test(claimedPayload)) payload = req.body === undefined ? 'deferred' : 'verified';
    else throw new Ec2Error('InvalidParameterValue', `x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-… mode or a SHA-256 hex digest, not '${claimedPayload.slice(0, 80)}'`);
  } else {
    bodyHash = sha256Hex(req.body ?? '');
    payload = 'verified';
    // Presigned URLs normally sign UNSIGNED-PAYLOAD; euca2ools signs the body's hash instead.
    candidates = form === 'query' ? [UNSIGNED_PAYLOAD, bodyHash] : [bodyHash];
  }

  const found = await opts.credentials(auth.accessKeyId);
  if (found === undefined) throw authFailure();

  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const signingKey = deriveSigningKey(found.secretAccessKey, auth.date, auth.region, auth.service);
  const uri = canonicalUri(req.path, opts.doubleEncodePath ?? true);
  const query = canonicalQuery(req.query, form === 'query' ? 'X-Amz-Signature' : undefined);
  const cheaders = canonicalHeaders(headers, auth.signedHeaders);
  let payloadHash: string | undefined;
  for (const candidate of candidates) {
    const creq = canonicalRequestOf(req.method, uri, query, cheaders, auth.signedHeaders, candidate);
    const expected = hmac(signingKey, stringToSign(amzDate, scope, creq)).toString('hex');
    if (sameSignature(expected, auth.signature)) {
      payloadHash = candidate;
      break;
    }
  }
  if (payloadHash === undefined) throw signatureMismatch();
  if (payloadHash === UNSIGNED_PAYLOAD) payload = 'unsigned';
  if (payload === 'verified' && req.body !== undefined && payloadHash.toLowerCase() !== (bodyHash ?? sha256Hex(req.body))) {
    throw new Ec2Error('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }

  return {
    form,
    accessKeyId: auth.accessKeyId,
    principal: found.principal,
    region: auth.region,
    service: auth.service,
    amzDate,
    signedHeaders: auth.signedHeaders,
    payloadHash,
    payload,
    ...(payload === 'streaming' ? { streaming: { mode: payloadHash, seedSignature: auth.signature, signingKey, amzDate, scope } } : {}),
  };
}

/**
 * Signature of one `aws-chunked` chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), chained from the previous
 * chunk's signature, or from the seed signature for the first chunk.
 */
export function chunkSignature(seed: Pick<StreamingSeed, 'signingKey' | 'amzDate' | 'scope'>, previousSignature: string, chunk: Buffer | string): string {
  const sts = `${SIGV4_ALGORITHM}-PAYLOAD\n${seed.amzDate}\n${seed.scope}\n${previousSignature}\n${EMPTY_SHA256}\n${sha256Hex(chunk)}`;
  return hmac(seed.signingKey, sts).toString('hex');
}

/** Constant-time check of a chunk's `chunk-signature`. */
export function verifyChunkSignature(seed: Pick<StreamingSeed, 'signingKey' | 'amzDate' | 'scope'>, previousSignature: string, chunk: Buffer | string, given: string): boolean {
  return sameSignature(chunkSignature(seed, previousSignature, chunk), given);
}

export interface SignV4Input {
  method: string;
  /** Path as it will be sent (already percent-encoded where needed). */
  path: string;
  /** Raw query string as it will be sent, without `?`. */
  query?: string;
  /** Must include `host`. */
  headers: Record<string, string>;
  body?: Buffer | string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  service: string;
  date?: Date;
  doubleEncodePath?: boolean;
  /** Defaults to sha256(body) (header form) or UNSIGNED-PAYLOAD (presigned). */
  payloadHash?: string;
  /** Presign into the query string, valid for this many seconds, instead of an Authorization header. */
  presignExpires?: number;
  /** Header names to sign; default every header given. */
  signedHeaders?: string[];
}

export interface SignV4Output {
  /** Headers to send (with x-amz-date and, for the header form, authorization). */
  headers: Record<string, string>;
  /** Query string to send (with the X-Amz-* parameters for the presigned form). */
  query: string;
  signature: string;
  canonicalRequest: string;
  stringToSign: string;
}

/** Signs a request with SigV4 (header or presigned-query form). */
export function signV4(input: SignV4Input): SignV4Output {
  const amzDate = toAmzDate(input.date ?? new Date());
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${input.region}/${input.service}/aws4_request`;
  const headers: Record<string, string> = { ...input.headers };
  const presign = input.presignExpires !== undefined;
  if (!presign && !Object.keys(headers).some((h) => h.toLowerCase() === 'x-amz-date')) headers['x-amz-date'] = amzDate;
  const signed = (input.signedHeaders ?? Object.keys(headers)).map((h) => h.toLowerCase()).filter((h) => h !== 'authorization');
  const signedSorted = [...new Set(signed)].sort();
  let query = input.query ?? '';
  if (presign) {
    const extra = [
      ['X-Amz-Algorithm', SIGV4_ALGORITHM],
      ['X-Amz-Credential', `${input.accessKeyId}/${scope}`],
      ['X-Amz-Date', amzDate],
      ['X-Amz-Expires', String(input.presignExpires)],
      ['X-Amz-SignedHeaders', signedSorted.join(';')],
    ].map(([k, v]) => `${k}=${uriEncode(v!)}`);
    query = [query, ...extra].filter((s) => s !== '').join('&');
  }
  const payloadHash = input.payloadHash ?? (presign ? UNSIGNED_PAYLOAD : sha256Hex(input.body ?? ''));
  const canonicalRequest = canonicalRequestOf(
    input.method,
    canonicalUri(input.path, input.doubleEncodePath ?? true),
    canonicalQuery(query),
    canonicalHeaders(headerValues(headers), signedSorted),
    signedSorted,
    payloadHash,
  );
  const sts = stringToSign(amzDate, scope, canonicalRequest);
  const signature = hmac(deriveSigningKey(input.secretAccessKey, day, input.region, input.service), sts).toString('hex');
  if (presign) query += `&X-Amz-Signature=${signature}`;
  else headers['authorization'] = `${SIGV4_ALGORITHM} Credential=${input.accessKeyId}/${scope}, SignedHeaders=${signedSorted.join(';')}, Signature=${signature}`;
  return { headers, query, signature, canonicalRequest, stringToSign: sts };
}
