// POST Object (browser uploads): a multipart/form-data form whose fields carry the key, ACL, metadata
// and a base64 policy document signed with SigV2 (`signature`) or SigV4 (`x-amz-signature`). The
// policy's conditions must cover every field; the file streams to the store like a PUT.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { Busboy, type BusboyHeaders } from '@fastify/busboy';
import { S3Error, deriveSigningKey, type Principal } from '@mallee/aws-protocol';
import { checkObjectKey } from '../store/names.js';
import { allowed, cannedAcl, ownerOf } from './acl.js';
import { authorize } from './access.js';
import { bucketOf } from './actions-buckets.js';
import type { S3Action, S3Reply, S3Request } from './context.js';
import { MAX_USER_METADATA, quoted } from './http.js';

/** Fields that are not part of the policy's coverage. */
const UNCOVERED = new Set(['awsaccesskeyid', 'signature', 'x-amz-signature', 'file', 'policy']);
const STORED = ['content-type', 'cache-control', 'content-disposition', 'content-encoding', 'expires'];

const invalidPolicy = (why: string) => new S3Error('AccessDenied', `Invalid according to Policy: ${why}`);
const badArgument = (name: string, message: string) => new S3Error('InvalidArgument', message, { ArgumentName: name, ArgumentValue: '' });

interface PolicyLimits {
  min: number;
  max: number;
}

/** Checks the decoded policy against the form; returns the content-length-range. */
function checkPolicy(policyB64: string, fields: Map<string, string>, bucket: string, now: Date): PolicyLimits {
  let doc: { expiration?: unknown; conditions?: unknown };
  try {
    doc = JSON.parse(Buffer.from(policyB64, 'base64').toString('utf8')) as typeof doc;
  } catch {
    throw new S3Error('InvalidPolicyDocument', 'Invalid Policy: Invalid JSON.');
  }
  if (typeof doc.expiration !== 'string' || Number.isNaN(Date.parse(doc.expiration))) throw new S3Error('InvalidPolicyDocument', 'Invalid Policy: Invalid \'expiration\' value.');
  if (Date.parse(doc.expiration) < now.getTime()) throw invalidPolicy('Policy expired.');
  if (!Array.isArray(doc.conditions)) throw new S3Error('InvalidPolicyDocument', 'Invalid Policy: Invalid \'conditions\' value.');
  const value = (name: string) => (name === 'bucket' ? bucket : fields.get(name));
  const covered = new Set<string>(['bucket']);
  const limits: PolicyLimits = { min: 0, max: Number.MAX_SAFE_INTEGER };
  for (const c of doc.conditions as unknown[]) {
    if (Array.isArray(c)) {
      const [op, a, b] = c as [unknown, unknown, unknown];
      if (op === 'content-length-range') {
        limits.min = Number(a);
        limits.max = Number(b);
        continue;
      }
      if (typeof a !== 'string' || !a.startsWith('$') || typeof b !== 'string') throw new S3Error('InvalidPolicyDocument', `Invalid Policy: Invalid condition ${JSON.stringify(c)}`);
      const name = a.slice(1).toLowerCase();
      covered.add(name);
      const v = value(name) ?? '';
      if (op === 'eq' && v !== b) throw invalidPolicy(`Policy Condition failed: ["eq", "${a}", "${b}"]`);
      else if (op === 'starts-with' && !v.startsWith(b)) throw invalidPolicy(`Policy Condition failed: ["starts-with", "${a}", "${b}"]`);
      else if (op !== 'eq' && op !== 'starts-with') throw new S3Error('InvalidPolicyDocument', `Invalid Policy: Invalid condition operator ${String(op)}`);
    } else if (typeof c === 'object' && c !== null) {
      for (const [k, expected] of Object.entries(c)) {
        const name = k.toLowerCase();
        covered.add(name);
        if (value(name) !== String(expected)) throw invalidPolicy(`Policy Condition failed: ["eq", "$${k}", "${String(expected)}"]`);
      }
    } else throw new S3Error('InvalidPolicyDocument', 'Invalid Policy: Invalid condition');
  }
  for (const name of fields.keys()) {
    if (!UNCOVERED.has(name) && !name.startsWith('x-ignore-') && !covered.has(name)) throw invalidPolicy(`Extra input fields: ${name}`);
  }
  return limits;
}

const sameText = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** Who signed the form (SigV4 or SigV2 over the policy), or undefined for an anonymous form. */
async function formSigner(req: S3Request, fields: Map<string, string>): Promise<Principal | undefined> {
  const policy = fields.get('policy');
  const v4 = fields.get('x-amz-signature');
  const v2 = fields.get('signature');
  if (policy === undefined) {
    if (v4 !== undefined || v2 !== undefined) throw badArgument('Policy', 'Bucket POST must contain a field named \'policy\'.  If it is specified, please check the order of the fields.');
    return undefined;
  }
  const notMatching = () => new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
  if (v4 !== undefined) {
    if (fields.get('x-amz-algorithm') !== 'AWS4-HMAC-SHA256') throw badArgument('X-Amz-Algorithm', 'Bucket POST with a SigV4 signature must use x-amz-algorithm AWS4-HMAC-SHA256');
    const cred = (fields.get('x-amz-credential') ?? '').split('/');
    if (cred.length !== 5 || cred[4] !== 'aws4_request') throw badArgument('X-Amz-Credential', 'Invalid x-amz-credential');
    const [accessKeyId, date, region, service] = cred as [string, string, string, string];
    const found = await req.lookupKey(accessKeyId);
    if (!found) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: accessKeyId });
    const expected = createHmac('sha256', deriveSigningKey(found.secretAccessKey, date, region, service)).update(policy).digest('hex');
    if (!sameText(expected, v4.toLowerCase())) throw notMatching();
    return found.principal;
  }
  const accessKeyId = fields.get('awsaccesskeyid');
  if (v2 === undefined || accessKeyId === undefined) throw badArgument('Signature', 'Bucket POST must contain a field named \'Signature\' and \'AWSAccessKeyId\' when a policy is given.');
  const found = await req.lookupKey(accessKeyId);
  if (!found) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: accessKeyId });
  if (!sameText(createHmac('sha1', found.secretAccessKey).update(policy).digest('base64'), v2)) throw notMatching();
  return found.principal;
}

