// The NC's side of a live migration (node-controller.ts): what the source and the destination track,
// report and record before, during and after the move, and after a failed one. The driver is a scripted
// stand-in (libvirt migration between two hosts cannot run in a unit test; test/e2e/migrate.test.ts moves a
// real guest between two libvirtds): "migrating" shows the guest on both hosts for a while, then only on
// the destination, as libvirt does.
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { openDatabase } from '@mallee/store';
import { WireError, type InstanceSpec, type nc } from '@mallee/wire';
import { NodeController, type GuestStatus, type Hypervisor, type HypervisorMigration, type VolumeAttachmentSpec } from '../src/index.js';
import { LaunchRecords, migrations } from '../src/launch-records.js';
import { spec } from './harness.js';

class Host implements Hypervisor {
  readonly guests = new Map<string, GuestStatus>();
  readonly aborted: string[] = [];
  earlierConsole: Buffer = Buffer.alloc(0);
  peer: Host | undefined;
  failMigration: string | undefined;
  /** Resolves the running migration (the test holds it to look at both sides mid-way). */
  release: (() => void) | undefined;
  constructor(readonly name: string) {}
  async init() {}
  async capacity() {
    return { cores: 2, memoryMiB: 1024, diskGiB: 20 };
  }
  async runInstance(s: InstanceSpec) {
    this.guests.set(s.instanceId, { instanceId: s.instanceId, state: 'running', cores: s.vmType.cores, memoryMiB: s.vmType.memoryMiB });
  }
  async terminateInstance(id: string) {
    this.guests.delete(id);
  }
  async rebootInstance() {}
  async listGuests() {
    return [...this.guests.values()];
  }
  async consoleOutput() {
    return Buffer.concat([this.earlierConsole, Buffer.from(`console on ${this.name}\n`)]);
  }
  async close() {}
  readonly migration: HypervisorMigration = {
    prepareIncoming: async (s: InstanceSpec, volumes: VolumeAttachmentSpec[]): Promise<nc.MigrationDestination> => ({
      instanceDir: `/${this.name}/${s.instanceId}`, owner: `/${this.name}`, disks: volumes.map((v) => ({ volumeId: v.volumeId, source: '<source/>' })),
    }),
    migrateOut: async (id: string) => {
      const g = this.guests.get(id)!;
      this.peer!.guests.set(id, { ...g }); // the incoming domain exists on the destination before the switch
      await new Promise<void>((r) => (this.release = r));
      if (this.failMigration) {
        this.peer!.guests.delete(id);
        throw new WireError('MigrationFailed', this.failMigration, 500);
      }
      this.guests.delete(id);
      return { console: Buffer.from(`console on ${this.name}\n`) };
    },
    keepEarlierConsole: async (_id: string, earlier: Buffer) => {
      this.earlierConsole = earlier;
    },
    abortIncoming: async (id: string) => {
      this.aborted.push(id);
    },
  };
}

async function controller(hv: Hypervisor, records = new LaunchRecords(openDatabase(':memory:', { migrations }))) {
  const node = new NodeController({
    hypervisor: hv, records, limits: { maxCores: 0, maxMemMiB: 0, maxDiskGiB: 0 }, log: pino({ level: 'silent' }),
    terminatedRetentionMs: 60_000, monitorIntervalMs: 60_000, launchWaitMs: 100,
  });
  await node.start();
  return { node, records };
}

async function pair() {
  const a = new Host('node1');
  const b = new Host('node2');
  a.peer = b;
  b.peer = a;
  const src = await controller(a);
  const dst = await controller(b);
  const s = spec({ cores: 1, memoryMiB: 512, diskGiB: 5 });
  await src.node.runInstance(s);
  await src.node.describeInstances([]); // running once the monitor saw the guest
  return { a, b, src, dst, s };
}

const to = (d: nc.MigrationDestination) => ({ libvirtUri: 'qemu+tcp://node2/system', migrateUri: 'tcp://node2', destination: d });

