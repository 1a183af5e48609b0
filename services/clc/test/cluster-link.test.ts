// The clc's link to its clusters, against a FakeCc (a wire server standing in for the cc) so that
// the cluster can refuse, forget and go away on cue: placement, capacity failures, polling,
// restart reconciliation, lost instances, unreachable zones, retention.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { admin } from '@mallee/wire';
import { openDaemonDatabase } from '@mallee/store';
import { join } from 'node:path';
import { clcMigrations } from '../src/migrations.js';
import { insertReservation, type NewInstance } from '../src/instances.js';
import { instancesOf, items, startFakeCloud, type TestCloud } from './harness.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeCc } from './fake-cc.js';

let cloud: TestCloud & { cc: FakeCc };
let image: string;

async function setup(clc: Parameters<typeof startFakeCloud>[0] = {}) {
  cloud = await startFakeCloud(clc);
  image = await cloud.registerImage('img');
}
afterEach(async () => {
  await cloud?.stop();
});

const run = async (params: Record<string, string | number> = {}) =>
  items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ...params })).instancesSet).map((i) => String(i.instanceId));
const describeAll = async () => instancesOf(await cloud.ec2.ok('DescribeInstances'));
const stateOf = async (id: string) => (await describeAll()).find((i) => i.id === id)?.state;
const countRows = (table: string) => cloud.clc.db.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;

describe('placement', () => {
  beforeEach(() => setup());

  it('InsufficientInstanceCapacity from the cc leaves no instance, reservation or tag behind', async () => {
    cloud.cc.capacity = 1;
    const before = { instances: countRows('instances'), reservations: countRows('reservations'), tags: countRows('tags') };
    const r = await cloud.ec2.call('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 3, 'TagSpecification.1.ResourceType': 'instance', 'TagSpecification.1.Tag.1.Key': 'k', 'TagSpecification.1.Tag.1.Value': 'v' });
    expect(r.code).toBe('InsufficientInstanceCapacity');
    expect(r.status).toBe(500);
    expect({ instances: countRows('instances'), reservations: countRows('reservations'), tags: countRows('tags') }).toEqual(before);
    expect(await describeAll()).toEqual([]);
  });

  it('instances the cc could not place are dropped and the response lists only placed ones', async () => {
    cloud.cc.capacity = 2;
    const ids = await run({ MinCount: 1, MaxCount: 5 });
    expect(ids).toHaveLength(2);
    expect((await describeAll()).map((i) => i.id).sort()).toEqual([...ids].sort());
    expect(countRows('instances')).toBe(2);
  });

  it('the same ClientToken launches once and answers with the same reservation', async () => {
    const first = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ClientToken: 'tok-1' });
    const second = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ClientToken: 'tok-1' });
    expect(second.reservationId).toBe(first.reservationId);
    const id = String(items(first.instancesSet)[0]!.instanceId);
    expect(String(items(second.instancesSet)[0]!.instanceId)).toBe(id);
    expect(cloud.cc.runCount(id)).toBe(1);
    expect(await describeAll()).toHaveLength(1);
  });

  it('the cc receives the instance type, key, groups and user data of the launch', async () => {
    await cloud.ec2.ok('ImportKeyPair', { KeyName: 'k1', PublicKeyMaterial: Buffer.from('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm8WwEJ1Zs2+K6W0rMt9RZ5cD0P2Kkz5E5uGn5j1cUb test').toString('base64') });
    await cloud.ec2.ok('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'web' });
    const userData = Buffer.from('#!/bin/sh\necho hi\n').toString('base64');
    const [id] = await run({ InstanceType: 'c1.medium', KeyName: 'k1', 'SecurityGroup.1': 'web', UserData: userData });
    const call = cloud.cc.calls.find((c) => c.op === 'RunInstances')!.body as { instances: { instanceId: string; vmType: { name: string; cores: number }; keyName: string; publicKey: string; groupNames: string[]; userData: string }[] };
    const spec = call.instances.find((i) => i.instanceId === id)!;
    expect(spec.vmType).toMatchObject({ name: 'c1.medium', cores: 2 });
    expect(spec.keyName).toBe('k1');
    expect(spec.publicKey).toMatch(/^ssh-ed25519 /);
    expect(spec.groupNames).toEqual(['web']);
    expect(spec.userData).toBe(userData);
    const item = (await describeAll())[0]!.item;
    expect(items(item.groupSet).map((g) => g.groupName)).toEqual(['web']);
    expect(item.keyName).toBe('k1');
  });
});

