import { afterEach, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { WireError, cc, handler, nc, wire, type InstanceSpec, type NodeInstance } from '@mallee/wire';
import { cleanup, m1small, specs, startCc, startNc } from './harness.js';

const fakes: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
  await cleanup();
});

/** An NC that advertises plenty of room but refuses every launch: its own accounting is final. */
async function refusingNode(): Promise<{ url: string; setKey(k: string): void; launches: number }> {
  let key: string | undefined;
  const state = { launches: 0 };
  const app = Fastify();
  const room = { max: 64, available: 64 };
  await app.register(wire, {
    keyFor: (from) => (from === 'cc' ? key : undefined),
    handlers: [
      handler(nc.ncDescribeResource, () => ({ status: 'enabled' as const, hypervisor: 'fake', cores: room, memoryMiB: { max: 65536, available: 65536 }, diskGiB: room })),
      handler(nc.ncDescribeInstances, () => ({ instances: [] as NodeInstance[] })),
      handler(nc.ncRunInstance, () => {
        state.launches++;
        throw new WireError('InsufficientInstanceCapacity', 'full after all');
      }),
    ],
  });
  fakes.push(app);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, setKey: (k) => (key = k), get launches() { return state.launches; } };
}

describe('cluster controller when nodes misbehave', () => {
  it('an instance a node refuses at launch goes to the next node that fits', async () => {
    const ccd = await startCc({ SCHEDPOLICY: 'GREEDY' });
    const fake = await refusingNode();
    const reg = await ccd.client.call(cc.RegisterNode, { node: 'liar', url: fake.url });
    fake.setKey(reg.key);
    const honest = await startNc('honest', { SIM_CORES: 4 });
    await ccd.register(honest);
    const { placed } = await ccd.client.call(cc.RunInstances, { instances: specs(2), minCount: 2 });
    expect(placed.map((p) => p.node)).toEqual(['honest', 'honest']);
    expect(fake.launches).toBeGreaterThan(0);
  });

  it('when refusals leave fewer than minCount, the started ones are rolled back and the call fails', async () => {
    const ccd = await startCc({ SCHEDPOLICY: 'ROUNDROBIN' });
    const honest = await startNc('honest', { SIM_CORES: 1 });
    await ccd.register(honest);
    const fake = await refusingNode();
    const reg = await ccd.client.call(cc.RegisterNode, { node: 'liar', url: fake.url });
    fake.setKey(reg.key);
    await ccd.pollNow();
    await expect(ccd.client.call(cc.RunInstances, { instances: specs(2), minCount: 2 })).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
    const left = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(left.every((i) => i.state === 'shutting-down' || i.state === 'terminated')).toBe(true);
  });

  it('a NOTREADY node offers no capacity, and terminating its instances fails retryably', async () => {
    const ccd = await startCc();
    const n = await startNc('node1', { SIM_CORES: 4 });
    await ccd.register(n);
    const [s] = specs(1);
    await ccd.client.call(cc.RunInstances, { instances: [s!], minCount: 1 });
    await n.stop();
    await ccd.pollNow();
    const res = await ccd.client.call(cc.DescribeResources, { vmTypes: [m1small] });
    expect(res.nodes[0]).toMatchObject({ node: 'node1', status: 'disabled' });
    expect(res.availability).toEqual([{ name: 'm1.small', max: 0, available: 0 }]);
    await expect(ccd.client.call(cc.TerminateInstances, { instanceIds: [s!.instanceId], force: false })).rejects.toMatchObject({ code: 'ServiceUnavailable' });
    await n.start();
    await ccd.pollNow();
    expect((await ccd.client.call(cc.TerminateInstances, { instanceIds: [s!.instanceId], force: false })).instances[0]).toMatchObject({ state: 'shutting-down' });
  });
});

/**
 * A stand-in node for live migration (the real two-node path runs in test/e2e/migrate.test.ts with libvirt): it
 * runs `running` (the source) or nothing, records the ncMigrateInstance it is asked for, and as a destination
 * confirms an arrival once `finishGate` resolves, the first `dropFinish` confirmations cut off.
 */
