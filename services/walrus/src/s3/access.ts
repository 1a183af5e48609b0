// The one access decision every action makes: the bucket policy first (explicit Deny, explicit
// Allow), then what the ACL or ownership allows. Cloud admins pass.
import { S3Error } from '@mallee/aws-protocol';
import type { BucketInfo } from '../store/types.js';
import type { S3Request } from './context.js';
import { evaluatePolicy } from './policy.js';

export function authorize(req: Pick<S3Request, 'principal'>, bucket: BucketInfo, action: string, key: string | undefined, aclAllows: boolean): void {
  if (req.principal?.isAdmin) return;
  const verdict = bucket.policy ? evaluatePolicy(bucket.policy, bucket.name, req.principal, action, key) : undefined;
  if (verdict === 'Deny') throw new S3Error('AccessDenied', 'Access Denied');
  if (verdict === 'Allow' || aclAllows) return;
  throw new S3Error('AccessDenied', 'Access Denied');
}

export const isOwner = (req: S3Request, bucket: BucketInfo) => req.principal !== undefined && req.principal.accountId === bucket.owner.id;
