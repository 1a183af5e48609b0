// Accounts are isolated: account B cannot see or touch account A's instances, groups or key pairs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ec2Client, instancesOf, items } from './helpers/ec2-client.js';
import { eventually, parseEucarc, startCloud, type Cloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';

let cloud: Cloud;
let a: Ec2Client;
let b: Ec2Client;
let instanceId: string;
let groupId: string;
beforeAll(async () => {
  cloud = await startCloud();
  a = cloud.client;
  await cloud.mallee(['account', 'create', 'tenant-b']);
  const out = `${cloud.home}/b-creds`;
  await cloud.mallee(['credentials', '--account', 'tenant-b', '--out', out]);
  const env = parseEucarc(`${out}/eucarc`);
  expect(env.AWS_ACCESS_KEY_ID).not.toBe(cloud.env.AWS_ACCESS_KEY_ID);
  b = new Ec2Client(env.EC2_URL!, { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! }, env.AWS_DEFAULT_REGION!);

  await a.ok('CreateKeyPair', { KeyName: 'a-key' });
  groupId = String((await a.ok('CreateSecurityGroup', { GroupName: 'a-group', GroupDescription: 'account A' })).groupId);
  const image = await registerTestImage(cloud, 'a-images/img.manifest.xml', 'a-image');
  const run = await a.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, KeyName: 'a-key', 'SecurityGroup.1': 'a-group' });
  instanceId = String(items(run.instancesSet)[0]!.instanceId);
  await eventually('A instance running', async () => (instancesOf(await a.ok('DescribeInstances', { 'InstanceId.1': instanceId }))[0]?.state === 'running' ? true : undefined), 60_000);
});
afterAll(async () => {
  await cloud?.stop();
});

describe('account isolation', () => {
  it("B's DescribeInstances lists none of A's instances, and naming one is InvalidInstanceID.NotFound", async () => {
    expect(instancesOf(await b.ok('DescribeInstances')).map((i) => i.instanceId)).not.toContain(instanceId);
    const r = await b.call('DescribeInstances', { 'InstanceId.1': instanceId });
    expect(r.code).toBe('InvalidInstanceID.NotFound');
  });

  it("B cannot terminate A's instance; it keeps running", async () => {
    const r = await b.call('TerminateInstances', { 'InstanceId.1': instanceId });
    expect(r.status).toBe(400);
    expect(r.code).toBe('InvalidInstanceID.NotFound');
    expect(instancesOf(await a.ok('DescribeInstances', { 'InstanceId.1': instanceId }))[0]?.state).toBe('running');
  });

  it("B cannot tag A's instance; A sees no such tag", async () => {
    const r = await b.call('CreateTags', { 'ResourceId.1': instanceId, 'Tag.1.Key': 'owner', 'Tag.1.Value': 'b' });
    expect(r.status).toBeGreaterThanOrEqual(400);
    const tags = items((await a.ok('DescribeTags', { 'Filter.1.Name': 'resource-id', 'Filter.1.Value.1': instanceId })).tagSet);
    expect(tags.filter((t) => t.key === 'owner')).toEqual([]);
    expect(items((await b.ok('DescribeTags')).tagSet).map((t) => t.resourceId)).not.toContain(instanceId);
  });

  it("B sees none of A's security groups and cannot delete or authorize them", async () => {
    const groups = items((await b.ok('DescribeSecurityGroups')).securityGroupInfo);
    expect(groups.map((g) => g.groupId)).not.toContain(groupId);
    expect((await b.call('DescribeSecurityGroups', { 'GroupId.1': groupId })).code).toMatch(/^InvalidGroup\.NotFound$/);
    expect((await b.call('DeleteSecurityGroup', { GroupId: groupId })).status).toBe(400);
    expect((await b.call('AuthorizeSecurityGroupIngress', { GroupId: groupId, IpProtocol: 'tcp', FromPort: 22, ToPort: 22, CidrIp: '0.0.0.0/0' })).status).toBe(400);
    expect(items((await a.ok('DescribeSecurityGroups', { 'GroupId.1': groupId })).securityGroupInfo)).toHaveLength(1);
  });

  it("B sees none of A's key pairs, and its own key pair of the same name is a different one", async () => {
    expect(items((await b.ok('DescribeKeyPairs')).keySet).map((k) => k.keyName)).not.toContain('a-key');
    expect((await b.call('DescribeKeyPairs', { 'KeyName.1': 'a-key' })).code).toBe('InvalidKeyPair.NotFound');
    await b.ok('CreateKeyPair', { KeyName: 'a-key' });
    await b.ok('DeleteKeyPair', { KeyName: 'a-key' });
    expect(items((await a.ok('DescribeKeyPairs', { 'KeyName.1': 'a-key' })).keySet)).toHaveLength(1);
  });
});
