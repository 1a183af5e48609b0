import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { openDatabase } from '@mallee/store';
import type { InstanceSpec } from '@mallee/wire';
import { NodeController, type GuestStatus, type Hypervisor } from '../src/index.js';
import { LaunchRecords, migrations } from '../src/launch-records.js';
import { spec, waitFor } from './harness.js';

/** A driver whose launches take as long, and fail as, the test says. */
class ScriptedHypervisor implements Hypervisor {
  readonly name = 'scripted';
  readonly guests = new Map<string, GuestStatus>();
  launchDelayMs = 0;
  failWith: string | undefined;
  /** A graceful shutdown: the guest stays up this long after terminateInstance. */
  stopDelayMs = 0;
  terminated: string[] = [];
  async init() {}
  async capacity() {
    return { cores: 4, memoryMiB: 4096, diskGiB: 100 };
  }
  async runInstance(s: InstanceSpec) {
    await new Promise((r) => setTimeout(r, this.launchDelayMs));
    if (this.failWith) throw new Error(this.failWith);
    this.guests.set(s.instanceId, { instanceId: s.instanceId, state: 'running', cores: s.vmType.cores, memoryMiB: s.vmType.memoryMiB });
  }
  async terminateInstance(id: string) {
    this.terminated.push(id);
    if (this.stopDelayMs === 0) this.guests.delete(id);
    else setTimeout(() => this.guests.delete(id), this.stopDelayMs).unref();
  }
  async rebootInstance() {}
  async listGuests() {
    return [...this.guests.values()];
  }
  async consoleOutput() {
    return Buffer.from('');
  }
  async close() {}
}

async function controller(hv: Hypervisor, records = new LaunchRecords(openDatabase(':memory:', { migrations }))) {
  const node = new NodeController({
    hypervisor: hv,
    records,
    limits: { maxCores: 0, maxMemMiB: 0, maxDiskGiB: 0 },
    log: pino({ level: 'silent' }),
    terminatedRetentionMs: 60_000,
    monitorIntervalMs: 60_000,
    launchWaitMs: 100,
  });
  await node.start();
  return node;
}

describe('node controller launches', () => {
  it('a driver failing at once fails ncRunInstance with the reason and leaves nothing behind', async () => {
    const hv = new ScriptedHypervisor();
    hv.failWith = 'no such image';
    const node = await controller(hv);
    const s = spec();
    await expect(node.runInstance(s)).rejects.toMatchObject({ code: 'InstanceLaunchFailed', message: expect.stringContaining('no such image') });
    // The caller was told; the node does not report it later (the cc places it elsewhere under the same id).
    expect(await node.describeInstances([])).toEqual([]);
    expect((await node.describeResource()).cores.available).toBe(4);
    await node.stop();
  });

  it('a slow launch answers pending, keeps its resources while building, and is not mistaken for a vanished guest', async () => {
    const hv = new ScriptedHypervisor();
    hv.launchDelayMs = 400;
    const node = await controller(hv);
    const s = spec();
    expect(await node.runInstance(s)).toMatchObject({ state: 'pending' });
    expect((await node.describeInstances([]))[0]!.state).toBe('pending');
    expect((await node.describeResource()).cores.available).toBe(3);
    await waitFor('running', async () => (await node.describeInstances([]))[0]!.state === 'running');
    await node.stop();
  });

  it('a slow launch that fails later shows up as terminated with the reason', async () => {
    const hv = new ScriptedHypervisor();
    hv.launchDelayMs = 300;
    hv.failWith = 'disk full';
    const node = await controller(hv);
    expect(await node.runInstance(spec())).toMatchObject({ state: 'pending' });
    const failed = await waitFor('terminated', async () => (await node.describeInstances([])).find((i) => i.state === 'terminated'));
    expect(failed.stateReason).toBe('launch failed: disk full');
    await node.stop();
  });

  it('terminating an instance that is still being built stops it once the driver has built it', async () => {
    const hv = new ScriptedHypervisor();
    hv.launchDelayMs = 300;
    const node = await controller(hv);
    const s = spec();
    await node.runInstance(s);
    expect(await node.terminateInstance(s.instanceId, false)).toMatchObject({ previousState: 'pending', state: 'shutting-down' });
    await waitFor('terminated', async () => (await node.describeInstances([]))[0]!.state === 'terminated');
    expect(hv.terminated).toEqual([s.instanceId]);
    expect(hv.guests.size).toBe(0);
    await node.stop();
  });

  it('a guest still shutting down gracefully is reported shutting-down, not running, also after an NC restart that finishes the job', async () => {
    const hv = new ScriptedHypervisor();
    hv.stopDelayMs = 60_000;
    const records = new LaunchRecords(openDatabase(':memory:', { migrations }));
    const node = await controller(hv, records);
    const s = spec();
    await node.runInstance(s);
    await node.terminateInstance(s.instanceId, false);
    await new Promise((r) => setTimeout(r, 20));
    expect((await node.describeInstances([]))[0]!.state).toBe('shutting-down');
    await node.stop();
    hv.stopDelayMs = 0;
    const restarted = await controller(hv, records);
    await waitFor('terminated', async () => (await restarted.describeInstances([]))[0]?.state === 'terminated');
    expect(hv.terminated).toEqual([s.instanceId, s.instanceId]);
    await restarted.stop();
  });
});
