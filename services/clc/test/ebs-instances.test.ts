// Stop/start of EBS-backed instances in the clc: the API's refusals and the state machine against a FakeCc
// (the cc's reports are what moves stopping → stopped, and a stopped instance must survive any report, or
// its absence, across poller restarts). The SC side (root volumes, exports) needs tgtd and is proven in
// test/e2e/ebs-boot.test.ts; here the dispatcher sends launches unchanged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '@mallee/store';
import { Ec2Error, type Principal } from '@mallee/aws-protocol';
import type { InstanceSpec } from '@mallee/wire';
import { openClcDatabase } from '../src/daemon.js';
import { Clusters } from '../src/clusters.js';
import { Dispatcher } from '../src/dispatch.js';
import { ClusterPoller } from '../src/cluster-poller.js';
import { instanceRow } from '../src/instances.js';
import { ADMIN_ACCOUNT, accountByName } from '../src/accounts.js';
import { describeInstanceAttribute } from '../src/actions/instance-status.js';
import { modifyInstanceAttribute, startInstances, stopInstances, terminateInstances } from '../src/actions/lifecycle.js';
import type { Clc } from '../src/actions/context.js';
import { createImageAction } from '../src/storage/create-image.js';
import { StorageControllers } from '../src/storage/index.js';
import { FakeCc, recordRunning as recordRunningOn } from './fake-cc.js';

let dir: string;
let db: Db;
let fake: FakeCc;
let clc: Clc;
let principal: Principal;
const log = pino({ level: 'silent' });
const ctx = () => ({ principal, log, requestId: 'test' });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-clc-ebs-'));
  db = openClcDatabase(join(dir, 'clc.sqlite'));
  fake = new FakeCc();
  await fake.start();
  const clusters = new Clusters(db);
  fake.key = clusters.register('zone-a', fake.url);
  clc = { db, clusters, dispatcher: new Dispatcher(clusters) } as unknown as Clc;
  const accountId = accountByName(db, ADMIN_ACCOUNT)!.accountId;
  principal = { accountId, accountName: ADMIN_ACCOUNT, userId: 'admin', accessKeyId: 'AKIATEST', isAdmin: true };
});
afterEach(async () => {
  await fake.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const poller = () => new ClusterPoller({ db, clusters: clc.clusters, dispatcher: clc.dispatcher, log, pollIntervalMs: 3_600_000, retentionMs: 3_600_000 });

const recordRunning = (instanceId: string, rootDeviceType: 'ebs' | 'instance-store' = 'ebs') => recordRunningOn(db, fake, principal.accountId, instanceId, rootDeviceType);

const stateOf = (id: string) => instanceRow(db, id)!.state;
const codeOf = async (p: Promise<unknown> | (() => unknown)) => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return err instanceof Ec2Error ? `${err.code}: ${err.message}` : String(err);
  }
  return 'no error';
};

