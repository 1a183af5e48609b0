// The wire Fault envelope for what fastify answers before the /wire route runs (see @mallee/telemetry's
// envelopeServerOptions): other paths and methods, undecodable URLs, HTTP the parser refuses. Unsigned,
// as every refusal that comes before the sender is known.
import { randomUUID } from 'node:crypto';
import type { ErrorEnvelope } from '@mallee/telemetry';
import { encodeFault, HDR, WIRE_PATH } from './protocol.js';

export const wireErrorEnvelope: ErrorEnvelope = {
  contentType: 'application/xml',
  requestIdHeader: HDR.requestId,
  newRequestId: () => randomUUID(),
  error(problem, { method, url }) {
    switch (problem) {
      case 'not-found': return { code: 'NotFound', message: `${method} ${String(url).slice(0, 200)} is not served here: wire messages are POSTed to ${WIRE_PATH}`, status: 404 };
      case 'bad-url': return { code: 'MalformedRequest', message: 'the request URL could not be decoded', status: 400 };
      case 'header-too-large': return { code: 'MalformedRequest', message: 'the request headers exceed the maximum allowed size', status: 431 };
      case 'timeout': return { code: 'RequestTimeout', message: 'the request was not received in time', status: 408 };
      case 'bad-request': return { code: 'MalformedRequest', message: 'the request is not valid HTTP', status: 400 };
      case 'internal': return { code: 'InternalError', message: 'the request failed inside the component; see its log', status: 500 };
    }
  },
  render: (err) => encodeFault(err.code, err.message),
};
