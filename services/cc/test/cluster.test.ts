import { afterEach, describe, expect, it } from 'vitest';
import { WireClient, cc, generateKey, nc, readKeyFile } from '@mallee/wire';
import { nodeKeyFile } from '@mallee/nc';
import { cleanup, m1small, specs, startCc, startNc, waitFor, type TestCc, type TestNc } from './harness.js';

afterEach(cleanup);

async function cluster(policy: string, nodes: Record<string, Record<string, number>>): Promise<{ ccd: TestCc; ncs: TestNc[] }> {
  const ccd = await startCc({ SCHEDPOLICY: policy });
  const ncs: TestNc[] = [];
  for (const [name, overrides] of Object.entries(nodes)) {
    const n = await startNc(name, overrides);
    await ccd.register(n);
    ncs.push(n);
  }
  return { ccd, ncs };
}

const nodesOf = (placed: { node: string }[]) => placed.map((p) => p.node);

describe('cluster controller over the wire', () => {
  it('registers a node, runs instances on it and describes them with their node', async () => {
    const { ccd } = await cluster('GREEDY', { node1: {} });
    const nodes = (await ccd.client.call(cc.DescribeNodes, {})).nodes;
    expect(nodes).toMatchObject([{ node: 'node1', state: 'ENABLED' }]);
    expect(nodes[0]!.lastSeen).toBeDefined();
    const batch = specs(2);
    const { placed } = await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 2 });
    expect(placed).toEqual(batch.map((s) => ({ instanceId: s.instanceId, node: 'node1' })));
    const described = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(described.map((i) => i.instanceId).sort()).toEqual(batch.map((s) => s.instanceId).sort());
    expect(described.every((i) => i.node === 'node1' && i.ownerId === '000000000001')).toBe(true);
    await waitFor('running', async () => (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'running'));
    const metrics = await (await fetch(`${ccd.url}/metrics`)).text();
    expect(metrics).toContain('mallee_cc_nodes{state="ENABLED"} 1');
    expect(metrics).toContain('mallee_cc_instances{state="running"} 2');
  });

  it('GREEDY packs the first node before using the next', async () => {
    const { ccd } = await cluster('GREEDY', { node1: { SIM_CORES: 4 }, node2: { SIM_CORES: 4 } });
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(3), minCount: 1 })).placed)).toEqual(['node1', 'node1', 'node1']);
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(3), minCount: 1 })).placed)).toEqual(['node1', 'node2', 'node2']);
  });

  it('ROUNDROBIN spreads instances over the nodes, within and across calls', async () => {
    const { ccd } = await cluster('ROUNDROBIN', { node1: { SIM_CORES: 4 }, node2: { SIM_CORES: 4 } });
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(4), minCount: 1 })).placed)).toEqual(['node1', 'node2', 'node1', 'node2']);
    const one = nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(1), minCount: 1 })).placed);
    const two = nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(1), minCount: 1 })).placed);
    expect([...one, ...two].sort()).toEqual(['node1', 'node2']);
  });

  it('PlaceInstances (EBS-backed launches) chooses by SCHEDPOLICY and holds the room: unpinned launches cannot take it, the launches pinned there do; what does not fit is not placed', async () => {
    const { ccd } = await cluster('ROUNDROBIN', { node1: { SIM_CORES: 2 }, node2: { SIM_CORES: 2 } });
    const ebs = specs(3);
    const place = (batch: typeof ebs) => ccd.client.call(cc.PlaceInstances, { instances: batch.map((x) => ({ instanceId: x.instanceId, vmType: x.vmType })) });
    const first = await place(ebs);
    expect(nodesOf(first.placed)).toEqual(['node1', 'node2', 'node1']);
    expect(first.placed.every((p) => p.url.startsWith('http://127.0.0.1:'))).toBe(true);
    // Asked again (a retry): the same nodes, no second hold.
    expect(nodesOf((await place(ebs)).placed)).toEqual(['node1', 'node2', 'node1']);
    // 4 cores, 3 held: one unpinned launch of two fits.
    const other = await ccd.client.call(cc.RunInstances, { instances: specs(2), minCount: 1 });
    expect(nodesOf(other.placed)).toEqual(['node2']);
    // The pinned launches take their holds over and start where they were placed.
    const pinned = ebs.map((x, i) => ({ ...x, node: first.placed[i]!.node }));
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: pinned, minCount: 3 })).placed)).toEqual(['node1', 'node2', 'node1']);
    // Full: nothing more is placed; a live instance answers its node.
    const more = specs(2);
    expect((await place(more)).placed).toEqual([]);
    expect(nodesOf((await place([ebs[1]!])).placed)).toEqual(['node2']);
  });

  it('POWERSAVE packs onto a node that already runs instances, leaving idle nodes idle', async () => {
    const { ccd, ncs } = await cluster('POWERSAVE', { node1: { SIM_CORES: 4 }, node2: { SIM_CORES: 4 } });
    // Something already runs on node2 (started before this cc knew about it).
    const direct = new WireClient({ url: ncs[1]!.url, from: 'cc', key: readKeyFile(nodeKeyFile(ncs[1]!.home))! });
    await direct.call(nc.ncRunInstance, specs(1)[0]!);
    await ccd.pollNow();
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(3), minCount: 1 })).placed)).toEqual(['node2', 'node2', 'node2']);
    // node2 is full now; only then is the idle node woken.
    expect(nodesOf((await ccd.client.call(cc.RunInstances, { instances: specs(2), minCount: 1 })).placed)).toEqual(['node1', 'node1']);
  });

  it('MAX_CORES=2 vs 4 changes how many m1.small fit; exceeding gives InsufficientInstanceCapacity and starts nothing', async () => {
    const small = await cluster('GREEDY', { node1: { SIM_CORES: 8, MAX_CORES: 2 } });
    const big = await cluster('GREEDY', { node1: { SIM_CORES: 8, MAX_CORES: 4 } });
    for (const [c, fit] of [[small.ccd, 2], [big.ccd, 4]] as const) {
      const res = await c.client.call(cc.DescribeResources, { vmTypes: [m1small] });
      expect(res.availability).toEqual([{ name: 'm1.small', max: fit, available: fit }]);
      await expect(c.client.call(cc.RunInstances, { instances: specs(fit + 1), minCount: fit + 1 })).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
      await c.pollNow();
      expect((await c.client.call(cc.DescribeInstances, { instanceIds: [] })).instances).toEqual([]);
      const { placed } = await c.client.call(cc.RunInstances, { instances: specs(fit + 1), minCount: 1 });
      expect(placed).toHaveLength(fit);
    }
    const direct = new WireClient({ url: small.ncs[0]!.url, from: 'cc', key: readKeyFile(nodeKeyFile(small.ncs[0]!.home))! });
    expect((await direct.call(nc.ncDescribeInstances, { instanceIds: [] })).instances).toHaveLength(2);
  });

  it('RunInstances is idempotent by instance id, also when retried concurrently', async () => {
    const { ccd, ncs } = await cluster('ROUNDROBIN', { node1: { SIM_CORES: 4 }, node2: { SIM_CORES: 4 } });
    const batch = specs(3);
    const [a, b] = await Promise.all([
      ccd.client.call(cc.RunInstances, { instances: batch, minCount: 3 }),
      ccd.client.call(cc.RunInstances, { instances: batch, minCount: 3 }),
    ]);
    const c = await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 3 });
    const sorted = (p: { instanceId: string; node: string }[]) => [...p].sort((x, y) => x.instanceId.localeCompare(y.instanceId));
    expect(sorted(b.placed)).toEqual(sorted(a.placed));
    expect(sorted(c.placed)).toEqual(sorted(a.placed));
    let total = 0;
    for (const n of ncs) {
      const direct = new WireClient({ url: n.url, from: 'cc', key: readKeyFile(nodeKeyFile(n.home))! });
      total += (await direct.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.length;
    }
    expect(total).toBe(3);
  });

  it('two concurrent RunInstances cannot overcommit the cluster', async () => {
    const { ccd } = await cluster('GREEDY', { node1: { SIM_CORES: 2 }, node2: { SIM_CORES: 2 } });
    const results = await Promise.allSettled([
      ccd.client.call(cc.RunInstances, { instances: specs(3), minCount: 3 }),
      ccd.client.call(cc.RunInstances, { instances: specs(3), minCount: 3 }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'InsufficientInstanceCapacity' } });
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances).toHaveLength(3);
  });

  it('a node that goes away is NOTREADY with its instances kept; when it returns (and adopts its guests) it is ENABLED again', async () => {
    const { ccd, ncs } = await cluster('GREEDY', { node1: { SIM_BOOT_DELAY: 50 } });
    const batch = specs(3);
    await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 3 });
    await waitFor('running', async () => (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'running'));
    await ncs[0]!.stop();
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]).toMatchObject({ node: 'node1', state: 'NOTREADY', detail: expect.stringContaining('unreachable') });
    const kept = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(kept.map((i) => i.instanceId).sort()).toEqual(batch.map((s) => s.instanceId).sort());
    expect(kept.every((i) => i.state === 'running' && i.node === 'node1')).toBe(true);
    // Marked, not lost: the state is the last one the node reported, since it stopped answering.
    expect(kept.every((i) => i.nodeUnreachableSince !== undefined && Date.parse(i.nodeUnreachableSince) <= Date.now())).toBe(true);
    // No capacity is offered by a node that does not answer.
    await expect(ccd.client.call(cc.RunInstances, { instances: specs(1), minCount: 1 })).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
    await ncs[0]!.start();
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]).toMatchObject({ node: 'node1', state: 'ENABLED' });
    const back = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(back.map((i) => i.instanceId).sort()).toEqual(batch.map((s) => s.instanceId).sort());
    expect(back.every((i) => i.state === 'running' && i.nodeUnreachableSince === undefined)).toBe(true);
  });

  it('a cc restarted while a node is down still reports that node’s instances as last known', async () => {
    const { ccd, ncs } = await cluster('GREEDY', { node1: { SIM_BOOT_DELAY: 50 } });
    const batch = specs(2);
    await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 2 });
    await waitFor('running', async () => (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'running'));
    await ncs[0]!.stop();
    await ccd.restart();
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]).toMatchObject({ state: 'NOTREADY' });
    const kept = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(kept.map((i) => [i.instanceId, i.state, i.node]).sort()).toEqual(batch.map((s) => [s.instanceId, 'running', 'node1']).sort());
    // RunInstances retried after the restart still finds them: not placed twice.
    await ncs[0]!.start();
    await ccd.pollNow();
    const again = await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 2 });
    expect(again.placed.map((p) => p.node)).toEqual(['node1', 'node1']);
    expect((await ccd.client.call(cc.DescribeResources, { vmTypes: [m1small] })).nodes[0]!.cores.available).toBe(2);
  });

  it('routes terminate, reboot and console output to the instance’s node; unknown instances are handled', async () => {
    const { ccd } = await cluster('ROUNDROBIN', { node1: { SIM_BOOT_DELAY: 50 }, node2: { SIM_BOOT_DELAY: 50 } });
    const batch = specs(2);
    await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 2 });
    const [a, b] = batch.map((s) => s.instanceId) as [string, string];
    const consoleOf = async (id: string) => Buffer.from((await ccd.client.call(cc.GetConsoleOutput, { instanceId: id })).output, 'base64').toString();
    await waitFor('boot', async () => (await consoleOf(b)).includes(`boot done ${b}`));
    await ccd.client.call(cc.RebootInstances, { instanceIds: [b] });
    await waitFor('reboot', async () => (await consoleOf(b)).includes(`reboot requested ${b}`));
    const res = await ccd.client.call(cc.TerminateInstances, { instanceIds: [a, 'i-deadbeef'], force: false });
    expect(res.instances).toEqual([
      { instanceId: a, previousState: expect.stringMatching(/pending|running/), state: 'shutting-down' },
      { instanceId: 'i-deadbeef', previousState: 'terminated', state: 'terminated' },
    ]);
    await waitFor('terminated', async () => (await ccd.client.call(cc.DescribeInstances, { instanceIds: [a] })).instances[0]?.state === 'terminated');
    await expect(ccd.client.call(cc.RebootInstances, { instanceIds: ['i-deadbeef'] })).rejects.toMatchObject({ code: 'InvalidInstanceID.NotFound' });
    await expect(ccd.client.call(cc.GetConsoleOutput, { instanceId: 'i-deadbeef' })).rejects.toMatchObject({ code: 'InvalidInstanceID.NotFound' });
  });

  it('DescribeResources sums per-type availability over the enabled nodes', async () => {
    const { ccd } = await cluster('GREEDY', { node1: { SIM_CORES: 4, SIM_MEM: 1024 }, node2: { SIM_CORES: 2, SIM_MEM: 8192 } });
    const large = { name: 'm1.large', cores: 2, memoryMiB: 512, diskGiB: 10 };
    await ccd.client.call(cc.RunInstances, { instances: specs(1), minCount: 1 });
    const res = await ccd.client.call(cc.DescribeResources, { vmTypes: [m1small, large] });
    expect(res.nodes.map((n) => [n.node, n.cores.available])).toEqual([['node1', 3], ['node2', 2]]);
    // node1: small min(4 cores, 1024/256=4)=4, now 3 free (768 MiB); large min(2, 2)=2, now min(1, 1)=1; node2: small 2, large 1.
    expect(res.availability).toEqual([
      { name: 'm1.small', max: 6, available: 5 },
      { name: 'm1.large', max: 3, available: 2 },
    ]);
  });

  it('a node whose key is not installed is NOTREADY and says why; deregistering removes it', async () => {
    const ccd = await startCc();
    const n = await startNc('node1');
    await ccd.client.call(cc.RegisterNode, { node: 'node1', url: n.url });
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]).toMatchObject({ state: 'NOTREADY', detail: expect.stringContaining('UnknownComponent') });
    await ccd.client.call(cc.DeregisterNode, { node: 'node1' });
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes).toEqual([]);
    await expect(ccd.client.call(cc.DeregisterNode, { node: 'node1' })).rejects.toMatchObject({ code: 'NoSuchNode' });
  });

  it('registering a node again at its url answers the key it was issued (a retry after a lost answer leaves the node ENABLED); a new url or deregister + register issues a new key', async () => {
    const ccd = await startCc();
    const n = await startNc('node1');
    await ccd.register(n);
    const issued = readKeyFile(nodeKeyFile(n.home));
    // The answer to this one "is lost" (the clc or the cc killed after the row was written): the node keeps its
    // installed key, and the cc must go on signing with that key, before and after a cc restart.
    const again = await ccd.client.call(cc.RegisterNode, { node: 'node1', url: n.url });
    expect(again.key).toBe(issued);
    await ccd.restart();
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]).toMatchObject({ node: 'node1', state: 'ENABLED' });
    const moved = await ccd.client.call(cc.RegisterNode, { node: 'node1', url: n.url.replace('127.0.0.1', 'localhost') });
    expect(moved.key).not.toBe(issued);
    await ccd.client.call(cc.DeregisterNode, { node: 'node1' });
    const fresh = await ccd.client.call(cc.RegisterNode, { node: 'node1', url: n.url });
    expect([issued, moved.key]).not.toContain(fresh.key);
  });

  it('refuses a wrong key and senders other than the clc', async () => {
    const ccd = await startCc();
    await expect(new WireClient({ url: ccd.url, from: 'clc', key: generateKey() }).call(cc.DescribeNodes, {})).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    const key = readKeyFile(`${ccd.home}/keys/cloud.key`)!;
    await expect(new WireClient({ url: ccd.url, from: 'admin', key }).call(cc.DescribeNodes, {})).rejects.toMatchObject({ code: 'UnknownComponent' });
  });

  it('places a thousand instances in one call, packs them GREEDY and accounts every one', async () => {
    const big = { SIM_CORES: 600, SIM_MEM: 600 * 256, SIM_DISK: 600 * 5 };
    const { ccd } = await cluster('GREEDY', { node1: big, node2: big });
    const batch = specs(1000);
    const { placed } = await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 1000 });
    expect(placed.filter((p) => p.node === 'node1')).toHaveLength(600);
    expect(placed.filter((p) => p.node === 'node2')).toHaveLength(400);
    await ccd.pollNow();
    const described = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(new Set(described.map((i) => i.instanceId))).toEqual(new Set(batch.map((s) => s.instanceId)));
    const res = await ccd.client.call(cc.DescribeResources, { vmTypes: [m1small] });
    expect(res.nodes.map((n) => n.cores.available)).toEqual([0, 200]);
    expect(res.availability).toEqual([{ name: 'm1.small', max: 1200, available: 200 }]);
  }, 60_000);
});
