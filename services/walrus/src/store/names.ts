// What a bucket name and an object key may be. Objects are stored under generated ids, never under
// their keys, so keys cannot reach the filesystem; these rules keep names sane for clients and tools.
import { S3Error } from '@mallee/aws-protocol';

export const MAX_KEY_BYTES = 1024;

/** DNS-compatible bucket names, as S3 requires for new buckets. */
export function checkBucketName(name: string): void {
  const bad = (why: string) => new S3Error('InvalidBucketName', `The specified bucket is not valid: ${why}`, { BucketName: name });
  if (name.length < 3 || name.length > 63) throw bad('bucket names must be between 3 and 63 characters long');
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) throw bad('bucket names may contain only lowercase letters, digits, dots and hyphens, and must begin and end with a letter or digit');
  if (name.includes('..') || name.includes('.-') || name.includes('-.')) throw bad('bucket name labels must not be empty or begin or end with a hyphen');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) throw bad('bucket names must not be formatted as an IP address');
}

export function checkObjectKey(key: string): void {
  if (key.length === 0) throw new S3Error('InvalidArgument', 'Object key must not be empty', { ArgumentName: 'key', ArgumentValue: '' });
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new S3Error('KeyTooLongError', 'Your key is too long', { MaxSizeAllowed: String(MAX_KEY_BYTES) });
  if (key.includes('\0')) throw new S3Error('InvalidArgument', 'Object key must not contain NUL', { ArgumentName: 'key', ArgumentValue: key.replace(/\0/g, '\\0') });
  if (key.split('/').includes('..')) throw new S3Error('InvalidArgument', "Object key must not contain a '..' path segment", { ArgumentName: 'key', ArgumentValue: key });
  if (key.includes('\uFFFD')) throw new S3Error('InvalidURI', 'Couldn\'t parse the specified URI: the key is not valid UTF-8');
}
