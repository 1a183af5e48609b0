// The EC2 Query endpoint as a fastify plugin: keeps the raw request for signing, authenticates
// (SigV4 header/query or SigV2), dispatches `Action` through the action table, and answers in EC2 XML.
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { labelRequest, withRequestId } from '@mallee/telemetry';
import type { ActionContext, CredentialLookup, Ec2Action, Principal } from './action.js';
import { Ec2Error, errors } from './errors.js';
import { DEFAULT_QUERY_LIMITS, nestParams, originalIndex, parseFormEncoded, splitUrl, type ParamObject, type QueryLimits, type QueryPair } from './query.js';
import { hasSigV2Params, verifySigV2 } from './sigv2.js';
import { sigV4Form, verifySigV4, type HeaderMap } from './sigv4.js';
import { ec2ErrorXml, ec2ResponseXml, resolveApiVersion } from './xml.js';

// Action inputs differ per action; the table holds them all.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyEc2Action = Ec2Action<any>;

export interface Ec2ApiOptions {
  actions: readonly AnyEc2Action[];
  credentials: CredentialLookup;
  /** Service names accepted in a SigV4 credential scope. Default ['ec2'] (what awscli, boto3 and euca2ools sign with). */
  services?: readonly string[];
  limits?: Partial<QueryLimits>;
  maxSkewSeconds?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

/** Where Eucalyptus clients look for the EC2 API. */
export const EC2_API_PATHS = ['/', '/services/compute', '/services/compute/', '/services/Eucalyptus', '/services/Eucalyptus/'] as const;

export const REQUEST_ID_HEADER = 'x-amzn-requestid';

const XML_TYPE = 'text/xml;charset=UTF-8';

/** Parameters that belong to the protocol, not to any action. */
const PROTOCOL_PARAMS = new Set(['Action', 'Version', 'AWSAccessKeyId', 'Signature', 'SignatureMethod', 'SignatureVersion', 'Timestamp', 'Expires', 'SecurityToken']);

const internalError = () => new Ec2Error('InternalError', 'An internal error has occurred', 500);

/** Header name (lower case) → every value received, from the raw header list so repeats survive for signing. */
function rawHeaderMap(raw: readonly string[]): HeaderMap {
  const map: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    (map[name] ??= []).push(raw[i + 1]!);
  }
  return map;
}

function isFormBody(contentType: string | undefined): boolean {
  if (contentType === undefined || contentType.trim() === '') return true;
  return contentType.split(';')[0]!.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return v.length > 200 ? v.slice(0, 200) + '…' : v;
  if (Array.isArray(v)) return '(a list)';
  if (v !== null && typeof v === 'object') return '(a structure)';
  return String(v);
}

/** The parameter at a zod path, named as the client spelled it (`Filter.3.Name`), and its value if present. */
function paramAt(path: readonly PropertyKey[], input: ParamObject): { name: string; value: unknown } {
  let cur: unknown = input;
  const name: string[] = [];
  for (const seg of path) {
    if (Array.isArray(cur) && typeof seg === 'number') {
      name.push(originalIndex(cur, seg));
      cur = cur[seg];
    } else if (cur !== null && typeof cur === 'object' && !Array.isArray(cur) && typeof seg === 'string') {
      name.push(seg);
      cur = Object.hasOwn(cur, seg) ? (cur as Record<string, unknown>)[seg] : undefined;
    } else if (typeof cur === 'string' && seg === 0) {
      // A schema that reads a lone `X=v` as the list [v]: the value is still v.
      name.push('1');
    } else {
      name.push(typeof seg === 'number' ? String(seg + 1) : String(seg));
      cur = undefined;
    }
  }
  return { name: name.join('.'), value: cur };
}

/** Turns the first zod issue into the error EC2 gives, naming the parameter as the client spelled it. */
export function issueToEc2Error(issue: z.core.$ZodIssue, input: ParamObject): Ec2Error {
  const { name: param, value: walked } = paramAt(issue.path, input);
  if (issue.code === 'unrecognized_keys') {
    return new Ec2Error('UnknownParameter', `The parameter ${param === '' ? '' : param + '.'}${issue.keys[0] ?? ''} is not recognized`);
  }
  if (param === '') return new Ec2Error('InvalidParameterCombination', issue.message);
  // With reportInput the issue carries the value zod saw (after any preprocessing); else use what was sent.
  const value = 'input' in issue ? issue.input : walked;
  if (value === undefined && (issue.code === 'invalid_type' || walked === undefined)) return errors.missing(param);
  let why = issue.message;
  if (issue.code === 'invalid_type') {
    if (issue.expected === 'array') why = `Expected a list: send it as ${param}.1, ${param}.2, …`;
    else if (issue.expected === 'object') why = `Expected a structure: send its members as ${param}.<Member>`;
    else if (value !== null && typeof value === 'object') why = `Expected a single value, not ${describeValue(value)}`;
  }
  return errors.invalidValue(param, describeValue(value ?? walked), why);
}

function sendError(reply: FastifyReply, err: Ec2Error, requestId: string): FastifyReply {
  return reply.code(err.status).header(REQUEST_ID_HEADER, requestId).type(XML_TYPE).send(ec2ErrorXml(err.code, err.message, requestId));
}

/** Maps whatever was thrown to the EC2 error the client sees; only Ec2Errors say anything specific. */
function toEc2Error(err: unknown, log: FastifyBaseLogger): Ec2Error {
  if (err instanceof Ec2Error) {
    log.info({ code: err.code, status: err.status }, err.message);
    return err;
  }
  const fe = err as Partial<FastifyError>;
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new Ec2Error('RequestEntityTooLarge', 'The request body is too large', 413);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    log.info({ err }, 'malformed request');
    return new Ec2Error('MalformedQueryString', 'The request could not be read: ' + (fe.code ?? 'malformed request'), 400);
  }
  log.error({ err }, 'internal error while serving an EC2 request');
  return internalError();
}