describe('polling', () => {
  beforeEach(() => setup());

  it('states, addresses and reasons follow what the cc reports', async () => {
    const [id] = await run();
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    const d = (await describeAll())[0]!;
    expect(d.state).toBe('running');
    expect(d.item.privateIpAddress).toBe('10.0.0.5');
  });

  it('a zone whose cc stops answering shows unavailable while its instances keep their state, and comes back', async () => {
    const [id] = await run();
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    cloud.cc.down = true;
    await cloud.poll();
    await cloud.poll();
    await cloud.poll();
    expect(await stateOf(id!)).toBe('running');
    const zones = items((await cloud.ec2.ok('DescribeAvailabilityZones')).availabilityZoneInfo);
    expect(zones.map((z) => [z.zoneName, z.zoneState])).toEqual([['zone-a', 'unavailable']]);
    const services = (await cloud.admin(admin.DescribeServices, {})).services;
    const ccStatus = services.find((s) => s.type === 'cc')!;
    expect(ccStatus.state).toBe('NOTREADY');
    expect(ccStatus.lastContact).toBeDefined();
    cloud.cc.down = false;
    await cloud.poll();
    expect(items((await cloud.ec2.ok('DescribeAvailabilityZones')).availabilityZoneInfo)[0]!.zoneState).toBe('available');
    expect((await cloud.admin(admin.DescribeServices, {})).services.filter((s) => s.type === 'cc' || s.type === 'nc').map((s) => `${s.type}:${s.state}`)).toEqual(['cc:ENABLED', 'nc:ENABLED']);
  });

  it('a running instance the cc no longer reports goes through shutting-down to terminated', async () => {
    const [id] = await run();
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    cloud.cc.instances.delete(id!);
    await cloud.poll();
    expect(await stateOf(id!)).toBe('running'); // one missed report is not a loss (a cc restarting rebuilds its view)
    await cloud.poll();
    await cloud.poll();
    expect(await stateOf(id!)).toBe('shutting-down');
    await cloud.poll();
    await cloud.poll();
    const d = (await describeAll()).find((i) => i.id === id)!;
    expect(d.state).toBe('terminated');
    expect((d.item.stateReason as Record<string, string>).code).toBe('Server.InternalError');
  });

  it('a termination the cc missed while down is sent again once it answers', async () => {
    const [id] = await run();
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    cloud.cc.down = true;
    const term = await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': id! });
    expect((items(term.instancesSet)[0]!.currentState as Record<string, string>).name).toBe('shutting-down');
    cloud.cc.down = false;
    await cloud.poll();
    expect(cloud.cc.instances.get(id!)!.state).toBe('shutting-down');
    cloud.cc.instances.get(id!)!.state = 'terminated';
    await cloud.poll();
    expect(await stateOf(id!)).toBe('terminated');
  });
});

describe('deregistered zones', () => {
  beforeEach(() => setup());

  it('instances of a deregistered cluster keep their state and terminate at once when asked', async () => {
    const [id] = await run();
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    await cloud.admin(admin.DeregisterCluster, { name: 'zone-a' });
    await cloud.poll();
    expect(await stateOf(id!)).toBe('running');
    expect(items((await cloud.ec2.ok('DescribeAvailabilityZones')).availabilityZoneInfo)).toEqual([]);
    const term = await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': id! });
    expect((items(term.instancesSet)[0]!.currentState as Record<string, string>).name).toBe('terminated');
    expect((await cloud.ec2.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 })).code).toBe('InsufficientInstanceCapacity');
  });
});

describe('restart reconciliation', () => {
  beforeEach(() => setup());

  it('a pending launch recorded before a crash is sent to the cc exactly once after the restart', async () => {
    const [placed] = await run();
    const orphan = 'i-0badc0de';
    await cloud.restartClc({
      beforeStart: () => {
        // What a clc killed between its launch transaction and cc.RunInstances leaves in its database.
        const db = openDaemonDatabase('', join(cloud.clcHome, 'clc.sqlite'), 'clc', { migrations: clcMigrations }); // where the clc keeps it (PostgreSQL in test:scale-out)
        const template = db.prepare('SELECT * FROM instances WHERE instance_id = ?').get(placed) as NewInstance;
        db.transaction(() => insertReservation(db, { reservationId: 'r-0badc0de', accountId: template.account_id, createdAt: new Date().toISOString() },
          [{ ...template, instance_id: orphan, reservation_id: 'r-0badc0de', launch_index: 0 }], []))();
        db.close();
      },
    });
    await cloud.poll();
    await cloud.poll();
    await cloud.poll();
    expect(cloud.cc.runCount(orphan)).toBe(1);
    expect(cloud.cc.runCount(placed!)).toBe(1);
    cloud.cc.instances.get(orphan)!.state = 'running';
    await cloud.poll();
    expect(await stateOf(orphan)).toBe('running');
    expect((await describeAll()).filter((i) => i.id === orphan)).toHaveLength(1);
  });
});

