// What fastify answers before /wire runs comes as a wire Fault (found by test/fuzz: the cc and nc
// answered other paths, undecodable URLs and oversize headers with fastify's JSON).
import { request } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelopeHandlers, envelopeServerOptions } from '@mallee/telemetry';
import { decodeEnvelope, wireErrorEnvelope } from '../src/index.js';

function raw(url: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const r = request({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

let app: FastifyInstance;
let url: string;
beforeAll(async () => {
  app = Fastify({ ...envelopeServerOptions(wireErrorEnvelope) });
  envelopeHandlers(app, wireErrorEnvelope);
  url = await app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await app.close();
});

describe('wire faults for framing errors', () => {
  it('other paths and methods, bad URLs and oversize headers get a Fault envelope with a 4xx', async () => {
    for (const [method, path, headers, status, code] of [
      ['GET', '/wire', {}, 404, 'NotFound'],
      ['POST', '/elsewhere', {}, 404, 'NotFound'],
      ['GET', '/%', {}, 400, 'MalformedRequest'],
      ['POST', '/wire', { 'x-big': 'y'.repeat(20_000) }, 431, 'MalformedRequest'],
    ] as const) {
      const r = await raw(url, method, path, headers);
      expect(r.status, `${method} ${path}`).toBe(status);
      expect(decodeEnvelope(r.body).fault?.code).toBe(code);
    }
  });
});