export const ec2Api: FastifyPluginAsync<Ec2ApiOptions> = async (app, opts) => {
  const table = new Map<string, AnyEc2Action>();
  for (const action of opts.actions) {
    if (table.has(action.name)) throw new Error(`EC2 action ${action.name} is defined twice`);
    table.set(action.name, action);
  }
  const limits: QueryLimits = { ...DEFAULT_QUERY_LIMITS, ...opts.limits };
  const services = opts.services ?? ['ec2'];
  const clock = opts.now ?? (() => new Date());

  // The signature covers the exact body bytes, so every body is kept raw and parsed here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: limits.maxBytes }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err, req, reply) => {
    const requestId = (reply.getHeader(REQUEST_ID_HEADER) as string | undefined) ?? randomUUID();
    return sendError(reply, toEc2Error(err, req.log), requestId);
  });

  async function authenticate(req: FastifyRequest, path: string, query: string, body: Buffer | undefined, pairs: QueryPair[]): Promise<Principal> {
    const headers = rawHeaderMap(req.raw.rawHeaders);
    const now = clock();
    if (sigV4Form({ headers, query }) !== undefined) {
      const v = await verifySigV4(
        { method: req.method, path, query, headers, body: body ?? Buffer.alloc(0) },
        { credentials: opts.credentials, services, allowHostLabelService: true, doubleEncodePath: true, maxSkewSeconds: opts.maxSkewSeconds, now },
      );
      // EC2 parameters travel in the body: a body the signature does not cover could be swapped.
      if ((v.payload === 'unsigned' || v.payload === 'streaming') && body !== undefined && body.length > 0) {
        throw new Ec2Error('IncompleteSignature', `EC2 requests with a body must sign it (x-amz-content-sha256 ${v.payloadHash} is not accepted here).`);
      }
      return v.principal;
    }
    if (hasSigV2Params(pairs)) {
      const host = headers['host'];
      const v = await verifySigV2(
        { method: req.method, host: typeof host === 'string' ? host : host?.[0], path, params: pairs },
        { credentials: opts.credentials, maxSkewSeconds: opts.maxSkewSeconds, now },
      );
      return v.principal;
    }
    if (headers['authorization'] !== undefined) {
      throw new Ec2Error('IncompleteSignature', 'Unsupported Authorization header: EC2 accepts AWS4-HMAC-SHA256 (SigV4) or Signature Version 2 parameters.');
    }
    throw new Ec2Error('MissingAuthenticationToken', 'The request must contain either a valid (registered) AWS access key ID or X.509 certificate.');
  }

  async function serve(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const requestId = randomUUID();
    reply.header(REQUEST_ID_HEADER, requestId);
    labelRequest(req, 'ec2', '(invalid)', requestId);
    let log = req.log;
    try {
      const { path, query } = splitUrl(req.raw.url ?? '/');
      const body = Buffer.isBuffer(req.body) ? req.body : undefined;
      const pairs = [...parseFormEncoded(query, limits)];
      if (body !== undefined && body.length > 0 && isFormBody(req.headers['content-type'])) pairs.push(...parseFormEncoded(body, limits));
      const params = nestParams(pairs, limits);

      const principal = await authenticate(req, path, query, body, pairs);

      const version = params['Version'];
      const apiVersion = resolveApiVersion(typeof version === 'string' ? version : version === undefined ? undefined : '(structure)');
      const actionName = params['Action'];
      if (actionName === undefined || actionName === '') throw new Ec2Error('MissingAction', 'The request must contain the parameter Action');
      if (typeof actionName !== 'string') throw new Ec2Error('InvalidAction', 'The action parameter must be a single value.');
      const action = table.get(actionName);
      if (action === undefined) throw new Ec2Error('InvalidAction', `The action ${actionName.slice(0, 100)} is not valid for this web service.`);
      labelRequest(req, 'ec2', action.name, requestId);

      const input: ParamObject = Object.fromEntries(Object.entries(params).filter(([k]) => !PROTOCOL_PARAMS.has(k) && !k.startsWith('X-Amz-')));
      const parsed = await action.input.safeParseAsync(input, { reportInput: true });
      if (!parsed.success) throw issueToEc2Error(parsed.error.issues[0]!, input);

      log = req.log.child({ requestId, action: action.name, accountId: principal.accountId });
      const ctx: ActionContext = { principal, requestId, apiVersion, log };
      // Wire calls the action makes carry its request id (x-mallee-request-id) to the cc and on to the nc.
      const result = await withRequestId(requestId, () => action.handler(parsed.data, ctx));
      if (result === null || typeof result !== 'object' || Array.isArray(result)) throw new Error(`EC2 action ${action.name} returned a non-object result`);
      const xml = ec2ResponseXml(action.name, apiVersion, requestId, result);
      return reply.code(200).type(XML_TYPE).send(xml);
    } catch (err) {
      return sendError(reply, toEc2Error(err, log), requestId);
    }
  }

  // With the app's ignoreTrailingSlash on, `/x/` is already served by `/x` and may not be declared again.
  const config = app.initialConfig as { ignoreTrailingSlash?: boolean; routerOptions?: { ignoreTrailingSlash?: boolean } };
  const ignoresTrailingSlash = config.routerOptions?.ignoreTrailingSlash ?? config.ignoreTrailingSlash ?? false;
  for (const url of EC2_API_PATHS) {
    if (ignoresTrailingSlash && url.length > 1 && url.endsWith('/')) continue;
    app.route({ method: ['GET', 'POST'], url, handler: serve });
  }
};
