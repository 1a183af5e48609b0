import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { WireClient, generateKey, nc, writeKeyFile } from '@mallee/wire';
import { nodeKeyFile } from '../src/index.js';
import { cleanup, spec, startNode, tempHome, waitFor } from './harness.js';

afterEach(cleanup);

const consoleText = async (node: Awaited<ReturnType<typeof startNode>>, instanceId: string) =>
  Buffer.from((await node.client.call(nc.ncGetConsoleOutput, { instanceId })).output, 'base64').toString();

describe('node controller over the wire', () => {
  it('runs an instance that goes pending → running and shows the boot-done marker on its console', async () => {
    const node = await startNode({ SIM_BOOT_DELAY: 200 });
    const s = spec();
    const { instance } = await node.client.call(nc.ncRunInstance, s);
    expect(instance).toMatchObject({ instanceId: s.instanceId, state: 'pending', reservationId: s.reservationId, vmType: s.vmType });
    await waitFor('running', async () => (await node.client.call(nc.ncDescribeInstances, { instanceIds: [s.instanceId] })).instances[0]?.state === 'running');
    expect(await consoleText(node, s.instanceId)).toContain(`mallee: boot done ${s.instanceId}`);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toContain('mallee_nc_instances{state="running"} 1');
    expect(metrics).toContain('mallee_nc_capacity{resource="cores",kind="available"} 3');
  });

  it('MAX_CORES replaces the host core count: 2 vs 4 decides how many 1-core instances fit', async () => {
    for (const maxCores of [2, 4]) {
      const node = await startNode({ SIM_CORES: 8, MAX_CORES: maxCores });
      expect((await node.client.call(nc.ncDescribeResource, {})).cores).toEqual({ max: maxCores, available: maxCores });
      let started = 0;
      for (let i = 0; i < 6; i++) {
        try {
          await node.client.call(nc.ncRunInstance, spec());
          started++;
        } catch (err) {
          expect(err).toMatchObject({ code: 'InsufficientInstanceCapacity' });
        }
      }
      expect(started).toBe(maxCores);
      expect((await node.client.call(nc.ncDescribeResource, {})).cores).toEqual({ max: maxCores, available: 0 });
      await node.stop();
    }
  });

  it('MAX_MEM and MAX_DISK cap the host and refuse what does not fit', async () => {
    const node = await startNode({ SIM_MEM: 8192, MAX_MEM: 1024, SIM_DISK: 100, MAX_DISK: 20 });
    const res = await node.client.call(nc.ncDescribeResource, {});
    expect(res.memoryMiB.max).toBe(1024);
    expect(res.diskGiB.max).toBe(20);
    await expect(node.client.call(nc.ncRunInstance, spec({ memoryMiB: 2048 }))).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
    await expect(node.client.call(nc.ncRunInstance, spec({ diskGiB: 21 }))).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
    expect((await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances).toEqual([]);
  });

  it('concurrent launches never overcommit the node', async () => {
    const node = await startNode({ SIM_CORES: 3 });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => node.client.call(nc.ncRunInstance, spec())));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
  });

  it('ncRunInstance is idempotent by instance id', async () => {
    const node = await startNode({ SIM_CORES: 4 });
    const s = spec();
    const [a, b] = await Promise.all([node.client.call(nc.ncRunInstance, s), node.client.call(nc.ncRunInstance, s)]);
    const c = await node.client.call(nc.ncRunInstance, s);
    expect(a.instance.instanceId).toBe(s.instanceId);
    expect(b.instance.launchTime).toBe(a.instance.launchTime);
    expect(c.instance.launchTime).toBe(a.instance.launchTime);
    expect((await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances).toHaveLength(1);
    expect((await node.client.call(nc.ncDescribeResource, {})).cores.available).toBe(3);
  });

  it('terminate goes shutting-down → terminated, frees the resources, and the instance is forgotten later', async () => {
    const node = await startNode({ SIM_BOOT_DELAY: 100 }, { terminatedRetentionMs: 600 });
    const s = spec();
    await node.client.call(nc.ncRunInstance, s);
    const res = await node.client.call(nc.ncTerminateInstance, { instanceId: s.instanceId, force: false });
    expect(res).toEqual({ instanceId: s.instanceId, previousState: 'pending', state: 'shutting-down' });
    const describe = async () => (await node.client.call(nc.ncDescribeInstances, { instanceIds: [s.instanceId] })).instances[0];
    await waitFor('terminated', async () => (await describe())?.state === 'terminated');
    expect((await node.client.call(nc.ncDescribeResource, {})).cores.available).toBe(4);
    expect(await node.client.call(nc.ncTerminateInstance, { instanceId: s.instanceId, force: false })).toEqual({ instanceId: s.instanceId, previousState: 'terminated', state: 'terminated' });
    await waitFor('forgotten', async () => (await describe()) === undefined);
    await expect(node.client.call(nc.ncTerminateInstance, { instanceId: s.instanceId, force: false })).rejects.toMatchObject({ code: 'InvalidInstanceID.NotFound' });
  });

  it('reboot adds a reboot line and a second boot-done marker', async () => {
    const node = await startNode({ SIM_BOOT_DELAY: 100 });
    const s = spec();
    await node.client.call(nc.ncRunInstance, s);
    const marker = `mallee: boot done ${s.instanceId}`;
    await waitFor('first boot', async () => (await consoleText(node, s.instanceId)).includes(marker));
    await node.client.call(nc.ncRebootInstance, { instanceId: s.instanceId });
    const text = await waitFor('second boot', async () => {
      const t = await consoleText(node, s.instanceId);
      return t.split(marker).length - 1 === 2 ? t : undefined;
    });
    expect(text).toContain(`mallee: reboot requested ${s.instanceId}`);
    await expect(node.client.call(nc.ncRebootInstance, { instanceId: 'i-00000000' })).rejects.toMatchObject({ code: 'InvalidInstanceID.NotFound' });
  });

  it('a restarted NC adopts its guests with their specs: same ids, no duplicates, still running', async () => {
    const node = await startNode({ SIM_BOOT_DELAY: 50 });
    const specs = [spec(), spec(), spec()];
    for (const s of specs) await node.client.call(nc.ncRunInstance, s);
    await waitFor('running', async () => (await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'running'));
    const before = (await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances;
    await node.restart();
    const after = (await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances;
    expect(after.map((i) => i.instanceId).sort()).toEqual(specs.map((s) => s.instanceId).sort());
    expect(after.map((i) => ({ ...i })).sort((a, b) => a.instanceId.localeCompare(b.instanceId))).toEqual(
      before.sort((a, b) => a.instanceId.localeCompare(b.instanceId)),
    );
    expect((await node.client.call(nc.ncDescribeResource, {})).cores.available).toBe(1);
    // A retried launch after the restart is still not a second guest.
    await node.client.call(nc.ncRunInstance, specs[0]!);
    expect((await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances).toHaveLength(3);
  });

  it('on restart a launch record without a guest is marked terminated, and a guest without a record is reported, not killed', async () => {
    const node = await startNode({ SIM_BOOT_DELAY: 50 });
    const kept = spec();
    const lost = spec();
    await node.client.call(nc.ncRunInstance, kept);
    await node.client.call(nc.ncRunInstance, lost);
    await waitFor('running', async () => (await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'running'));
    await node.stop();
    // Simulate what a crash can leave: the hypervisor lost one guest, the NC lost one record.
    const { openDatabase } = await import('@mallee/store');
    const sim = openDatabase(`${node.home}/simulated/guests.sqlite`, { migrations: [{ id: 1, name: 'guests', up: '' }] });
    sim.prepare('DELETE FROM guests WHERE instance_id = ?').run(lost.instanceId);
    sim.close();
    const ncdb = openDatabase(`${node.home}/nc.sqlite`, { migrations: [{ id: 1, name: 'launch records', up: '' }] });
    ncdb.prepare('DELETE FROM instances WHERE instance_id = ?').run(kept.instanceId);
    ncdb.close();
    await node.restart();
    const byId = new Map((await node.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.map((i) => [i.instanceId, i]));
    expect(byId.get(lost.instanceId)?.state).toBe('terminated');
    expect(byId.get(kept.instanceId)).toMatchObject({ state: 'running', ownerId: '', stateReason: expect.stringContaining('without a launch record') });
    // The unrecorded guest still holds its core.
    expect((await node.client.call(nc.ncDescribeResource, {})).cores.available).toBe(3);
  });

  it('refuses a wrong key, an unknown sender, and everything while no key is installed; a key installed later works', async () => {
    const node = await startNode({}, { installKey: false });
    await expect(node.client.call(nc.ncDescribeResource, {})).rejects.toMatchObject({ code: 'UnknownComponent' });
    writeKeyFile(nodeKeyFile(node.home), node.key);
    expect((await node.client.call(nc.ncDescribeResource, {})).hypervisor).toBe('simulated');
    await expect(new WireClient({ url: node.url, from: 'cc', key: generateKey() }).call(nc.ncDescribeResource, {})).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(new WireClient({ url: node.url, from: 'clc', key: node.key }).call(nc.ncDescribeResource, {})).rejects.toMatchObject({ code: 'UnknownComponent' });
    rmSync(nodeKeyFile(node.home));
    await expect(node.client.call(nc.ncDescribeResource, {})).rejects.toMatchObject({ code: 'UnknownComponent' });
  });

  it('answers while its hypervisor is still starting: /healthz says so, operations are NodeStarting, then it serves', async () => {
    const home = tempHome();
    const starting = startNode({ SIM_INIT_DELAY: 1500 }, { home, installKey: false });
    const urlFile = join(home, 'run', 'nc.url');
    const url = await waitFor('nc.url', () => (existsSync(urlFile) ? readFileSync(urlFile, 'utf8').trim() : undefined));
    const health = (await (await fetch(new URL('/healthz', url))).json()) as { status: string; step?: string };
    expect(health).toMatchObject({ status: 'starting', step: expect.stringContaining('SIM_INIT_DELAY') });
    const key = generateKey();
    writeKeyFile(nodeKeyFile(home), key);
    await expect(new WireClient({ url, from: 'cc', key }).call(nc.ncDescribeResource, {})).rejects.toMatchObject({ code: 'NodeStarting', message: expect.stringContaining('starting') });
    expect((await fetch(new URL('/metrics', url))).status).toBe(503);
    const node = await starting;
    expect(((await (await fetch(new URL('/healthz', node.url))).json()) as { status: string }).status).toBe('ok');
    expect((await new WireClient({ url, from: 'cc', key }).call(nc.ncDescribeResource, {})).hypervisor).toBe('simulated');
  });

  it('console output is the last 64 KiB, base64', async () => {
    const node = await startNode({ SIM_BOOT_DELAY: 0 });
    const s = spec();
    await node.client.call(nc.ncRunInstance, s);
    for (let i = 0; i < 400; i++) await node.client.call(nc.ncRebootInstance, { instanceId: s.instanceId });
    const out = Buffer.from((await node.client.call(nc.ncGetConsoleOutput, { instanceId: s.instanceId })).output, 'base64');
    expect(out.length).toBe(64 * 1024);
    expect(out.toString()).toMatch(/boot done .*\r\n$/);
  });
});
