// EC2 Query Signature Version 2 (boto 2, euca2ools-era tools): HMAC over method, host, path and the
// sorted, RFC 3986-encoded parameters, carried in the parameters themselves.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { CredentialLookup, Principal } from './action.js';
import { Ec2Error } from './errors.js';
import type { QueryPair } from './query.js';
import { authFailure, uriEncode } from './sigv4.js';

export interface SigV2Request {
  method: string;
  /** Host header as received (may carry :port). */
  host: string | undefined;
  /** Raw path as received. */
  path: string;
  /** Every decoded parameter from the query string and the form body. */
  params: readonly QueryPair[];
}

export interface VerifySigV2Options {
  credentials: CredentialLookup;
  maxSkewSeconds?: number;
  now?: Date;
}

export interface SigV2Verified {
  accessKeyId: string;
  principal: Principal;
  signatureMethod: 'HmacSHA1' | 'HmacSHA256';
}

/** True when the parameters carry a Query signature (any version), so SigV2 verification applies. */
export function hasSigV2Params(params: readonly QueryPair[]): boolean {
  return params.some(([k]) => k === 'SignatureVersion' || k === 'Signature' || k === 'AWSAccessKeyId');
}

const missing = (p: string) => new Ec2Error('MissingParameter', `The request must contain the parameter ${p}`);

/** SigV2 string to sign: `METHOD\nhost\npath\nk=v&…` over every parameter but Signature, sorted by key bytes. */
export function sigV2StringToSign(method: string, host: string, path: string, params: readonly QueryPair[]): string {
  const encoded = params
    .filter(([k]) => k !== 'Signature')
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return `${method.toUpperCase()}\n${host}\n${path === '' ? '/' : path}\n${encoded.map(([k, v]) => `${k}=${v}`).join('&')}`;
}

/** Signs parameters with SigV2 (for tests and clients); returns the base64 signature. */
export function signV2(method: string, host: string, path: string, params: readonly QueryPair[], secretAccessKey: string, signatureMethod: 'HmacSHA1' | 'HmacSHA256' = 'HmacSHA256'): string {
  return createHmac(signatureMethod === 'HmacSHA1' ? 'sha1' : 'sha256', secretAccessKey)
    .update(sigV2StringToSign(method, host.toLowerCase(), path, params), 'utf8')
    .digest('base64');
}

/** Accepts ISO 8601 as clients send it: `2015-08-30T12:36:00Z`, with milliseconds, or with an offset. */
function parseIsoTimestamp(s: string): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$/.test(s)) return undefined;
  const withZone = /(Z|[+-]\d{2}:?\d{2})$/.test(s) ? s : s + 'Z';
  const t = Date.parse(withZone.replace(/([+-]\d{2})(\d{2})$/, '$1:$2').replace(/\.(\d{3})\d+/, '.$1'));
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** Host strings a client may have signed: as sent, and without a default port. */
function hostCandidates(host: string): string[] {
  const lower = host.trim().toLowerCase();
  const out = [lower];
  const m = /^(.*):(80|443)$/.exec(lower);
  if (m) out.push(m[1]!);
  if (host.trim() !== lower) out.push(host.trim());
  return out;
}

export async function verifySigV2(req: SigV2Request, opts: VerifySigV2Options): Promise<SigV2Verified> {
  const first = (k: string) => req.params.find(([key]) => key === k)?.[1];
  const version = first('SignatureVersion');
  if (version === undefined) throw missing('SignatureVersion');
  if (version !== '2') {
    throw new Ec2Error(
      'InvalidParameterValue',
      `Value (${version}) for parameter SignatureVersion is invalid. Only Signature Version 2 (in the parameters) and Signature Version 4 (Authorization header or X-Amz-* parameters) are supported.`,
    );
  }
  const accessKeyId = first('AWSAccessKeyId');
  if (!accessKeyId) throw missing('AWSAccessKeyId');
  const signature = first('Signature');
  if (!signature) throw missing('Signature');
  const method = first('SignatureMethod') ?? 'HmacSHA256';
  if (method !== 'HmacSHA1' && method !== 'HmacSHA256') {
    throw new Ec2Error('InvalidParameterValue', `Value (${method}) for parameter SignatureMethod is invalid. Expected HmacSHA1 or HmacSHA256.`);
  }

  const timestamp = first('Timestamp');
  const expires = first('Expires');
  if (timestamp !== undefined && expires !== undefined) {
    throw new Ec2Error('InvalidParameterCombination', 'The parameters Timestamp and Expires cannot be used together.');
  }
  if (timestamp === undefined && expires === undefined) throw missing('Timestamp');
  const now = (opts.now ?? new Date()).getTime();
  const skewMs = (opts.maxSkewSeconds ?? 900) * 1000;
  if (timestamp !== undefined) {
    const at = parseIsoTimestamp(timestamp);
    if (at === undefined) throw new Ec2Error('InvalidParameterValue', `Value (${timestamp}) for parameter Timestamp is invalid. Expected an ISO 8601 date-time.`);
    if (Math.abs(now - at.getTime()) > skewMs) throw new Ec2Error('RequestExpired', `Request has expired: Timestamp ${timestamp} is more than ${skewMs / 60_000} minutes from the server's time.`);
  } else {
    const at = parseIsoTimestamp(expires!);
    if (at === undefined) throw new Ec2Error('InvalidParameterValue', `Value (${expires}) for parameter Expires is invalid. Expected an ISO 8601 date-time.`);
    if (now > at.getTime()) throw new Ec2Error('RequestExpired', `Request has expired: Expires ${expires} has passed.`);
  }

  const found = await opts.credentials(accessKeyId);
  if (found === undefined) throw authFailure();

  // A raw `+` in the query decodes to a space; base64 has no spaces, so it was meant as `+`.
  const given = Buffer.from(signature.replace(/ /g, '+'), 'utf8');
  const algorithm = method === 'HmacSHA1' ? 'sha1' : 'sha256';
  for (const host of hostCandidates(req.host ?? '')) {
    const expected = Buffer.from(createHmac(algorithm, found.secretAccessKey).update(sigV2StringToSign(req.method, host, req.path, req.params), 'utf8').digest('base64'), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) {
      return { accessKeyId, principal: found.principal, signatureMethod: method };
    }
  }
  throw new Ec2Error(
    'SignatureDoesNotMatch',
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
  );
}
