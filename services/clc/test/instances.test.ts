// RunInstances → DescribeInstances → TerminateInstances through the real ec2Api, against a real cc and nc.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, instancesOf, items, startTestCloud, type TestCloud } from './harness.js';

let cloud: TestCloud;
let image: string;
beforeAll(async () => {
  cloud = await startTestCloud();
  image = await cloud.registerImage('img');
});
afterAll(async () => {
  await cloud?.stop();
});

const describeOne = async (id: string) => instancesOf(await cloud.ec2.ok('DescribeInstances', { 'InstanceId.1': id }))[0]!;

describe('instances', () => {
  it('a launched instance is pending, then running once the clc has polled its cluster', async () => {
    const run = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 });
    const [inst] = items(run.instancesSet);
    const id = String(inst!.instanceId);
    expect(id).toMatch(/^i-[0-9a-f]{8}$/);
    expect(String(run.reservationId)).toMatch(/^r-[0-9a-f]{8}$/);
    expect((inst!.instanceState as Record<string, string>).name).toBe('pending');
    expect(inst!.instanceType).toBe('m1.small');
    expect((await describeOne(id)).state).toBe('pending');
    const running = await eventually('running', async () => {
      await cloud.poll();
      const d = await describeOne(id);
      return d.state === 'running' ? d : undefined;
    });
    expect((running.item.instanceState as Record<string, string>).code).toBe('16');
    expect((running.item.placement as Record<string, string>).availabilityZone).toBe('zone-a');
  });

  it('a cc restart loses no running instance, even when the clc polls it before it has polled its nodes', async () => {
    const run = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2 });
    const ids = items(run.instancesSet).map((i) => String(i.instanceId));
    await eventually('running', async () => {
      await cloud.poll();
      const states = await Promise.all(ids.map(describeOne));
      return states.every((d) => d.state === 'running') ? true : undefined;
    });
    await cloud.restartCc();
    for (let i = 0; i < 5; i++) await cloud.clc.pollNow();
    await cloud.poll();
    expect((await Promise.all(ids.map(describeOne))).map((d) => d.state)).toEqual(['running', 'running']);
  });

  it('terminating moves the instance to shutting-down and then terminated', async () => {
    const run = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 });
    const id = String(items(run.instancesSet)[0]!.instanceId);
    const term = await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': id });
    const change = items(term.instancesSet)[0]!;
    expect((change.previousState as Record<string, string>).name).toBe('pending');
    expect(['shutting-down', 'terminated']).toContain((change.currentState as Record<string, string>).name);
    await eventually('terminated', async () => {
      await cloud.poll();
      return (await describeOne(id)).state === 'terminated' ? true : undefined;
    });
    const again = await cloud.ec2.ok('TerminateInstances', { 'InstanceId.1': id });
    expect((items(again.instancesSet)[0]!.currentState as Record<string, string>).name).toBe('terminated');
  });

  it('/metrics counts instances by zone and state, and clusters by state', async () => {
    const text = await (await fetch(new URL('/metrics', cloud.url))).text();
    expect(text).toMatch(/^mallee_clc_instances\{zone="zone-a",state="running"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_clc_clusters\{state="ENABLED"\} 1$/m);
    expect(text).toMatch(/^mallee_clc_accounts 1$/m);
  });

  it('malformed and unknown instance ids are refused with their EC2 codes', async () => {
    expect((await cloud.ec2.call('DescribeInstances', { 'InstanceId.1': 'bogus' })).code).toBe('InvalidInstanceID.Malformed');
    expect((await cloud.ec2.call('DescribeInstances', { 'InstanceId.1': 'i-12345678' })).code).toBe('InvalidInstanceID.NotFound');
    expect((await cloud.ec2.call('TerminateInstances', { 'InstanceId.1': 'i-12345678' })).code).toBe('InvalidInstanceID.NotFound');
  });
});
