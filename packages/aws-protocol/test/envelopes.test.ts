// What fastify answers before any route runs comes in EC2's and S3's envelopes (found by test/fuzz:
// the clc answered undecodable URLs, unknown paths and oversize headers with fastify's JSON).
import { request } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelopeHandlers, envelopeServerOptions, type ErrorEnvelope } from '@mallee/telemetry';
import { ec2ErrorEnvelope, s3ErrorEnvelope } from '../src/index.js';

function raw(url: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const r = request({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    r.on('error', reject);
    r.end();
  });
}

async function serve(envelope: ErrorEnvelope): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ ...envelopeServerOptions(envelope) });
  envelopeHandlers(app, envelope);
  app.get('/', async () => 'ok');
  return { app, url: await app.listen({ port: 0, host: '127.0.0.1' }) };
}

describe.each([
  ['EC2', ec2ErrorEnvelope, /^<\?xml[^>]*\?><Response><Errors><Error><Code>([A-Za-z.]+)<\/Code><Message>[^<]+<\/Message><\/Error><\/Errors><RequestID>[^<]+<\/RequestID><\/Response>$/, { badUrl: 404, notFound: 400, big: 431 }],
  ['S3', s3ErrorEnvelope, /^<\?xml[^>]*\?>\n<Error><Code>([A-Za-z.]+)<\/Code><Message>[^<]+<\/Message><Resource>[^<]*<\/Resource><RequestId>[0-9A-F]{16}<\/RequestId><\/Error>$/, { badUrl: 400, notFound: 405, big: 400 }],
] as const)('%s envelope for framing errors', (_name, envelope, shape, status) => {
  let s: { app: FastifyInstance; url: string };
  beforeAll(async () => {
    s = await serve(envelope);
  });
  afterAll(async () => {
    await s.app.close();
  });

  it('an undecodable URL, an unserved method and an unserved path are envelopes, not JSON', async () => {
    for (const [method, path, want] of [['GET', '/%', status.badUrl], ['PATCH', '/', status.notFound], ['GET', '/nothing/here', status.notFound]] as const) {
      const r = await raw(s.url, method, path);
      expect(r.status, `${method} ${path}`).toBe(want);
      expect(r.body, `${method} ${path}`).toMatch(shape);
      expect(r.headers[envelope.requestIdHeader]).toBeTruthy();
    }
  });

  it('a body the root parsers refuse (bad JSON to an unserved path) is an envelope too', async () => {
    const r = await s.app.inject({ method: 'OPTIONS', url: '/', headers: { 'content-type': 'application/json' }, payload: '{nope' });
    expect(r.statusCode).toBe(400);
    expect(r.body).toMatch(shape);
  });

  it('an Expect header other than 100-continue is ExpectationFailed (417) in the envelope', async () => {
    const r = await raw(s.url, 'PUT', '/', { expect: 'nothing' });
    expect(r.status).toBe(417);
    expect(shape.exec(r.body)?.[1]).toBe('ExpectationFailed');
  });

  it('headers past the HTTP parser limit are an envelope too, and the server serves on', async () => {
    const r = await raw(s.url, 'GET', '/', { 'x-big': 'y'.repeat(20_000) });
    expect(r.status).toBe(status.big);
    expect(shape.exec(r.body)?.[1]).toBe('RequestHeaderSectionTooLarge');
    expect((await raw(s.url, 'GET', '/')).body).toBe('ok');
  });
});
