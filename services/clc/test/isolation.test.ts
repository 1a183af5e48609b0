// Accounts: credentials as the admin ops issue them, and isolation of one account's instances from
// another's; the admin account widens DescribeInstances only with Eucalyptus's `verbose`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin } from '@mallee/wire';
import { instancesOf, items, startFakeCloud, type Ec2, type TestCloud } from './harness.js';

let cloud: TestCloud;
let a: { ec2: Ec2; accountId: string; accountName: string };
let b: { ec2: Ec2; accountId: string; accountName: string };
let aInstance: string;

beforeAll(async () => {
  cloud = await startFakeCloud();
  a = await cloud.account('alice');
  b = await cloud.account('bob');
  const image = await cloud.registerImage('img', a);
  aInstance = String(items((await a.ec2.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 })).instancesSet)[0]!.instanceId);
});
afterAll(async () => {
  await cloud?.stop();
});

describe('accounts', () => {
  it('issues 12-digit account ids, AKI access key ids and 40-character secrets', async () => {
    const creds = await cloud.admin(admin.CreateAccount, { name: 'carol' });
    expect(creds.accountId).toMatch(/^\d{12}$/);
    expect(creds.accessKeyId).toMatch(/^AKI[A-Z0-9]{17}$/);
    expect(creds.secretAccessKey).toHaveLength(40);
    expect(creds.userName).toBe('admin');
    const again = await cloud.admin(admin.GetCredentials, { accountName: 'carol' });
    expect(again.accessKeyId).toBe(creds.accessKeyId);
    const extra = await cloud.admin(admin.CreateAccessKey, { accountName: 'carol' });
    expect(extra.accessKeyId).not.toBe(creds.accessKeyId);
    const names = (await cloud.admin(admin.DescribeAccounts, {})).accounts.map((x) => x.accountName);
    expect(names).toEqual(expect.arrayContaining(['eucalyptus', 'alice', 'bob', 'carol']));
  });

  it('refuses a second account of the same name', async () => {
    await expect(cloud.admin(admin.CreateAccount, { name: 'alice' })).rejects.toMatchObject({ code: 'EntityAlreadyExists' });
  });

  it('a new account has its default security group', async () => {
    const groups = items((await b.ec2.ok('DescribeSecurityGroups')).securityGroupInfo).map((g) => g.groupName);
    expect(groups).toContain('default');
  });
});

describe('isolation', () => {
  it('account B cannot see, terminate or reboot account A\'s instance', async () => {
    expect(instancesOf(await b.ec2.ok('DescribeInstances'))).toEqual([]);
    expect((await b.ec2.call('DescribeInstances', { 'InstanceId.1': aInstance })).code).toBe('InvalidInstanceID.NotFound');
    expect((await b.ec2.call('TerminateInstances', { 'InstanceId.1': aInstance })).code).toBe('InvalidInstanceID.NotFound');
    expect((await b.ec2.call('RebootInstances', { 'InstanceId.1': aInstance })).code).toBe('InvalidInstanceID.NotFound');
    expect((await b.ec2.call('GetConsoleOutput', { InstanceId: aInstance })).code).toBe('InvalidInstanceID.NotFound');
    expect(instancesOf(await a.ec2.ok('DescribeInstances')).map((i) => i.state)).toEqual(['pending']);
  });

  it('account B cannot launch account A\'s private image', async () => {
    const image = await cloud.registerImage('private', a);
    expect((await b.ec2.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 })).code).toBe('InvalidAMIID.NotFound');
  });

  it('the admin account sees only its own instances unless it asks verbose, and B\'s verbose is ignored', async () => {
    expect(instancesOf(await cloud.ec2.ok('DescribeInstances'))).toEqual([]);
    const all = instancesOf(await cloud.ec2.ok('DescribeInstances', { 'InstanceId.1': 'verbose' }));
    expect(all.map((i) => i.id)).toContain(aInstance);
    expect(instancesOf(await b.ec2.ok('DescribeInstances', { 'InstanceId.1': 'verbose' }))).toEqual([]);
  });
});
