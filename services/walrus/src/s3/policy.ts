// Bucket policies, the subset S3 users write most: Allow/Deny by principal (account ids, ARNs, "*"),
// action (s3:GetObject, s3:Get*, s3:*) and resource (arn:aws:s3:::bucket[/key-glob]). An explicit
// Deny wins, an explicit Allow grants without an ACL, otherwise the ACL decides. Conditions and the
// Not* forms are refused at PutBucketPolicy rather than silently ignored.
import { S3Error, type Principal } from '@mallee/aws-protocol';

export const MAX_POLICY_BYTES = 20 * 1024;

interface Statement {
  effect: 'Allow' | 'Deny';
  /** undefined = everyone ("*"). */
  principals?: string[];
  actions: RegExp[];
  resources: RegExp[];
}

const malformed = (why: string) => new S3Error('MalformedPolicy', why);

function glob(pattern: string, caseInsensitive = false): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, caseInsensitive ? 'is' : 's');
}

const strings = (v: unknown, what: string): string[] => {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0 || list.some((x) => typeof x !== 'string' || x === '')) throw malformed(`${what} must be a string or a list of strings`);
  return list as string[];
};

/** Account id named by a policy principal: `123456789012`, `arn:aws:iam::123456789012:root|user/…`. */
function principalAccount(p: string): string {
  const m = /^arn:aws:iam::([^:]+):/.exec(p);
  return m ? m[1]! : p;
}

/** Parses and checks a policy document for `bucket`; MalformedPolicy when it is outside the subset. */
export function parsePolicy(text: string, bucket: string): Statement[] {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw new S3Error('PolicyTooLarge', 'Policy exceeds the maximum allowed document size.');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw malformed('Policies must be valid JSON and the first byte must be \'{\'');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw malformed('Policies must be a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.Version !== undefined && d.Version !== '2012-10-17' && d.Version !== '2008-10-17') throw malformed('Invalid policy version');
  if (d.Statement === undefined) throw malformed('Missing required field Statement');
  const raw = Array.isArray(d.Statement) ? d.Statement : [d.Statement];
  return raw.map((s): Statement => {
    if (typeof s !== 'object' || s === null) throw malformed('Statement must be an object');
    const st = s as Record<string, unknown>;
    for (const k of Object.keys(st)) {
      if (!['Sid', 'Effect', 'Principal', 'Action', 'Resource'].includes(k)) throw malformed(`Policy statement field ${k} is not supported by Walrus`);
    }
    if (st.Effect !== 'Allow' && st.Effect !== 'Deny') throw malformed('Invalid effect: must be Allow or Deny');
    if (st.Principal === undefined) throw malformed('Missing required field Principal');
    let principals: string[] | undefined;
    if (st.Principal !== '*') {
      if (typeof st.Principal !== 'object' || st.Principal === null) throw malformed('Invalid principal in policy');
      const p = st.Principal as Record<string, unknown>;
      const list = [...(p.AWS !== undefined ? strings(p.AWS, 'Principal.AWS') : []), ...(p.CanonicalUser !== undefined ? strings(p.CanonicalUser, 'Principal.CanonicalUser') : [])];
      if (list.length === 0) throw malformed('Invalid principal in policy');
      principals = list.includes('*') ? undefined : list.map(principalAccount);
    }
    const actions = strings(st.Action, 'Action').map((a) => {
      if (!/^s3:[A-Za-z*?]+$/.test(a) && a !== '*') throw malformed(`Policy has invalid action ${a}`);
      return glob(a, true);
    });
    const resources = strings(st.Resource, 'Resource').map((r) => {
      if (r !== `arn:aws:s3:::${bucket}` && !r.startsWith(`arn:aws:s3:::${bucket}/`) && !(r.startsWith(`arn:aws:s3:::`) && glob(r.slice(13)).test(bucket))) {
        throw malformed('Policy has invalid resource');
      }
      return glob(r);
    });
    return { effect: st.Effect, ...(principals ? { principals } : {}), actions, resources };
  });
}

const cache = new Map<string, Statement[]>();

/** 'Deny', 'Allow' or undefined (the policy says nothing) for this request. */
export function evaluatePolicy(text: string, bucket: string, principal: Principal | undefined, action: string, key?: string): 'Allow' | 'Deny' | undefined {
  let statements = cache.get(text);
  if (!statements) {
    statements = parsePolicy(text, bucket);
    if (cache.size > 1000) cache.clear();
    cache.set(text, statements);
  }
  const resource = key === undefined ? `arn:aws:s3:::${bucket}` : `arn:aws:s3:::${bucket}/${key}`;
  let verdict: 'Allow' | undefined;
  for (const s of statements) {
    if (s.principals && (!principal || !s.principals.includes(principal.accountId))) continue;
    if (!s.actions.some((a) => a.test(action))) continue;
    if (!s.resources.some((r) => r.test(resource))) continue;
    if (s.effect === 'Deny') return 'Deny';
    verdict = 'Allow';
  }
  return verdict;
}