/** Counts bytes and fails at the end when fewer than min arrived. */
class AtLeast extends Transform {
  private n = 0;
  constructor(private readonly min: number) {
    super();
  }
  override _transform(c: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.n += c.length;
    cb(null, c);
  }
  override _flush(cb: TransformCallback): void {
    cb(this.n < this.min ? new S3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed size', { MinSizeAllowed: String(this.min), ProposedSize: String(this.n) }) : null);
  }
}

async function storeUpload(req: S3Request, fields: Map<string, string>, file: Readable, filename: string): Promise<S3Reply> {
  const b = bucketOf(req);
  const keyTemplate = fields.get('key');
  if (keyTemplate === undefined) throw badArgument('key', 'Bucket POST must contain a field named \'key\'.  If it is specified, please check the order of the fields.');
  const key = keyTemplate.replace(/\$\{filename\}/g, filename);
  checkObjectKey(key);
  const principal = await formSigner(req, fields);
  const limits = fields.has('policy') ? checkPolicy(fields.get('policy')!, new Map([...fields, ['key', key]]), b.name, new Date()) : { min: 0, max: Number.MAX_SAFE_INTEGER };
  const asSigner: S3Request = { ...req, ...(principal ? { principal } : {}) };
  if (!principal) delete asSigner.principal;
  authorize(asSigner, b, 's3:PutObject', key, allowed(b.acl, principal, 'WRITE'));
  const owner = principal ? ownerOf(principal) : b.owner;
  const headers: Record<string, string> = {};
  let meta = 0;
  for (const [name, v] of fields) {
    if (STORED.includes(name)) headers[name] = v;
    else if (name.startsWith('x-amz-meta-')) {
      headers[name] = v;
      meta += name.length - 11 + v.length;
    }
  }
  if (meta > MAX_USER_METADATA) throw new S3Error('MetadataTooLarge', 'Your metadata headers exceed the maximum allowed metadata size.');
  headers['content-type'] ??= 'binary/octet-stream';
  const info = await req.store.putObject(b.name, key, file.pipe(new AtLeast(limits.min)), {
    headers,
    acl: cannedAcl(fields.get('acl') ?? 'private', owner, b.owner),
    owner,
    maxSize: Math.min(limits.max, req.maxObjectSize),
  });
  const location = `/${b.name}/${encodeURIComponent(key).replace(/%2F/g, '/')}`;
  const redirect = fields.get('success_action_redirect') ?? fields.get('redirect');
  if (redirect) {
    const u = new URL(redirect);
    u.searchParams.set('bucket', b.name);
    u.searchParams.set('key', key);
    u.searchParams.set('etag', quoted(info.etag));
    return { status: 303, headers: { location: u.toString(), etag: quoted(info.etag) } };
  }
  const status = Number(fields.get('success_action_status') ?? 204);
  const out: Record<string, string> = { etag: quoted(info.etag), location };
  if (info.versionId !== 'null') out['x-amz-version-id'] = info.versionId;
  if (status === 201) return { status, headers: out, xml: { root: 'PostResponse', body: { Location: location, Bucket: b.name, Key: key, ETag: quoted(info.etag) } } };
  return { status: status === 200 ? 200 : 204, headers: out };
}

export const postObjectAction: S3Action = {
  name: 'PostObject',
  method: 'POST',
  target: 'bucket',
  when: (req) => /^multipart\/form-data/i.test(String(req.headers['content-type'] ?? '')),
  handler: (req) =>
    new Promise<S3Reply>((resolve, reject) => {
      const fields = new Map<string, string>();
      let handled = false;
      let bb;
      try {
        bb = Busboy({ headers: req.headers as BusboyHeaders, limits: { fieldSize: 20 * 1024, fields: 100, files: 1, parts: 200, headerPairs: 100 } });
      } catch (e) {
        return reject(new S3Error('MalformedPOSTRequest', `The body of your POST request is not well-formed multipart/form-data: ${(e as Error).message}`));
      }
      bb.on('field', (name: string, value: string) => {
        if (!handled) fields.set(name.toLowerCase(), value);
      });
      bb.on('file', (name: string, stream: Readable, filename: string) => {
        if (handled || name.toLowerCase() !== 'file') return void stream.resume();
        handled = true;
        storeUpload(req, fields, stream, filename).then(resolve, (e: unknown) => {
          stream.resume();
          reject(e);
        });
      });
      bb.on('finish', () => {
        if (!handled) reject(badArgument('file', 'POST requires exactly one file upload per request.'));
      });
      bb.on('error', (e: Error) => reject(new S3Error('MalformedPOSTRequest', `The body of your POST request is not well-formed multipart/form-data: ${e.message}`)));
      req.body.on('error', reject);
      req.body.pipe(bb);
    }),
};
