// Cloud properties in the clc: set/reset over the admin wire op, typed validation, per-zone values,
// persistence across a restart, the other daemons' read op, and the clc's own settings following them
// (terminated-instance retention, the default instance type, the user data limit).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloudProperties, clcPropertyReader, clusterProperties, storageProperties, walrusProperties } from '@mallee/properties';
import { WireClient, WireError, admin, properties as ops, readKeyFile } from '@mallee/wire';
import { walrusKeyFile } from '../src/index.js';
import { instancesOf, items, startFakeCloud, type TestCloud } from './harness.js';
import type { FakeCc } from './fake-cc.js';

let cloud: TestCloud & { cc: FakeCc };
let image: string;

beforeAll(async () => {
  cloud = await startFakeCloud({ clc: { TERMINATED_RETENTION: 7200, WALRUS_MAX_BUCKETS_PER_ACCOUNT: 7 } });
  image = await cloud.registerImage('img');
});
afterAll(async () => {
  await cloud?.stop();
});

const describeProps = async (req: { prefix?: string; names?: string[]; zone?: string } = {}) => (await cloud.admin(ops.DescribeProperties, req)).properties;
const one = async (name: string) => (await describeProps({ names: [name] }))[0];
const modify = (name: string, value?: string) => cloud.admin(admin.ModifyPropertyValue, value === undefined ? { name, reset: true } : { name, value });
const refusal = async (p: Promise<unknown>) => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WireError);
  return err as WireError;
};

describe('cloud properties', () => {
  it('lists every property with its type, default and where its value comes from (mallee.conf settings are defaults)', async () => {
    const all = await describeProps();
    expect(all.map((p) => p.name)).toEqual(expect.arrayContaining(['cloud.vmstate.terminated_time', 'walrus.storagemaxbucketsperaccount', 'storage.maxvolumesizeingb']));
    expect(await one('cloud.vmstate.terminated_time')).toMatchObject({ value: '120', defaultValue: '120', type: 'number', source: 'mallee.conf' });
    expect(await one('walrus.storagemaxbucketsperaccount')).toMatchObject({ value: '7', source: 'mallee.conf' });
    expect(await one('storage.maxvolumesizeingb')).toMatchObject({ value: '15', source: 'default', perZone: true });
    expect((await describeProps({ prefix: 'walrus.' })).every((p) => p.name.startsWith('walrus.'))).toBe(true);
  });

  it('sets a value after checking it against its type, and reset returns it to its default', async () => {
    expect(await modify('walrus.storagemaxbucketsperaccount', ' 12 ')).toMatchObject({ oldValue: '7', value: '12', source: 'set' });
    expect(await one('walrus.storagemaxbucketsperaccount')).toMatchObject({ value: '12', source: 'set' });
    for (const bad of ['-1', '1.5', 'ten', '']) {
      const err = await refusal(modify('walrus.storagemaxbucketsperaccount', bad));
      expect(err.code).toBe('InvalidParameterValue');
      expect(err.message).toContain('walrus.storagemaxbucketsperaccount');
    }
    expect((await one('walrus.storagemaxbucketsperaccount'))!.value).toBe('12');
    expect(await modify('walrus.storagemaxbucketsperaccount')).toMatchObject({ oldValue: '12', value: '7', source: 'mallee.conf' });
  });

  it('refuses unknown properties, zones that are not registered and values the clc cannot honour', async () => {
    expect((await refusal(modify('walrus.nosuchthing', '1'))).code).toBe('NoSuchEntity');
    expect((await refusal(modify('zone-b.storage.maxvolumesizeingb', '5'))).message).toContain('no availability zone named zone-b');
    expect((await refusal(modify('zone-a.cloud.vmstate.terminated_time', '5'))).code).toBe('NoSuchEntity'); // not a per-zone property
    expect((await refusal(modify('cloud.vmtypes.default_type_name', 'm9.huge'))).message).toContain('no instance type named m9.huge');
    expect((await refusal(cloud.admin(admin.ModifyPropertyValue, { name: 'storage.maxvolumesizeingb' }))).code).toBe('MissingParameter');
  });

  it('a per-zone property has a cloud-wide value and a value of its own per zone', async () => {
    await modify('storage.maxvolumesizeingb', '40');
    await modify('zone-a.storage.maxvolumesizeingb', '100');
    const listed = await describeProps({ prefix: 'storage.' });
    expect(listed.find((p) => p.name === 'zone-a.storage.maxvolumesizeingb')).toMatchObject({ value: '100', zone: 'zone-a', source: 'set' });
    expect((await describeProps({ zone: 'zone-a', prefix: 'storage.' })).find((p) => p.name === 'storage.maxvolumesizeingb')!.value).toBe('100');
    expect((await describeProps({ zone: 'zone-other', prefix: 'storage.' })).find((p) => p.name === 'storage.maxvolumesizeingb')!.value).toBe('40');
    await modify('zone-a.storage.maxvolumesizeingb');
    expect((await describeProps({ zone: 'zone-a', names: ['storage.maxvolumesizeingb'] }))[0]!.value).toBe('40');
    await modify('storage.maxvolumesizeingb');
  });

  it('Walrus reads its properties with its own key (cached client), other senders are refused', async () => {
    const reader = clcPropertyReader({ clcUrl: cloud.url, from: 'walrus', key: () => readKeyFile(walrusKeyFile(cloud.clcHome))!, prefix: 'walrus.', ttlMs: 60_000 });
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(7);
    await modify('walrus.storagemaxbucketsperaccount', '3');
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(7); // within the TTL
    reader.invalidate();
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(3);
    expect(reader.peek(storageProperties.maxVolumeSizeGb)).toBe(15); // not under its prefix: the built-in default
    const stranger = new WireClient({ url: cloud.url, from: 'walrus', key: 'f'.repeat(64) });
    expect((await refusal(stranger.call(ops.DescribeProperties, {}))).code).toBe('SignatureDoesNotMatch');
    await modify('walrus.storagemaxbucketsperaccount');
  });

  it('a cc reads its zone\'s cluster.* as cc:<zone> with the cluster\'s key; another zone\'s name or a wrong key is refused', async () => {
    const reader = clcPropertyReader({ clcUrl: cloud.url, from: 'cc:zone-a', key: () => cloud.cc.key, prefix: 'cluster.', zone: 'zone-a', ttlMs: 0 });
    expect(await reader.get(clusterProperties.schedulingPolicy)).toBe('GREEDY');
    await modify('zone-a.cluster.schedulingpolicy', 'ROUNDROBIN');
    expect(await reader.get(clusterProperties.schedulingPolicy)).toBe('ROUNDROBIN');
    expect((await refusal(modify('cluster.schedulingpolicy', 'FASTEST'))).message).toContain('one of GREEDY, ROUNDROBIN, POWERSAVE');
    const otherZone = new WireClient({ url: cloud.url, from: 'cc:zone-b', key: cloud.cc.key });
    expect((await refusal(otherZone.call(ops.DescribeProperties, {}))).code).toBe('UnknownComponent');
    const wrongKey = new WireClient({ url: cloud.url, from: 'cc:zone-a', key: 'e'.repeat(64) });
    expect((await refusal(wrongKey.call(ops.DescribeProperties, {}))).code).toBe('SignatureDoesNotMatch');
    await modify('zone-a.cluster.schedulingpolicy');
  });

  it('values survive a clc restart', async () => {
    await modify('cloud.vmstate.user_data_max_size_kb', '32');
    await cloud.restartClc();
    expect(await one('cloud.vmstate.user_data_max_size_kb')).toMatchObject({ value: '32', source: 'set' });
    await modify('cloud.vmstate.user_data_max_size_kb');
  });
});

