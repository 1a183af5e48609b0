// S3 errors: the code clients switch on, S3's HTTP status for it, and the `<Error>` envelope S3 sends
// (unlike EC2's `<Response><Errors>`), with the resource and request id.
import { escapeXml, XML_DECLARATION } from '../xml.js';

const STATUS: Record<string, number> = {
  AccessDenied: 403,
  AccountProblem: 403,
  AllAccessDisabled: 403,
  BadDigest: 400,
  BucketAlreadyExists: 409,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  IncompleteBody: 400,
  IncompleteSignature: 400,
  InternalError: 500,
  InsufficientStorage: 507,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidBucketName: 400,
  InvalidBucketState: 409,
  InvalidDigest: 400,
  InvalidObjectState: 403,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  KeyTooLongError: 400,
  MalformedACLError: 400,
  MalformedPOSTRequest: 400,
  MalformedPolicy: 400,
  InvalidPolicyDocument: 400,
  PolicyTooLarge: 400,
  InvalidPartNumber: 416,
  InvalidURI: 400,
  MalformedXML: 400,
  MaxMessageLengthExceeded: 400,
  MetadataTooLarge: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  MissingSecurityHeader: 400,
  NoSuchBucket: 404,
  NoSuchBucketPolicy: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  NoSuchVersion: 404,
  NotImplemented: 501,
  NotModified: 304,
  PreconditionFailed: 412,
  QuotaExceeded: 403,
  RequestTimeTooSkewed: 403,
  RequestTimeout: 400,
  SignatureDoesNotMatch: 403,
  ServiceUnavailable: 503,
  SlowDown: 503,
  TooManyBuckets: 400,
  XAmzContentSHA256Mismatch: 400,
};

export class S3Error extends Error {
  readonly status: number;
  constructor(
    public readonly code: string,
    message: string,
    /** Extra elements S3 adds to some errors (BucketName, Key, UploadId, ArgumentName, …). */
    public readonly extra: Readonly<Record<string, string>> = {},
    status?: number,
  ) {
    super(message);
    this.name = 'S3Error';
    this.status = status ?? STATUS[code] ?? 400;
  }
}

/** S3's own error codes for what the shared SigV4/SigV2 verifiers throw with EC2 codes. */
export function s3ErrorFromAuth(code: string, message: string): S3Error {
  switch (code) {
    case 'AuthFailure':
    case 'InvalidClientTokenId':
      return new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
    case 'SignatureDoesNotMatch':
    case 'XAmzContentSHA256Mismatch':
    case 'IncompleteSignature':
      return new S3Error(code, message);
    case 'RequestExpired':
      // A presigned URL past X-Amz-Expires is AccessDenied; a signed request whose date is too far off is RequestTimeTooSkewed.
      if (message.startsWith('Request has expired')) return new S3Error('AccessDenied', 'Request has expired');
      return new S3Error('RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
    case 'MissingAuthenticationToken':
      return new S3Error('AccessDenied', 'Access Denied');
    default:
      return new S3Error('InvalidRequest', message);
  }
}

export const s3Errors = {
  noSuchBucket: (bucket: string) => new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket }),
  noSuchKey: (key: string) => new S3Error('NoSuchKey', 'The specified key does not exist.', { Key: key }),
  noSuchUpload: (uploadId: string) =>
    new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { UploadId: uploadId }),
  accessDenied: () => new S3Error('AccessDenied', 'Access Denied'),
  invalidArgument: (name: string, value: string, message: string) => new S3Error('InvalidArgument', message, { ArgumentName: name, ArgumentValue: value }),
  malformedXml: () => new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema'),
  notImplemented: (what: string) => new S3Error('NotImplemented', `A header or query you provided implies functionality that is not implemented: ${what}`),
};

/** `<Error><Code/><Message/>…<Resource/><RequestId/></Error>` as S3 sends it. */
export function s3ErrorXml(err: S3Error, resource: string, requestId: string): string {
  const extra = Object.entries(err.extra)
    .map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`)
    .join('');
  return `${XML_DECLARATION}\n<Error><Code>${escapeXml(err.code)}</Code><Message>${escapeXml(err.message)}</Message>${extra}<Resource>${escapeXml(resource)}</Resource><RequestId>${escapeXml(requestId)}</RequestId></Error>`;
}
