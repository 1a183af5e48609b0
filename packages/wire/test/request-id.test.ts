// One user request, one id: a wire call made while serving a wire operation (or an EC2 action) carries
// that operation's request id, so the clc → cc → nc log lines of one request share it.
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { withRequestId } from '@mallee/telemetry';
import { defineOperation, handler, HDR, wire, WireClient } from '../src/index.js';

const Leaf = defineOperation('Leaf', z.object({}), z.object({ seen: z.string() }));
const Middle = defineOperation('Middle', z.object({}), z.object({ seen: z.string(), leafSeen: z.string() }));
const KEY = 'r'.repeat(64);

let leafApp: FastifyInstance;
let middleApp: FastifyInstance;
let middleUrl: string;
beforeAll(async () => {
  leafApp = Fastify({ logger: false });
  await leafApp.register(wire, { keyFor: () => KEY, handlers: [handler(Leaf, (_req, ctx) => ({ seen: ctx.requestId }))] });
  const leafUrl = await leafApp.listen({ port: 0, host: '127.0.0.1' });
  const leaf = new WireClient({ url: leafUrl, from: 'middle', key: KEY });
  middleApp = Fastify({ logger: false });
  await middleApp.register(wire, {
    keyFor: () => KEY,
    // Like the cc calling an nc: no request id passed by hand.
    handlers: [handler(Middle, async (_req, ctx) => ({ seen: ctx.requestId, leafSeen: (await leaf.call(Leaf, {})).seen }))],
  });
  middleUrl = await middleApp.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await leafApp?.close();
  await middleApp?.close();
});

describe('request ids across daemons', () => {
  const client = () => new WireClient({ url: middleUrl, from: 'top', key: KEY });

  it('a call made inside withRequestId sends that id, and the next hop forwards it', async () => {
    const r = await withRequestId('req-top-0001', () => client().call(Middle, {}));
    expect(r).toEqual({ seen: 'req-top-0001', leafSeen: 'req-top-0001' });
  });

  it('an explicit id wins; without either each call gets a fresh one, forwarded all the same', async () => {
    expect((await withRequestId('outer', () => client().call(Middle, {}, { requestId: 'explicit-1' }))).leafSeen).toBe('explicit-1');
    const fresh = await client().call(Middle, {});
    expect(fresh.seen).toMatch(/^[0-9a-f-]{36}$/);
    expect(fresh.leafSeen).toBe(fresh.seen);
  });

  it('a request id header that is not a sane token is replaced, not logged as sent', async () => {
    const res = await fetch(new URL('/wire', middleUrl), { method: 'POST', headers: { [HDR.requestId]: 'x'.repeat(500) } });
    expect(res.status).toBeGreaterThanOrEqual(400);
  });
});
