// Request validation and the informational actions (regions, zones incl. Eucalyptus verbose,
// instance types in both API shapes, account attributes, console output, stop/start).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancesOf, items, startFakeCloud, type TestCloud } from './harness.js';
import type { FakeCc } from './fake-cc.js';

let cloud: TestCloud & { cc: FakeCc };
let image: string;
beforeAll(async () => {
  cloud = await startFakeCloud();
  image = await cloud.registerImage('img');
});
afterAll(async () => {
  await cloud?.stop();
});

const code = async (params: Record<string, string | number>) => (await cloud.ec2.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ...params })).code;

describe('RunInstances validation', () => {
  it('refuses bad counts, types, keys, zones, images and user data with EC2 codes, launching nothing', async () => {
    expect(await code({ MinCount: 0 })).toBe('InvalidParameterValue');
    expect(await code({ MinCount: 3, MaxCount: 2 })).toBe('InvalidParameterValue');
    expect(await code({ MinCount: 'abc' })).toBe('InvalidParameterValue');
    expect(await code({ InstanceType: 'm9.huge' })).toBe('InvalidParameterValue');
    expect(await code({ KeyName: 'nope' })).toBe('InvalidKeyPair.NotFound');
    expect(await code({ 'Placement.AvailabilityZone': 'elsewhere' })).toBe('InvalidParameterValue');
    expect(await code({ 'SecurityGroup.1': 'nope' })).toBe('InvalidGroup.NotFound');
    expect(await code({ ImageId: 'emi-00000000' })).toBe('InvalidAMIID.NotFound');
    expect(await code({ ImageId: 'bogus' })).toBe('InvalidAMIID.Malformed');
    expect(await code({ UserData: Buffer.alloc(16 * 1024 + 1, 1).toString('base64') })).toBe('InvalidParameterValue');
    expect(await code({ UserData: 'not base64!' })).toBe('InvalidParameterValue');
    expect((await cloud.ec2.call('RunInstances', { MinCount: 1, MaxCount: 1 })).code).toBe('MissingParameter');
    expect(cloud.cc.calls.filter((c) => c.op === 'RunInstances')).toEqual([]);
    expect(instancesOf(await cloud.ec2.ok('DescribeInstances'))).toEqual([]);
  });

  it('accepts 16 KiB of user data', async () => {
    expect(await code({ UserData: Buffer.alloc(16 * 1024, 1).toString('base64') })).toBeUndefined();
  });
});

describe('DescribeInstances filters', () => {
  it('filters by type, state, reservation, launch index and tags', async () => {
    const r = await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2, InstanceType: 'm1.large' });
    const ids = items(r.instancesSet).map((i) => String(i.instanceId));
    await cloud.ec2.ok('CreateTags', { 'ResourceId.1': ids[1]!, 'Tag.1.Key': 'role', 'Tag.1.Value': 'db' });
    const ask = async (params: Record<string, string>) => instancesOf(await cloud.ec2.ok('DescribeInstances', params)).map((i) => i.id).sort();
    expect(await ask({ 'Filter.1.Name': 'instance-type', 'Filter.1.Value.1': 'm1.large' })).toEqual([...ids].sort());
    expect(await ask({ 'Filter.1.Name': 'reservation-id', 'Filter.1.Value.1': String(r.reservationId), 'Filter.2.Name': 'launch-index', 'Filter.2.Value.1': '1' })).toEqual([ids[1]]);
    expect(await ask({ 'Filter.1.Name': 'tag:role', 'Filter.1.Value.1': 'db' })).toEqual([ids[1]]);
    expect(await ask({ 'Filter.1.Name': 'tag-key', 'Filter.1.Value.1': 'role' })).toEqual([ids[1]]);
    expect(await ask({ 'Filter.1.Name': 'instance-state-name', 'Filter.1.Value.1': 'running' })).toEqual([]);
    expect(await ask({ 'Filter.1.Name': 'instance-state-code', 'Filter.1.Value.1': '0', 'Filter.2.Name': 'instance-type', 'Filter.2.Value.1': 'm1.large' })).toEqual([...ids].sort());
    expect(await ask({ 'Filter.1.Name': 'group-name', 'Filter.1.Value.1': 'default', 'Filter.2.Name': 'availability-zone', 'Filter.2.Value.1': 'zone-a', 'Filter.3.Name': 'instance-type', 'Filter.3.Value.1': 'm1.large' })).toEqual([...ids].sort());
    expect((await cloud.ec2.call('DescribeInstances', { 'Filter.1.Name': 'no-such-filter', 'Filter.1.Value.1': 'x' })).code).toBe('InvalidParameterValue');
    const inst = instancesOf(await cloud.ec2.ok('DescribeInstances', { 'InstanceId.1': ids[0]! }))[0]!.item;
    expect(inst).toMatchObject({ imageId: image, amiLaunchIndex: '0', instanceType: 'm1.large', rootDeviceType: 'instance-store' });
    expect(String(inst.launchTime)).toMatch(/^\d{4}-\d\d-\d\dT/);
  });
});

