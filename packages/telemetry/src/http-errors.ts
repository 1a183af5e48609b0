// What fastify answers on its own, before any route runs — an undecodable URL, a path or method no
// route serves, HTTP the parser refuses (headers too large, garbage, timeouts) — answered in the
// daemon's protocol envelope (EC2, S3 or wire) instead of fastify's JSON, so every client can read it.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';

export type FramingProblem = 'bad-url' | 'not-found' | 'header-too-large' | 'timeout' | 'bad-request' | 'internal';

export interface EnvelopeError {
  code: string;
  message: string;
  status: number;
}

/** A protocol's error envelope (aws-protocol has EC2's and S3's, wire its own). */
export interface ErrorEnvelope {
  contentType: string;
  /** Response header naming the request id (x-amzn-requestid, x-amz-request-id, …). */
  requestIdHeader: string;
  newRequestId(): string;
  /** The error for a framing problem; `method` and `url` are undefined when the HTTP could not be parsed. */
  error(problem: FramingProblem, request: { method?: string; url?: string }): EnvelopeError;
  /** The envelope's text; `resource` is the request path where known. */
  render(err: EnvelopeError, requestId: string, resource: string): string;
}

function pathOf(url: string | undefined): string {
  const u = url ?? '';
  const q = u.indexOf('?');
  return (q < 0 ? u : u.slice(0, q)).slice(0, 1024);
}

function send(envelope: ErrorEnvelope, reply: FastifyReply, err: EnvelopeError, url: string | undefined): FastifyReply {
  const requestId = envelope.newRequestId();
  void reply.code(err.status).header(envelope.requestIdHeader, requestId).type(envelope.contentType);
  return reply.send(reply.request.method === 'HEAD' ? undefined : envelope.render(err, requestId, pathOf(url)));
}

/** Fastify options (spread them into `Fastify({...})`) that answer framework and client errors in the envelope. */
export function envelopeServerOptions(envelope: ErrorEnvelope): Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'> {
  return {
    frameworkErrors: (error, req, reply) => {
      const problem: FramingProblem = error.code === 'FST_ERR_BAD_URL' ? 'bad-url' : 'bad-request';
      send(envelope, reply as FastifyReply, envelope.error(problem, { method: req.method, url: req.url }), req.url);
    },
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      // As fastify's own handler: a reset or destroyed socket has nobody to answer.
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const problem: FramingProblem = err.code === 'HPE_HEADER_OVERFLOW' ? 'header-too-large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'bad-request';
      const e = envelope.error(problem, {});
      const requestId = envelope.newRequestId();
      const body = envelope.render(e, requestId, '');
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\nContent-Type: ${envelope.contentType}\r\n${envelope.requestIdHeader}: ${requestId}\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy(err);
    },
  };
}

/**
 * The app's not-found handler and its root error handler (a body its parsers refuse on a route no plugin
 * of its own handles, e.g. a JSON body to an unserved path), both answering in the envelope.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function envelopeHandlers(app: FastifyInstance<any, any, any, any, any>, envelope: ErrorEnvelope): void {
  // An `Expect` other than 100-continue: node answers a bare 417 unless someone listens for it.
  (app.server as import('node:http').Server).on('checkExpectation', (req, res) => {
    const e = { code: 'ExpectationFailed', message: `Expect: ${String(req.headers.expect).slice(0, 100)} is not supported; only 100-continue is`, status: 417 };
    const requestId = envelope.newRequestId();
    const body = envelope.render(e, requestId, pathOf(req.url));
    res.writeHead(417, { 'content-type': envelope.contentType, [envelope.requestIdHeader]: requestId, 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => send(envelope, reply, envelope.error('not-found', { method: req.method, url: req.url }), req.url));
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      req.log.error({ err }, 'request failed');
      return send(envelope, reply, envelope.error('internal', { method: req.method, url: req.url }), req.url);
    }
    const e = envelope.error('bad-request', { method: req.method, url: req.url });
    return send(envelope, reply, { ...e, status, message: `${e.message}: ${err.message}` }, req.url);
  });
}
