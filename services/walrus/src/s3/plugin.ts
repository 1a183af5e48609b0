// The S3 REST endpoint as a fastify plugin: addressing (path-style, virtual-host, /services/Walrus),
// authentication (SigV4 header/query, S3 SigV2 header/query, aws-chunked bodies, anonymous), dispatch
// through the action table, and S3 error envelopes. Encapsulated: its raw-body handling stays inside.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  AwsChunkedDecoder, Ec2Error, S3Error, decodeFormComponent, s3ErrorFromAuth, s3ErrorXml, s3SigV2Form, s3Xml, sigV4Form,
  verifyS3SigV2, verifySigV4, type CredentialLookup, type Principal,
} from '@mallee/aws-protocol';
import { labelRequest } from '@mallee/telemetry';
import type { ObjectStore } from '../store/types.js';
import { bucketActions } from './actions-buckets.js';
import { listActions } from './actions-lists.js';
import { multipartActions } from './actions-multipart.js';
import { objectActions } from './actions-objects.js';
import { postObjectAction } from './post-object.js';
import type { BodyIntegrity, ImageSource, S3Action, S3Request, S3Target } from './context.js';
import { getDecryptedImageAction } from '../images/action.js';

export const SERVICE_PREFIX = '/services/Walrus';
const DEFAULT_MAX_OBJECT = 5 * 1024 ** 3;

export interface S3ApiOptions {
  store: ObjectStore;
  credentials: CredentialLookup;
  region: string;
  /** Host names under which `bucket.<name>` means virtual-host addressing. */
  virtualHostDomains: readonly string[];
  maxObjectSize?: number;
  images?: ImageSource;
  /** Told the action and status of every request. */
  onServed?: (action: string, status: number) => void;
}

/** Every action, most specific first within a method and target (sub-resources, then conditions). */
export const s3Actions: readonly S3Action[] = [getDecryptedImageAction, ...bucketActions, ...listActions, ...multipartActions, ...objectActions, postObjectAction];

function selectAction(method: string, target: S3Target, req: S3Request): S3Action | undefined {
  const candidates = s3Actions.filter((a) => a.method === method && a.target === target);
  return (
    candidates.find((a) => a.sub !== undefined && req.query.has(a.sub) && (!a.when || a.when(req))) ??
    candidates.find((a) => a.sub === undefined && a.when !== undefined && a.when(req)) ??
    candidates.find((a) => a.sub === undefined && a.when === undefined)
  );
}

/** Sub-resources S3 has but Walrus does not serve: answering them as plain GETs/PUTs would be wrong. */
const UNSUPPORTED = ['cors', 'lifecycle', 'website', 'tagging', 'logging', 'notification', 'replication', 'encryption', 'object-lock', 'retention', 'legal-hold', 'torrent', 'restore', 'select', 'accelerate', 'requestPayment', 'inventory', 'analytics', 'metrics', 'ownershipControls', 'publicAccessBlock', 'intelligent-tiering', 'attributes'];

interface Addressed {
  bucket?: string;
  key?: string;
  /** Path without the /services/Walrus prefix, still encoded. */
  path: string;
  virtualHost: boolean;
}

function decodePathPart(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new S3Error('InvalidURI', "Couldn't parse the specified URI.");
  }
}

function address(rawPath: string, host: string | undefined, domains: readonly string[]): Addressed {
  let path = rawPath;
  if (path === SERVICE_PREFIX || path.startsWith(SERVICE_PREFIX + '/')) path = path.slice(SERVICE_PREFIX.length) || '/';
  const hostname = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  const domain = domains.find((d) => hostname.endsWith('.' + d.toLowerCase()));
  if (domain) {
    const bucket = hostname.slice(0, hostname.length - domain.length - 1);
    const key = path.length > 1 ? decodePathPart(path.slice(1)) : undefined;
    return { bucket, ...(key !== undefined ? { key } : {}), path, virtualHost: true };
  }
  const rest = path.slice(1);
  if (rest === '') return { path, virtualHost: false };
  const slash = rest.indexOf('/');
  if (slash < 0 || slash === rest.length - 1) return { bucket: decodePathPart(slash < 0 ? rest : rest.slice(0, slash)), path, virtualHost: false };
  return { bucket: decodePathPart(rest.slice(0, slash)), key: decodePathPart(rest.slice(slash + 1)), path, virtualHost: false };
}

function parseQuery(raw: string): Map<string, string> {
  const map = new Map<string, string>();
  // The shared form decoder throws EC2's MalformedQueryString for a stray `%` or invalid UTF-8.
  const decode = (s: string) => {
    try {
      return decodeFormComponent(s);
    } catch {
      throw new S3Error('InvalidURI', "Couldn't parse the specified URI.");
    }
  };
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = decode(eq < 0 ? part : part.slice(0, eq));
    if (!map.has(k)) map.set(k, eq < 0 ? '' : decode(part.slice(eq + 1)));
  }
  return map;
}