describe('orphans: instances a cluster runs that the clc does not have as live', () => {
  beforeEach(() => setup());

  const metric = async (name: string) => {
    const text = await (await fetch(`${cloud.clc.url}/metrics`)).text();
    return text.split('\n').filter((l) => l.startsWith(name));
  };
  const terminationsOf = (id: string) => cloud.cc.calls.filter((c) => c.op === 'TerminateInstances' && (c.body as { instanceIds: string[] }).instanceIds.includes(id)).length;

  it('one the clc has as terminated (given up on while its cluster lost it) is terminated at the cc once it is seen again', async () => {
    const [id] = await run();
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    // The cc forgets it for longer than the clc waits (a cc that lost its records), so the clc writes it off…
    const kept = cloud.cc.instances.get(id!)!;
    cloud.cc.instances.delete(id!);
    for (let i = 0; i < 6 && (await stateOf(id!)) !== 'terminated'; i++) await cloud.poll();
    expect(await stateOf(id!)).toBe('terminated');
    expect(terminationsOf(id!)).toBe(0);
    // …then its node reports it again, still running: a guest nobody can see or stop.
    cloud.cc.instances.set(id!, kept);
    await cloud.poll();
    expect(terminationsOf(id!)).toBe(0); // one report is not enough (a termination may be on its way)
    await cloud.poll();
    expect(terminationsOf(id!)).toBe(1);
    expect(cloud.cc.instances.get(id!)!.state).toBe('shutting-down');
    expect(await stateOf(id!)).toBe('terminated');
    cloud.cc.instances.delete(id!);
    await cloud.poll();
    expect(terminationsOf(id!)).toBe(1);
  });

  it('one whose launch RunInstances discarded (the cc died after placing it, and was down when told to drop it) is terminated at the cc once it is seen', async () => {
    cloud.cc.dieAfterPlacing = true;
    const res = await cloud.ec2.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 });
    expect([res.status, res.code]).toEqual([500, 'InsufficientInstanceCapacity']);
    // The launch left nothing visible; the cc (it placed it before it died) holds it, and the clc remembers it.
    expect(await describeAll()).toEqual([]);
    const [id] = [...cloud.cc.instances.keys()];
    expect(cloud.clc.db.prepare('SELECT instance_id FROM discarded_launches').pluck().all()).toEqual([id]);
    // The clc's TerminateInstances right after the failure reached a cc that was down (the fake counts it, failed).
    await sleep(200);
    expect(terminationsOf(id!)).toBe(1);
    // The cc comes back running it: a guest nobody was told of. It goes at the first poll that sees it.
    cloud.cc.down = false;
    cloud.cc.instances.get(id!)!.state = 'running';
    await cloud.poll();
    expect(terminationsOf(id!)).toBe(2);
    expect(cloud.cc.instances.get(id!)!.state).toBe('shutting-down');
    expect(await describeAll()).toEqual([]);
    expect(await metric('mallee_clc_unknown_instances')).toEqual([]);
  });

  it('one the clc has no record of is left running, logged and counted in mallee_clc_unknown_instances', async () => {
    const [id] = await run();
    const known = cloud.cc.instances.get(id!)!;
    cloud.cc.instances.set('i-0000feed', { ...known, spec: { ...known.spec, instanceId: 'i-0000feed' }, state: 'running' });
    await cloud.poll();
    await cloud.poll();
    await cloud.poll();
    expect(terminationsOf('i-0000feed')).toBe(0);
    expect(cloud.cc.instances.get('i-0000feed')!.state).toBe('running');
    expect((await describeAll()).map((i) => i.id)).toEqual([id]);
    expect(await metric('mallee_clc_unknown_instances')).toEqual(['mallee_clc_unknown_instances{zone="zone-a"} 1']);
    cloud.cc.instances.delete('i-0000feed');
    await cloud.poll();
    expect(await metric('mallee_clc_unknown_instances')).toEqual([]);
  });
});

describe('retention', () => {
  beforeEach(() => setup({ clc: { TERMINATED_RETENTION: 0 } }));

  it('terminated instances are purged with their tags once their retention has passed', async () => {
    const [id] = await run({ 'TagSpecification.1.ResourceType': 'instance', 'TagSpecification.1.Tag.1.Key': 'Name', 'TagSpecification.1.Tag.1.Value': 'x' });
    expect(countRows('tags')).toBe(1);
    cloud.cc.instances.get(id!)!.state = 'terminated';
    await cloud.poll();
    await new Promise((r) => setTimeout(r, 5));
    await cloud.poll();
    expect(await describeAll()).toEqual([]);
    expect(countRows('tags')).toBe(0);
    expect(countRows('reservations')).toBe(0);
  });
});