describe("the clc's own settings follow their properties", () => {
  const run = async (params: Record<string, string | number> = {}) => items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ...params })).instancesSet);

  it('cloud.vmtypes.default_type_name is the type of a launch that names none', async () => {
    expect(String((await run())[0]!.instanceType)).toBe('m1.small');
    await modify(cloudProperties.defaultTypeName.name, 'c1.medium');
    expect(String((await run())[0]!.instanceType)).toBe('c1.medium');
    await modify(cloudProperties.defaultTypeName.name);
  });

  it('cloud.vmstate.user_data_max_size_kb bounds user data', async () => {
    const userData = Buffer.alloc(3 * 1024, 1).toString('base64');
    expect((await run({ UserData: userData })).length).toBe(1);
    await modify(cloudProperties.userDataMaxSizeKb.name, '2');
    const r = await cloud.ec2.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, UserData: userData });
    expect(r.code).toBe('InvalidParameterValue');
    expect(r.body).toContain('2048 bytes');
    await modify(cloudProperties.userDataMaxSizeKb.name);
  });

  it('cloud.vmstate.terminated_time decides when terminated instances are purged, without a restart', async () => {
    const [inst] = await run();
    const id = String(inst!.instanceId);
    cloud.cc.instances.get(id)!.state = 'terminated';
    await cloud.poll();
    await cloud.poll();
    const visible = async () => instancesOf(await cloud.ec2.ok('DescribeInstances')).some((i) => i.id === id);
    expect(await visible()).toBe(true); // 120 minutes from mallee.conf
    await modify(cloudProperties.terminatedTime.name, '0');
    await cloud.poll();
    expect(await visible()).toBe(false);
    await modify(cloudProperties.terminatedTime.name);
  });
});
