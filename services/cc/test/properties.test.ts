// The cc reads its zone's cluster.* cloud properties from the clc as cc:<zone>, signed with its
// cluster key (keys/cloud.key): cluster.schedulingpolicy set at the clc changes placement without a
// restart; unset (or a clc that does not answer) leaves the cc host's own SCHEDPOLICY in charge. The clc
// here is a stand-in built with the real wire plugin serving DescribeProperties (the clc's own side is
// tested in services/clc/test/properties.test.ts).
import Fastify from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cc, handler, properties as ops, wire } from '@mallee/wire';
import { cleanup, specs, startCc, startNc } from './harness.js';

let policy: { value: string; source: ops.PropertyValue['source'] } = { value: 'GREEDY', source: 'mallee.conf' };
const asked: string[] = [];
let ccKey = '';
const clc = Fastify({ logger: false });
let clcUrl = '';

beforeAll(async () => {
  clc.register(wire, {
    keyFor: (from) => (from === 'cc:mallee-1a' ? ccKey : undefined),
    handlers: [
      handler(ops.DescribeProperties, (req) => {
        asked.push(JSON.stringify(req));
        return { properties: [{ name: 'cluster.schedulingpolicy', value: policy.value, type: 'enum' as const, defaultValue: 'GREEDY', description: '', source: policy.source, perZone: true }] };
      }),
    ],
  });
  clcUrl = await clc.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(() => clc.close());
afterEach(cleanup);

const nodesOf = (placed: { node: string }[]) => placed.map((p) => p.node);

describe('cloud properties in the cc', () => {
  it('cluster.schedulingpolicy set at the clc wins over SCHEDPOLICY; unset, the cc host\'s mallee.conf decides', async () => {
    const ccd = await startCc({ SCHEDPOLICY: 'ROUNDROBIN', ZONE: 'mallee-1a' }, { clcUrl });
    ccKey = ccd.key;
    for (const name of ['node1', 'node2']) await ccd.register(await startNc(name, { SIM_CORES: 8 }));
    // Unset at the clc (its own host's conf says GREEDY): this cc's ROUNDROBIN applies.
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(2), minCount: 1 })).placed)).toEqual(['node1', 'node2']);
    expect(asked.at(-1)).toBe(JSON.stringify({ prefix: 'cluster.', zone: 'mallee-1a' }));
    policy = { value: 'GREEDY', source: 'set' };
    await new Promise((r) => setTimeout(r, 10_100)); // the reader's TTL
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(2), minCount: 1 })).placed)).toEqual(['node1', 'node1']);
  }, 30_000);
});