/** The disk (or SQLite's file) is full: ENOSPC/EDQUOT from a write, SQLITE_FULL from a commit. */
function storageFull(e: unknown): boolean {
  for (let c = e as { code?: unknown; cause?: unknown } | undefined, depth = 0; c && depth < 4; c = c.cause as typeof c, depth++) {
    if (c.code === 'ENOSPC' || c.code === 'EDQUOT' || c.code === 'SQLITE_FULL') return true;
  }
  return false;
}

const one = (h: IncomingHttpHeaders, name: string) => (typeof h[name] === 'string' ? (h[name] as string) : undefined);

/**
 * The body as a stream the handler may fail on without killing the connection: errors stop the
 * flow into it and the rest of the request is drained, so the client still reads the S3 error.
 */
function guardedBody(raw: IncomingMessage, via?: AwsChunkedDecoder): Readable {
  const out = via ?? new PassThrough({ highWaterMark: 1 << 20 });
  raw.on('error', (e) => out.destroy(e));
  // The decoder may refuse a chunk before the action starts reading (the body flows in as it arrives):
  // the stream keeps the error for its reader, and this listener keeps it from being an uncaught 'error'.
  out.on('error', () => {});
  raw.pipe(out);
  out.on('close', () => {
    raw.unpipe(out);
    if (!raw.readableEnded) raw.resume();
  });
  return out;
}

interface Authenticated {
  principal?: Principal;
  integrity: BodyIntegrity;
  body: Readable;
}