describe('DescribeInstances pages', () => {
  it('MaxResults and NextToken walk the whole listing once, in order', async () => {
    await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 7, MaxCount: 7 });
    const all = instancesOf(await cloud.ec2.ok('DescribeInstances')).map((i) => i.id);
    expect(all.length).toBeGreaterThanOrEqual(7);
    const paged: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await cloud.ec2.ok('DescribeInstances', { MaxResults: 5, ...(token ? { NextToken: token } : {}) });
      const ids = instancesOf(page).map((i) => i.id);
      expect(ids.length).toBeLessThanOrEqual(5);
      paged.push(...ids);
      token = page.nextToken ? String(page.nextToken) : undefined;
      pages++;
    } while (token && pages < 20);
    expect(paged).toEqual(all);
    expect(pages).toBe(Math.ceil(all.length / 5));
    expect((await cloud.ec2.call('DescribeInstances', { MaxResults: 5, 'InstanceId.1': all[0]! })).code).toBe('InvalidParameterCombination');
    expect((await cloud.ec2.call('DescribeInstances', { MaxResults: 5, NextToken: 'garbage' })).code).toBe('InvalidParameterValue');
  });
});

describe('instance status and attributes', () => {
  it('DescribeInstanceStatus shows running instances as ok, others only with IncludeAllInstances', async () => {
    const ids = items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2, UserData: Buffer.from('hello').toString('base64') })).instancesSet).map((i) => String(i.instanceId));
    cloud.cc.instances.get(ids[0]!)!.state = 'running';
    await cloud.poll();
    const running = items((await cloud.ec2.ok('DescribeInstanceStatus', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! })).instanceStatusSet);
    expect(running.map((s) => s.instanceId)).toEqual([ids[0]]);
    expect(running[0]).toMatchObject({ availabilityZone: 'zone-a', instanceStatus: { status: 'ok' }, systemStatus: { status: 'ok' } });
    const all = items((await cloud.ec2.ok('DescribeInstanceStatus', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]!, IncludeAllInstances: 'true' })).instanceStatusSet);
    expect(all.map((s) => [s.instanceId, (s.instanceState as Record<string, string>).name])).toEqual([[ids[0], 'running'], [ids[1], 'pending']]);
  });

  it('DescribeInstanceStatus: while the node does not answer its cc the system status is impaired (reachability failed since then), the state stays running; the cluster itself unreachable is insufficient-data; back to ok after', async () => {
    const [id] = items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 })).instancesSet).map((i) => String(i.instanceId));
    const fake = cloud.cc.instances.get(id!)!;
    fake.state = 'running';
    const since = new Date(Date.now() - 5000).toISOString();
    fake.nodeUnreachableSince = since;
    await cloud.poll();
    const status = async (extra: Record<string, string> = {}) => items((await cloud.ec2.ok('DescribeInstanceStatus', { 'InstanceId.1': id!, ...extra })).instanceStatusSet);
    expect(await status()).toEqual([expect.objectContaining({
      instanceState: expect.objectContaining({ name: 'running' }),
      systemStatus: { status: 'impaired', details: { item: [{ name: 'reachability', status: 'failed', impairedSince: since }] } },
      instanceStatus: { status: 'insufficient-data', details: { item: [{ name: 'reachability', status: 'insufficient-data' }] } },
    })]);
    expect((await status({ 'Filter.1.Name': 'system-status.status', 'Filter.1.Value.1': 'impaired' })).map((s) => s.instanceId)).toEqual([id]);
    cloud.cc.down = true;
    await cloud.poll();
    expect((await status())[0]).toMatchObject({ systemStatus: { status: 'insufficient-data' }, instanceStatus: { status: 'insufficient-data' } });
    cloud.cc.down = false;
    delete fake.nodeUnreachableSince;
    await cloud.poll();
    expect((await status())[0]).toMatchObject({ systemStatus: { status: 'ok', details: { item: [{ name: 'reachability', status: 'passed' }] } }, instanceStatus: { status: 'ok' } });
  });

  it('DescribeInstanceAttribute answers type, user data and groups of the account\'s own instance', async () => {
    const id = String(items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: 'm1.large', UserData: Buffer.from('hi').toString('base64') })).instancesSet)[0]!.instanceId);
    expect((await cloud.ec2.ok('DescribeInstanceAttribute', { InstanceId: id, Attribute: 'instanceType' })).instanceType).toEqual({ value: 'm1.large' });
    expect((await cloud.ec2.ok('DescribeInstanceAttribute', { InstanceId: id, Attribute: 'userData' })).userData).toEqual({ value: Buffer.from('hi').toString('base64') });
    expect(items((await cloud.ec2.ok('DescribeInstanceAttribute', { InstanceId: id, Attribute: 'groupSet' })).groupSet).map((g) => g.groupName)).toEqual(['default']);
    expect((await cloud.ec2.call('DescribeInstanceAttribute', { InstanceId: id, Attribute: 'colour' })).code).toBe('InvalidParameterValue');
    const other = await cloud.account('attrother');
    expect((await other.ec2.call('DescribeInstanceAttribute', { InstanceId: id, Attribute: 'userData' })).code).toBe('InvalidInstanceID.NotFound');
  });
});