describe('node controller: live migration', () => {
  it('moves the instance: never reported by both, never terminated, capacity held at the destination, the record follows', async () => {
    const { a, src, dst, s } = await pair();
    const { spec: launch, launchTime } = src.node.migrationSource(s.instanceId);
    expect(launch.instanceId).toBe(s.instanceId);
    const before = await dst.node.describeResource();
    const d = await dst.node.prepareMigration(launch, launchTime, []);
    expect(d.owner).toBe('/node2');
    // Held at the destination from prepare on (a launch there cannot take the room).
    expect((await dst.node.describeResource()).memoryMiB.available).toBe(before.memoryMiB.available - 512);
    const moving = src.node.migrateInstance(s.instanceId, to(d));
    await new Promise((r) => setTimeout(r, 20));
    // Mid-way the guest is on both hosts: the source still reports it running, the destination does not report it.
    expect((await src.node.describeInstances([])).map((i) => [i.instanceId, i.state])).toEqual([[s.instanceId, 'running']]);
    expect(await dst.node.describeInstances([])).toEqual([]);
    await expect(src.node.migrateInstance(s.instanceId, to(d))).rejects.toMatchObject({ code: 'IncorrectInstanceState' });
    a.release!();
    const moved = await moving;
    // Gone from the source with its record, not "terminated": the cc must never see it end.
    expect(await src.node.describeInstances([])).toEqual([]);
    expect(src.records.all()).toEqual([]);
    const inst = await dst.node.finishMigration(s.instanceId, true, moved.console);
    expect(inst).toMatchObject({ instanceId: s.instanceId, state: 'running', launchTime });
    expect((await dst.node.describeInstances([])).map((i) => i.state)).toEqual(['running']);
    expect(dst.records.all().map((r) => [r.spec.instanceId, r.state])).toEqual([[s.instanceId, 'running']]);
    // The console it wrote on the source comes first.
    expect(Buffer.from(await dst.node.consoleOutput(s.instanceId), 'base64').toString()).toBe('console on node1\nconsole on node2\n');
    expect((await dst.node.describeResource()).memoryMiB.available).toBe(before.memoryMiB.available - 512);
  });

  it('a destination NC restarted after the guest arrived adopts it from the record prepare wrote', async () => {
    const { a, b, src, dst, s } = await pair();
    const { spec: launch, launchTime } = src.node.migrationSource(s.instanceId);
    const d = await dst.node.prepareMigration(launch, launchTime, []);
    const moving = src.node.migrateInstance(s.instanceId, to(d));
    await new Promise((r) => setTimeout(r, 20));
    a.release!();
    await moving;
    await dst.node.stop(); // it never heard ncFinishMigration
    const again = await controller(b, dst.records);
    expect((await again.node.describeInstances([])).map((i) => [i.instanceId, i.state])).toEqual([[s.instanceId, 'running']]);
  });

  it('a failed migration leaves the guest on the source and nothing at the destination', async () => {
    const { a, b, src, dst, s } = await pair();
    a.failMigration = 'unable to connect to the destination';
    const { spec: launch, launchTime } = src.node.migrationSource(s.instanceId);
    const free = (await dst.node.describeResource()).memoryMiB.available;
    const d = await dst.node.prepareMigration(launch, launchTime, []);
    const moving = src.node.migrateInstance(s.instanceId, to(d));
    await new Promise((r) => setTimeout(r, 20));
    a.release!();
    await expect(moving).rejects.toMatchObject({ code: 'MigrationFailed' });
    expect(await dst.node.finishMigration(s.instanceId, false)).toBeUndefined();
    expect(b.aborted).toEqual([s.instanceId]);
    expect((await src.node.describeInstances([])).map((i) => i.state)).toEqual(['running']);
    expect(src.records.all().map((r) => r.state)).toEqual(['running']);
    expect(await dst.node.describeInstances([])).toEqual([]);
    expect(dst.records.all()).toEqual([]);
    expect((await dst.node.describeResource()).memoryMiB.available).toBe(free);
  });

  it('refusals: not running here, already on the destination, no room there', async () => {
    const { src, dst, s } = await pair();
    expect(() => src.node.migrationSource('i-00000000')).toThrow(expect.objectContaining({ code: 'InvalidInstanceID.NotFound' }));
    const { spec: launch, launchTime } = src.node.migrationSource(s.instanceId);
    await expect(src.node.prepareMigration(launch, launchTime, [])).rejects.toMatchObject({ code: 'InvalidInstanceID.Duplicate' });
    const big = { ...launch, instanceId: 'i-0000beef', vmType: { ...launch.vmType, memoryMiB: 4096 } };
    await expect(dst.node.prepareMigration(big, launchTime, [])).rejects.toMatchObject({ code: 'InsufficientInstanceCapacity' });
    expect(await dst.node.describeInstances([])).toEqual([]);
  });
});
