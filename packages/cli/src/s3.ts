// A small SigV4 S3 client for the CLI's uploads to Walrus (bundles): bucket check/creation and
// streamed PUTs of files, with the body unsigned (UNSIGNED-PAYLOAD) and checked by Content-MD5.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { signV4, uriEncode, UNSIGNED_PAYLOAD } from '@mallee/aws-protocol';
import { CliError } from './admin.js';

export interface S3Endpoint {
  url: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3Reply {
  status: number;
  body: string;
  headers: IncomingMessage['headers'];
}

const codeOf = (body: string) => /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
const messageOf = (body: string) => /<Message>([^<]*)<\/Message>/.exec(body)?.[1];

/** One signed request; `file` streams a file as the body. */
export async function s3Request(ep: S3Endpoint, method: string, bucket: string, key?: string,
  opts: { file?: string; body?: string; headers?: Record<string, string>; onBytes?: (n: number) => void } = {}): Promise<S3Reply> {
  const base = new URL(ep.url);
  const path = `${base.pathname.replace(/\/+$/, '')}/${uriEncode(bucket)}${key !== undefined ? `/${uriEncode(key, true)}` : ''}`;
  let length = 0;
  let md5: string | undefined;
  if (opts.file) {
    length = (await stat(opts.file)).size;
    const h = createHash('md5');
    for await (const c of createReadStream(opts.file, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
    md5 = h.digest('base64');
  } else if (opts.body !== undefined) {
    length = Buffer.byteLength(opts.body);
    md5 = createHash('md5').update(opts.body).digest('base64');
  }
  const headers: Record<string, string> = { host: base.host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD, ...(md5 ? { 'content-md5': md5 } : {}), ...opts.headers };
  const signed = signV4({ method, path, headers, accessKeyId: ep.accessKeyId, secretAccessKey: ep.secretAccessKey, region: ep.region, service: 's3', doubleEncodePath: false, payloadHash: UNSIGNED_PAYLOAD });
  const send = base.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<S3Reply>((resolve, reject) => {
    const req = send({ host: base.hostname, port: base.port, method, path, headers: { ...signed.headers, 'content-length': String(length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', (e) => reject(new CliError(`Walrus at ${ep.url} does not answer (${e.message}): check S3_URL and \`mallee status\``)));
    if (opts.file) {
      const counter = new Transform({
        transform(chunk: Buffer, _e, cb) {
          opts.onBytes?.(chunk.length);
          cb(null, chunk);
        },
      });
      pipeline(createReadStream(opts.file, { highWaterMark: 1 << 20 }), counter, req).catch(reject);
    } else req.end(opts.body ?? '');
  });
}

/** Throws a CliError naming the S3 error and what to do about it. */
export function s3Failure(what: string, r: S3Reply): CliError {
  const code = codeOf(r.body) ?? String(r.status);
  const hints: Record<string, string> = {
    InvalidAccessKeyId: 'the access key is unknown to this cloud: source the eucarc of your account (mallee credentials)',
    SignatureDoesNotMatch: 'the secret key does not match: source the eucarc of your account (mallee credentials)',
    AccessDenied: 'you may not write there: use a bucket of your own',
    BucketAlreadyExists: 'another account owns that bucket name: choose another bucket',
    QuotaExceeded: 'your storage quota is used up: delete objects or ask the cloud admin for more',
    TooManyBuckets: 'you have as many buckets as you may: reuse one of them',
  };
  return new CliError(`${what} failed: ${code}: ${messageOf(r.body) ?? ''}${hints[code] ? ` — ${hints[code]}` : ''}`);
}

/** The bucket exists and is ours, or is created now. */
export async function ensureBucket(ep: S3Endpoint, bucket: string, location?: string): Promise<'exists' | 'created'> {
  const head = await s3Request(ep, 'HEAD', bucket);
  if (head.status === 200) return 'exists';
  if (head.status === 403) throw new CliError(`bucket ${bucket} belongs to another account: choose another bucket`);
  const body = location ? `<CreateBucketConfiguration><LocationConstraint>${location}</LocationConstraint></CreateBucketConfiguration>` : undefined;
  const r = await s3Request(ep, 'PUT', bucket, undefined, body !== undefined ? { body } : {});
  if (r.status !== 200) throw s3Failure(`creating bucket ${bucket}`, r);
  return 'created';
}