describe('regions, zones and attributes', () => {
  it('DescribeRegions names this region and its endpoint', async () => {
    const regions = items((await cloud.ec2.ok('DescribeRegions')).regionInfo);
    expect(regions).toEqual([expect.objectContaining({ regionName: 'mallee', regionEndpoint: `${cloud.url}/services/compute` })]);
    expect((await cloud.ec2.call('DescribeRegions', { 'RegionName.1': 'us-east-1' })).code).toBe('InvalidParameterValue');
  });

  it('the admin\'s verbose zone listing shows free / max per instance type as Eucalyptus does', async () => {
    const zones = items((await cloud.ec2.ok('DescribeAvailabilityZones', { 'ZoneName.1': 'verbose' })).availabilityZoneInfo);
    expect(zones[0]!.zoneName).toBe('zone-a');
    expect(zones[1]).toMatchObject({ zoneName: '|- vm types', zoneState: 'free / max   cpu   ram  disk' });
    const small = zones.find((z) => z.zoneName === '|- m1.small')!;
    expect(String(small.zoneState)).toMatch(/^\d{4} \/ 0100 +1 +\d+ +\d+$/);
    const user = await cloud.account('zoneuser');
    expect(items((await user.ec2.ok('DescribeAvailabilityZones', { 'ZoneName.1': 'verbose' })).availabilityZoneInfo).map((z) => z.zoneName)).toEqual(['zone-a']);
  });

  it('DescribeAccountAttributes answers EC2-Classic without a default VPC', async () => {
    const attrs = items((await cloud.ec2.ok('DescribeAccountAttributes')).accountAttributeSet);
    const value = (name: string) => items(attrs.find((a) => a.attributeName === name)?.attributeValueSet).map((v) => v.attributeValue);
    expect(value('supported-platforms')).toEqual(['EC2']);
    expect(value('default-vpc')).toEqual(['none']);
  });
});