async function migratingNode(running: InstanceSpec[], opts: { finishGate?: Promise<void>; dropFinish?: number } = {}): Promise<{ url: string; setKey(k: string): void; asked: { libvirtUri: string; migrateUri: string }[]; finishes: number }> {
  let key: string | undefined;
  const asked: { libvirtUri: string; migrateUri: string }[] = [];
  const app = Fastify();
  const room = { max: 64, available: 64 };
  const launchTime = new Date().toISOString();
  const view = (s: InstanceSpec): NodeInstance => ({ instanceId: s.instanceId, reservationId: s.reservationId, ownerId: s.ownerId, imageId: s.imageId, state: 'running', vmType: s.vmType, launchTime });
  const instances = (): NodeInstance[] => running.map(view);
  const incoming: InstanceSpec[] = [];
  const seen = { finishes: 0 };
  // The first `dropFinish` ncFinishMigration requests have their connection cut before any answer (a node gone away).
  let drop = opts.dropFinish ?? 0;
  app.addHook('preHandler', async (req, reply) => {
    if (drop > 0 && String(req.body).includes('ncFinishMigration')) {
      drop--;
      reply.hijack();
      req.raw.socket.destroy();
      return reply;
    }
  });
  await app.register(wire, {
    keyFor: (from) => (from === 'cc' ? key : undefined),
    handlers: [
      handler(nc.ncDescribeResource, () => ({ status: 'enabled' as const, hypervisor: 'fake', cores: room, memoryMiB: { max: 65536, available: 65536 }, diskGiB: room })),
      handler(nc.ncDescribeInstances, () => ({ instances: instances() })),
      handler(nc.ncMigrationSource, (req) => ({ spec: running.find((s) => s.instanceId === req.instanceId)!, launchTime })),
      handler(nc.ncPrepareMigration, (req) => {
        incoming.push(req.spec);
        return { destination: { instanceDir: '/nowhere', owner: 'fake', disks: [] } };
      }),
      handler(nc.ncMigrateInstance, (req) => {
        asked.push({ libvirtUri: req.libvirtUri, migrateUri: req.migrateUri });
        running.splice(0);
        return { instanceId: req.instanceId, ms: 1 };
      }),
      // The destination reports the guest once it has confirmed its arrival (after finishGate, when given).
      handler(nc.ncFinishMigration, async (req) => {
        seen.finishes++;
        await opts.finishGate;
        const arrived = incoming.find((x) => x.instanceId === req.instanceId);
        if (!arrived) return {};
        running.push(arrived);
        return { instance: view(arrived) };
      }),
    ],
  });
  fakes.push(app);
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, setKey: (k) => (key = k), asked, get finishes() { return seen.finishes; } };
}

describe('live migration as the cc asks for it', () => {
  it('the source node is told the destination libvirtd by MIGRATE_LIBVIRT_URI, {host} the destination\'s registered address', async () => {
    const ccd = await startCc({ MIGRATE_LIBVIRT_URI: 'qemu+tls://{host}/system?no_verify=0' });
    const [spec] = specs(1);
    const source = await migratingNode([spec!]);
    const dest = await migratingNode([]);
    source.setKey((await ccd.client.call(cc.RegisterNode, { node: 'src', url: source.url })).key);
    // The destination registered by name: {host} is the host of its registered URL.
    dest.setKey((await ccd.client.call(cc.RegisterNode, { node: 'dst', url: dest.url.replace('127.0.0.1', 'localhost') })).key);
    await ccd.pollNow();
    const res = await ccd.client.call(cc.MigrateInstance, { instanceId: spec!.instanceId, dest: 'dst', volumes: [] });
    expect([res.source, res.dest]).toEqual(['src', 'dst']);
    expect(source.asked).toEqual([{ libvirtUri: 'qemu+tls://localhost/system?no_verify=0', migrateUri: 'tcp://localhost' }]);
  });

  it('reports the instance all through the move, also while neither node does (the destination slow to confirm)', async () => {
    const ccd = await startCc();
    const [spec] = specs(1);
    let confirm = () => {};
    const source = await migratingNode([spec!]);
    const dest = await migratingNode([], { finishGate: new Promise<void>((r) => (confirm = r)) });
    source.setKey((await ccd.client.call(cc.RegisterNode, { node: 'src', url: source.url })).key);
    dest.setKey((await ccd.client.call(cc.RegisterNode, { node: 'dst', url: dest.url })).key);
    await ccd.pollNow();
    const where = async () => (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances.map((i) => [i.instanceId, i.node, i.state]);
    const moving = ccd.client.call(cc.MigrateInstance, { instanceId: spec!.instanceId, dest: 'dst', volumes: [] });
    // The source has let go (its ncMigrateInstance answered) and the destination has not confirmed: polls see it on neither.
    for (let i = 0; i < 50 && source.asked.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(source.asked).toHaveLength(1);
    await ccd.pollNow();
    expect(await where()).toEqual([[spec!.instanceId, 'src', 'running']]);
    expect((await ccd.client.call(cc.DescribeInstances, { instanceIds: [spec!.instanceId] })).instances).toHaveLength(1);
    confirm();
    expect((await moving).dest).toBe('dst');
    await ccd.pollNow();
    expect(await where()).toEqual([[spec!.instanceId, 'dst', 'running']]);
  });

  it('a destination that does not answer its confirmation is asked again: the guest is there, the move stands', async () => {
    const ccd = await startCc();
    const [spec] = specs(1);
    const source = await migratingNode([spec!]);
    // Two cuts: the wire client's own resend on a closed connection, then the cc's next attempt gets through.
    const dest = await migratingNode([], { dropFinish: 2 });
    source.setKey((await ccd.client.call(cc.RegisterNode, { node: 'src', url: source.url })).key);
    dest.setKey((await ccd.client.call(cc.RegisterNode, { node: 'dst', url: dest.url })).key);
    await ccd.pollNow();
    const res = await ccd.client.call(cc.MigrateInstance, { instanceId: spec!.instanceId, dest: 'dst', volumes: [] });
    expect([res.source, res.dest]).toEqual(['src', 'dst']);
    expect(dest.finishes).toBe(1);
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances.map((i) => [i.node, i.state])).toEqual([['dst', 'running']]);
  });
});