async function authenticate(request: FastifyRequest, rawPath: string, rawQuery: string, addr: Addressed, credentials: CredentialLookup): Promise<Authenticated> {
  const headers = request.headers;
  const integrity: BodyIntegrity = {};
  const md5 = one(headers, 'content-md5');
  if (md5 !== undefined) {
    if (Buffer.from(md5, 'base64').length !== 16) throw new S3Error('InvalidDigest', 'The Content-MD5 you specified was invalid.', { 'Content-MD5': md5 });
    integrity.contentMd5 = md5.trim();
  }
  const length = one(headers, 'content-length');
  if (length !== undefined) integrity.expectedSize = Number(length);
  else if (one(headers, 'transfer-encoding') === undefined) integrity.expectedSize = 0;

  let principal: Principal | undefined;
  let seed: ConstructorParameters<typeof AwsChunkedDecoder>[0]['seed'];
  const lookup: CredentialLookup = async (id) => {
    try {
      return await credentials(id);
    } catch (e) {
      request.log.error({ err: e }, 'credential lookup failed');
      throw new S3Error('ServiceUnavailable', 'Walrus cannot reach the cloud controller to check credentials; please retry.');
    }
  };
  try {
    if (sigV4Form({ headers, query: rawQuery }) !== undefined) {
      const v = await verifySigV4({ method: request.method, path: rawPath, query: rawQuery, headers }, { credentials: lookup, services: ['s3'], doubleEncodePath: false });
      principal = v.principal;
      if (v.payload === 'deferred') integrity.sha256 = v.payloadHash;
      if (v.streaming) seed = v.streaming;
    } else if (s3SigV2Form({ headers, query: rawQuery }) !== undefined) {
      const resources = addr.virtualHost ? [`/${addr.bucket}${addr.path}`] : [addr.path, rawPath];
      principal = (await verifyS3SigV2({ method: request.method, headers, query: rawQuery, resources: [...new Set(resources)] }, { credentials: lookup })).principal;
    }
  } catch (e) {
    if (e instanceof Ec2Error) throw s3ErrorFromAuth(e.code, e.message);
    throw e;
  }

  const mode = one(headers, 'x-amz-content-sha256');
  let body: Readable;
  if (mode !== undefined && mode.startsWith('STREAMING-')) {
    const decoded = one(headers, 'x-amz-decoded-content-length');
    if (decoded === undefined || !/^\d+$/.test(decoded)) throw new S3Error('MissingContentLength', 'You must provide the x-amz-decoded-content-length header with aws-chunked bodies.');
    if (mode !== 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' && !seed) throw new S3Error('InvalidRequest', `${mode} bodies must be signed with SigV4`);
    integrity.expectedSize = Number(decoded);
    body = guardedBody(request.raw, new AwsChunkedDecoder({ mode, ...(seed ? { seed } : {}), decodedLength: Number(decoded) }));
  } else body = guardedBody(request.raw);
  return { ...(principal ? { principal } : {}), integrity, body };
}

async function readWhole(body: Readable, integrity: BodyIntegrity, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > limit) {
      body.destroy();
      throw new S3Error('MaxMessageLengthExceeded', 'Your request was too big.');
    }
    chunks.push(c as Buffer);
  }
  const buf = Buffer.concat(chunks);
  if (integrity.contentMd5 !== undefined && createHash('md5').update(buf).digest('base64') !== integrity.contentMd5) {
    throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.');
  }
  if (integrity.sha256 !== undefined && createHash('sha256').update(buf).digest('hex') !== integrity.sha256.toLowerCase()) {
    throw new S3Error('XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  return buf;
}

export async function s3Api(app: FastifyInstance, opts: S3ApiOptions): Promise<void> {
  app.removeAllContentTypeParsers();
  // Bodies stay unread streams: objects go to disk as they arrive, never whole into memory.
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    reply.header('x-amz-request-id', requestId).header('x-amz-id-2', randomBytes(24).toString('base64'));
    const url = request.raw.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const rawQuery = q < 0 ? '' : url.slice(q + 1);
    let resource = rawPath;
    let body: Readable | undefined;
    let actionName = 'Unknown';
    labelRequest(request, 's3', actionName, requestId);
    try {
      const addr = address(rawPath, request.headers.host, opts.virtualHostDomains);
      resource = addr.bucket === undefined ? '/' : `/${addr.bucket}${addr.key !== undefined ? '/' + addr.key : ''}`;
      const auth = await authenticate(request, rawPath, rawQuery, addr, opts.credentials);
      body = auth.body;
      const query = parseQuery(rawQuery);
      const req: S3Request = {
        method: request.method,
        ...(addr.bucket !== undefined ? { bucket: addr.bucket } : {}),
        ...(addr.key !== undefined ? { key: addr.key } : {}),
        query,
        headers: request.headers,
        ...(auth.principal ? { principal: auth.principal } : {}),
        requestId,
        log: request.log,
        store: opts.store,
        region: opts.region,
        maxObjectSize: opts.maxObjectSize ?? DEFAULT_MAX_OBJECT,
        body: auth.body,
        integrity: auth.integrity,
        readBody: (limit = 1024 * 1024) => readWhole(auth.body, auth.integrity, limit),
        lookupKey: opts.credentials,
        ...(opts.images ? { images: opts.images } : {}),
      };
      const target: S3Target = addr.bucket === undefined ? 'service' : addr.key === undefined ? 'bucket' : 'object';
      const unsupported = UNSUPPORTED.find((s) => query.has(s));
      if (unsupported) throw new S3Error('NotImplemented', `A header you provided implies functionality that is not implemented (${unsupported})`, {}, 501);
      const action = selectAction(request.method, target, req);
      if (!action) throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.', { Method: request.method, ResourceType: target.toUpperCase() });
      actionName = action.name;
      labelRequest(request, 's3', actionName, requestId);
      request.log.debug({ action: action.name, bucket: req.bucket, key: req.key, account: req.principal?.accountName }, 's3 request');
      const out = await action.handler(req);
      // A body the action did not read would stall the keep-alive connection: drain it.
      if (!auth.body.readableEnded) auth.body.destroy();
      opts.onServed?.(actionName, out.status ?? 200);
      reply.code(out.status ?? 200);
      if (out.headers) reply.headers(out.headers);
      if (out.xml) return reply.type('application/xml').send(s3Xml(out.xml.root, out.xml.body));
      if (out.body !== undefined && request.method !== 'HEAD') return reply.send(out.body);
      return reply.send();
    } catch (e) {
      body?.destroy();
      let err: S3Error;
      if (e instanceof S3Error) err = e;
      else if (storageFull(e)) {
        request.log.warn({ err: e, requestId }, 'the store is out of space');
        err = new S3Error('InsufficientStorage', 'There is not enough free space on the storage backend to complete the request; free space or add capacity, then retry.', {}, 507);
      } else {
        request.log.error({ err: e, requestId }, 's3 request failed');
        err = new S3Error('InternalError', 'We encountered an internal error. Please try again.');
      }
      opts.onServed?.(actionName, err.status);
      reply.code(err.status);
      const marker = (e as { deleteMarker?: string }).deleteMarker;
      if (marker !== undefined) reply.header('x-amz-delete-marker', 'true');
      if (request.method === 'HEAD' || err.status === 304) return reply.send();
      return reply.type('application/xml').send(s3ErrorXml(err, resource, requestId));
    }
  };

  app.route({ method: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'], url: '/', exposeHeadRoute: false, handler: serve });
  app.route({ method: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'], url: '/*', exposeHeadRoute: false, handler: serve });
}