describe('instance types', () => {
  it('speaks Eucalyptus\'s shape with capacity to old API versions and AWS\'s to 2016-11-15', async () => {
    const euca = await cloud.ec2.withVersion('2015-10-01').ok('DescribeInstanceTypes', { Availability: 'true', 'InstanceType.1': 'm1.small' });
    const [small] = items(euca.instanceTypeDetails);
    expect(small).toMatchObject({ name: 'm1.small', cpu: '1', disk: '5' });
    expect(items(small!.availability)[0]).toMatchObject({ zoneName: 'zone-a', max: '100' });
    const aws = await cloud.ec2.ok('DescribeInstanceTypes', { 'InstanceType.1': 'c1.medium' });
    expect(items(aws.instanceTypeSet)[0]).toMatchObject({ instanceType: 'c1.medium', vCpuInfo: { defaultVCpus: '2' }, memoryInfo: { sizeInMiB: '512' } });
    expect((await cloud.ec2.call('DescribeInstanceTypes', { 'InstanceType.1': 'x9.nope' })).code).toBe('InvalidInstanceType');
  });

  it('only the admin may resize a type; new launches use the new size and Reset restores the default', async () => {
    const user = await cloud.account('typeuser');
    expect((await user.ec2.call('ModifyInstanceTypeAttribute', { Name: 'm1.small', Memory: 256 })).code).toBe('UnauthorizedOperation');
    const m = await cloud.ec2.withVersion('2015-10-01').ok('ModifyInstanceTypeAttribute', { Name: 'm1.small', Memory: 256 });
    expect(m.instanceType).toMatchObject({ name: 'm1.small', memory: '256', cpu: '1' });
    await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 });
    const last = cloud.cc.calls.filter((c) => c.op === 'RunInstances').at(-1)!.body as { instances: { vmType: { memoryMiB: number } }[] };
    expect(last.instances[0]!.vmType.memoryMiB).toBe(256);
    const reset = await cloud.ec2.ok('ModifyInstanceTypeAttribute', { Name: 'm1.small', Reset: 'true' });
    expect(reset.instanceType).toMatchObject({ memory: '512' });
  });
});

describe('console output, reboot, stop and start', () => {
  it('returns the cc\'s base64 console of a running instance; stop/start of instance-store is UnsupportedOperation', async () => {
    const id = String(items((await cloud.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 })).instancesSet)[0]!.instanceId);
    cloud.cc.instances.get(id)!.state = 'running';
    await cloud.poll();
    const out = await cloud.ec2.ok('GetConsoleOutput', { InstanceId: id });
    expect(Buffer.from(String(out.output), 'base64').toString()).toBe(`console of ${id}\n`);
    expect(String(out.timestamp)).toMatch(/^\d{4}-/);
    expect((await cloud.ec2.ok('RebootInstances', { 'InstanceId.1': id })).return).toBe('true');
    expect(cloud.cc.calls.some((c) => c.op === 'RebootInstances')).toBe(true);
    expect((await cloud.ec2.call('StopInstances', { 'InstanceId.1': id })).code).toBe('UnsupportedOperation');
    expect((await cloud.ec2.call('StartInstances', { 'InstanceId.1': id })).code).toBe('UnsupportedOperation');
    expect((await cloud.ec2.call('TerminateInstances', {})).code).toBe('MissingParameter');
  });
});