describe('EBS-backed instances: stop, modify, start', () => {
  it('stopping → stopped once the cc reports the guest gone; the stopped instance outlives missing reports and poller restarts; start relaunches it with the new type', async () => {
    recordRunning('i-0000000e');
    const stop = await stopInstances(clc, ['i-0000000e'], false, ctx());
    expect(stop).toMatchObject({ instancesSet: [{ instanceId: 'i-0000000e', previousState: { name: 'running' }, currentState: { code: 64, name: 'stopping' } }] });
    expect(fake.calls.filter((c) => c.op === 'TerminateInstances').map((c) => c.body)).toEqual([{ instanceIds: ['i-0000000e'], force: false }]);

    // The type can change only once stopped.
    expect(await codeOf(() => modifyInstanceAttribute(clc, { InstanceId: 'i-0000000e', InstanceType: { Value: 'm1.small' } }, principal)))
      .toBe("IncorrectInstanceState: The instance 'i-0000000e' is not in the 'stopped' state.");
    const p = poller();
    await p.pollAll(); // the cc says shutting-down: still stopping
    expect(stateOf('i-0000000e')).toBe('stopping');
    fake.instances.get('i-0000000e')!.state = 'terminated';
    await p.pollAll();
    expect(stateOf('i-0000000e')).toBe('stopped');
    expect(instanceRow(db, 'i-0000000e')!.state_reason).toMatch(/^Client\.UserInitiatedShutdown/);

    // No guest anywhere: the cc forgets it; neither this poller nor a restarted one (clc restart) terminates or relaunches it.
    fake.instances.delete('i-0000000e');
    for (let n = 0; n < 5; n++) await p.pollAll();
    const restarted = poller();
    for (let n = 0; n < 3; n++) await restarted.pollAll();
    expect(stateOf('i-0000000e')).toBe('stopped');
    expect(fake.runCount('i-0000000e')).toBe(0);

    // Modify while stopped (both request forms), refusing unknown types; DescribeInstanceAttribute shows it.
    expect(await codeOf(() => modifyInstanceAttribute(clc, { InstanceId: 'i-0000000e', InstanceType: { Value: 'm9.huge' } }, principal)))
      .toBe("InvalidParameterValue: Invalid value 'm9.huge' for InstanceType.");
    modifyInstanceAttribute(clc, { InstanceId: 'i-0000000e', Attribute: 'instanceType', Value: 'm1.large' }, principal);
    modifyInstanceAttribute(clc, { InstanceId: 'i-0000000e', InstanceType: { Value: 'm1.small' } }, principal);
    expect(describeInstanceAttribute(db, principal, { InstanceId: 'i-0000000e', Attribute: 'instanceType' })).toEqual({ instanceId: 'i-0000000e', instanceType: { value: 'm1.small' } });

    // Start: pending at once, relaunched with its id and the new type's resources.
    const before = instanceRow(db, 'i-0000000e')!;
    const start = await startInstances(clc, ['i-0000000e'], ctx());
    expect(start).toMatchObject({ instancesSet: [{ previousState: { code: 80, name: 'stopped' }, currentState: { code: 0, name: 'pending' } }] });
    const launch = fake.calls.filter((c) => c.op === 'RunInstances').map((c) => (c.body as { instances: InstanceSpec[] }).instances[0]!);
    expect(launch).toHaveLength(1);
    expect(launch[0]!.vmType).toEqual({ name: 'm1.small', cores: 1, memoryMiB: 512, diskGiB: 5 }); // was t1.micro, 256 MiB
    expect(instanceRow(db, 'i-0000000e')!.launch_time > before.launch_time).toBe(true);
    fake.instances.get('i-0000000e')!.state = 'running';
    await p.pollAll();
    expect(stateOf('i-0000000e')).toBe('running');
  });

  it('a stopped instance whose root volume was detached is refused a start with EC2\'s error, and stays stopped', async () => {
    recordRunning('i-0000005c');
    await stopInstances(clc, ['i-0000005c'], false, ctx());
    fake.instances.get('i-0000005c')!.state = 'terminated';
    await poller().pollAll();
    expect(stateOf('i-0000005c')).toBe('stopped');
    db.prepare('DELETE FROM volume_attachments WHERE instance_id = ?').run('i-0000005c'); // what DetachVolume of the stopped instance's root leaves
    expect(await codeOf(startInstances(clc, ['i-0000005c'], ctx())))
      .toBe("InvalidParameterValue: Invalid value 'i-0000005c' for instanceId. Instance does not have a volume attached at root (/dev/sda1).");
    expect(stateOf('i-0000005c')).toBe('stopped');
    expect(fake.runCount('i-0000005c')).toBe(0);
  });

  it('refuses what EC2 refuses: stop/start of instance-store, stop of a terminated instance, start of a stopping one', async () => {
    recordRunning('i-0000005a', 'instance-store');
    expect(await codeOf(stopInstances(clc, ['i-0000005a'], false, ctx())))
      .toBe("UnsupportedOperation: The instance 'i-0000005a' does not have an 'ebs' root device type and cannot be stopped.");
    expect(await codeOf(startInstances(clc, ['i-0000005a'], ctx())))
      .toBe("UnsupportedOperation: The instance 'i-0000005a' does not have an 'ebs' root device type and cannot be started.");
    expect(await codeOf(() => modifyInstanceAttribute(clc, { InstanceId: 'i-0000005a', InstanceType: { Value: 'm1.small' } }, principal)))
      .toMatch(/^IncorrectInstanceState/);

    recordRunning('i-0000005b');
    // Starting a running instance changes nothing (EC2 answers its state).
    expect(await startInstances(clc, ['i-0000005b'], ctx())).toMatchObject({ instancesSet: [{ previousState: { name: 'running' }, currentState: { name: 'running' } }] });
    await stopInstances(clc, ['i-0000005b'], true, ctx());
    expect(fake.calls.at(-1)!.body).toEqual({ instanceIds: ['i-0000005b'], force: true });
    expect(await codeOf(startInstances(clc, ['i-0000005b'], ctx()))).toMatch(/^IncorrectInstanceState: The instance 'i-0000005b' is not in a state from which it can be started/);
    // Stopping again is no error; terminating a stopping instance works and then stop is refused.
    expect(await stopInstances(clc, ['i-0000005b'], false, ctx())).toMatchObject({ instancesSet: [{ currentState: { name: 'stopping' } }] });
    await terminateInstances(clc, ['i-0000005b'], ctx());
    expect(stateOf('i-0000005b')).toBe('shutting-down');
    expect(await codeOf(stopInstances(clc, ['i-0000005b'], false, ctx()))).toMatch(/^IncorrectInstanceState/);

    // CreateImage: EBS-backed instances only, running or stopped, with a name.
    const createImage = createImageAction({ db, clusters: clc.clusters, controllers: new StorageControllers(db) });
    const create = async (params: Record<string, string>) => createImage.handler(createImage.input.parse(params), { ...ctx(), apiVersion: '2016-11-15' });
    expect(await codeOf(create({ InstanceId: 'i-0000005a', Name: 'from-store' })))
      .toBe("UnsupportedOperation: The instance 'i-0000005a' does not have an 'ebs' root device type; bundle instance-store instances instead.");
    expect(await codeOf(create({ InstanceId: 'i-0000005b' }))).toMatch(/^MissingParameter/);
    expect(await codeOf(create({ InstanceId: 'i-0000005b', Name: 'from-terminating' }))).toMatch(/^IncorrectInstanceState/);
  });

  it('an EBS-backed guest that ends by itself is stopped, not terminated; a report asked for before a start does not undo it', async () => {
    recordRunning('i-0000000f');
    fake.instances.get('i-0000000f')!.state = 'terminated';
    fake.instances.get('i-0000000f')!.stateReason = 'the guest powered itself off';
    const p = poller();
    await p.pollAll();
    expect(stateOf('i-0000000f')).toBe('stopped');

    // A poll that asked the cc before the start (and still sees the old run's end) must not terminate the new run.
    const asked = new Date(Date.now() - 10).toISOString();
    await startInstances(clc, ['i-0000000f'], ctx());
    expect(stateOf('i-0000000f')).toBe('pending');
    p.applyReports('zone-a', [{ ...fake.instances.get('i-0000000f')!.spec, state: 'terminated', launchTime: asked, node: 'node1' }], asked);
    expect(stateOf('i-0000000f')).toBe('pending');

    // A running EBS-backed instance its cluster stops reporting (guest lost) is stopped, keeping its volumes.
    recordRunning('i-00000010');
    fake.instances.delete('i-00000010');
    for (let n = 0; n < 3; n++) await p.pollAll();
    expect(stateOf('i-00000010')).toBe('stopped');
  });
});
