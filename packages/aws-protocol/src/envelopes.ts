// EC2's and S3's error envelopes for what fastify answers before any route runs (see
// @mallee/telemetry's envelopeServerOptions): undecodable URLs, unserved paths and methods, HTTP the
// parser refuses.
import { randomBytes, randomUUID } from 'node:crypto';
import type { ErrorEnvelope } from '@mallee/telemetry';
import { REQUEST_ID_HEADER } from './plugin.js';
import { S3Error, s3ErrorXml } from './s3/errors.js';
import { ec2ErrorXml } from './xml.js';

export const ec2ErrorEnvelope: ErrorEnvelope = {
  contentType: 'text/xml;charset=UTF-8',
  requestIdHeader: REQUEST_ID_HEADER,
  newRequestId: () => randomUUID(),
  error(problem, { method, url }) {
    switch (problem) {
      case 'bad-url': return { code: 'MalformedQueryString', message: 'The request URL could not be decoded', status: 404 };
      case 'not-found': return { code: 'InvalidAction', message: `${method} ${String(url).slice(0, 200)} is not served: the EC2 Query API answers GET and POST at /, /services/compute and /services/Eucalyptus`, status: 400 };
      case 'header-too-large': return { code: 'RequestHeaderSectionTooLarge', message: 'The request line and headers exceed the maximum allowed size', status: 431 };
      case 'timeout': return { code: 'RequestTimeout', message: 'The request was not received in time', status: 408 };
      case 'bad-request': return { code: 'InvalidRequest', message: 'The request is not valid HTTP', status: 400 };
      case 'internal': return { code: 'InternalError', message: 'An internal error has occurred', status: 500 };
    }
  },
  render: (err, requestId) => ec2ErrorXml(err.code, err.message, requestId),
};

export const s3ErrorEnvelope: ErrorEnvelope = {
  contentType: 'application/xml',
  requestIdHeader: 'x-amz-request-id',
  newRequestId: () => randomBytes(8).toString('hex').toUpperCase(),
  error(problem, { method }) {
    switch (problem) {
      case 'bad-url': return { code: 'InvalidURI', message: "Couldn't parse the specified URI.", status: 400 };
      case 'not-found': return { code: 'MethodNotAllowed', message: `The specified method (${String(method).slice(0, 20)}) is not allowed against this resource.`, status: 405 };
      case 'header-too-large': return { code: 'RequestHeaderSectionTooLarge', message: 'Your request header section exceeds the maximum allowed size.', status: 400 };
      case 'timeout': return { code: 'RequestTimeout', message: 'Your socket connection to the server was not read from or written to within the timeout period.', status: 400 };
      case 'bad-request': return { code: 'InvalidRequest', message: 'The request is not valid HTTP.', status: 400 };
      case 'internal': return { code: 'InternalError', message: 'We encountered an internal error. Please try again.', status: 500 };
    }
  },
  render: (err, requestId, resource) => s3ErrorXml(new S3Error(err.code, err.message, {}, err.status), resource, requestId),
};
