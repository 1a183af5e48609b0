import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureDefaultGroup, resolveGroups } from '../../src/resources/index.js';
import { ACCOUNT_A, ACCOUNT_B, errorCode, openCloud, principalOf, type Cloud } from './harness.js';

let cloud: Cloud;
beforeEach(() => { cloud = openCloud(); });
afterEach(() => cloud.close());

const B = principalOf(ACCOUNT_B);

interface Permission { ipProtocol: string; fromPort?: number; toPort?: number; groups: { userId: string; groupId: string; groupName: string }[]; ipRanges: { cidrIp: string }[] }
interface GroupItem { ownerId: string; groupId: string; groupName: string; groupDescription: string; ipPermissions: Permission[]; tagSet: unknown[] }

async function describeGroups(params: Record<string, unknown> = {}, principal = principalOf(ACCOUNT_A)): Promise<GroupItem[]> {
  return (await cloud.call('DescribeSecurityGroups', params, principal)).securityGroupInfo as GroupItem[];
}
async function permissionsOf(name: string): Promise<Permission[]> {
  return (await describeGroups({ GroupName: [name] }))[0]!.ipPermissions;
}

describe('CreateSecurityGroup / DeleteSecurityGroup', () => {
  it('creates sg- ids, refuses duplicates per account and lists the account\'s default group too', async () => {
    const r = await cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'web servers' });
    expect(r.groupId).toMatch(/^sg-[0-9a-f]{8}$/);
    expect(await errorCode(cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'again' }))).toBe('InvalidGroup.Duplicate');
    expect(await errorCode(cloud.call('CreateSecurityGroup', { GroupName: 'default', GroupDescription: 'x' }))).toBe('InvalidGroup.Duplicate');
    expect(await errorCode(cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'theirs' }, B))).toBe('no error');
    const mine = await describeGroups();
    expect(mine.map((g) => [g.groupName, g.groupDescription, g.ownerId])).toEqual([
      ['default', 'default group', ACCOUNT_A], ['web', 'web servers', ACCOUNT_A],
    ]);
  });

  it('validates names and descriptions as EC2-Classic does', async () => {
    const create = (GroupName?: string, GroupDescription?: string) => errorCode(cloud.call('CreateSecurityGroup', { GroupName, GroupDescription }));
    expect(await create(undefined, 'd')).toBe('MissingParameter');
    expect(await create('n', undefined)).toBe('MissingParameter');
    expect(await create('n', '')).toBe('MissingParameter');
    expect(await create('x'.repeat(256), 'd')).toBe('InvalidParameterValue');
    expect(await create('n', 'd'.repeat(256))).toBe('InvalidParameterValue');
    expect(await create('grüppe', 'd')).toBe('InvalidParameterValue');
    expect(await create('sg-12345678', 'd')).toBe('InvalidParameterValue');
    expect(await create('with spaces & symbols!', 'Any printable text.')).toBe('no error');
  });

  it('deletes by name or id, never the default group, and not a group another group\'s rule refers to', async () => {
    const a = await cloud.call('CreateSecurityGroup', { GroupName: 'a', GroupDescription: 'a' });
    await cloud.call('CreateSecurityGroup', { GroupName: 'b', GroupDescription: 'b' });
    await cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'b', SourceSecurityGroupName: 'a' });
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupName: 'a' }))).toBe('InvalidGroup.InUse');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupName: 'default' }))).toBe('CannotDelete');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupName: 'b' }))).toBe('no error');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupId: a.groupId }))).toBe('no error');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupName: 'a' }))).toBe('InvalidGroup.NotFound');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupId: 'sg-zz' }))).toBe('InvalidGroupId.Malformed');
    expect((await describeGroups()).map((g) => g.groupName)).toEqual(['default']);
  });

  it('refuses to delete a group a non-terminated instance runs in (InvalidGroup.InUse), and allows it once terminated', async () => {
    const g = (await cloud.call('CreateSecurityGroup', { GroupName: 'busy', GroupDescription: 'b' })).groupId as string;
    cloud.addInstance('i-00000001', ACCOUNT_A, [g], 'running');
    cloud.addInstance('i-00000002', ACCOUNT_A, [g], 'terminated');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupId: g }))).toBe('InvalidGroup.InUse');
    cloud.db.prepare("UPDATE instances SET state = 'stopped' WHERE instance_id = 'i-00000001'").run();
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupName: 'busy' }))).toBe('InvalidGroup.InUse');
    cloud.db.prepare("UPDATE instances SET state = 'terminated' WHERE instance_id = 'i-00000001'").run();
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupName: 'busy' }))).toBe('no error');
  });

  it('keeps accounts apart: B cannot see, resolve, change or delete A\'s groups', async () => {
    const a = await cloud.call('CreateSecurityGroup', { GroupName: 'private', GroupDescription: 'A only' });
    expect((await describeGroups({}, B)).map((g) => g.groupName)).toEqual(['default']);
    expect(await errorCode(describeGroups({ GroupId: [a.groupId] }, B))).toBe('InvalidGroup.NotFound');
    expect(await errorCode(describeGroups({ GroupName: ['private'] }, B))).toBe('InvalidGroup.NotFound');
    expect(await errorCode(cloud.call('DeleteSecurityGroup', { GroupId: a.groupId }, B))).toBe('InvalidGroup.NotFound');
    expect(await errorCode(cloud.call('AuthorizeSecurityGroupIngress', { GroupId: a.groupId, IpProtocol: 'tcp', FromPort: '22', ToPort: '22', CidrIp: '0.0.0.0/0' }, B)))
      .toBe('InvalidGroup.NotFound');
    expect(() => resolveGroups(cloud.db, ACCOUNT_B, { names: [], ids: [a.groupId as string] })).toThrow(/does not exist/);
    expect((await describeGroups({ GroupId: [a.groupId] }))[0]!.groupName).toBe('private');
  });
});

describe('resolveGroups / ensureDefaultGroup', () => {
  it('gives the default group when none is named, creating it once', () => {
    const d = resolveGroups(cloud.db, ACCOUNT_A, { names: [], ids: [] });
    expect(d.map((g) => g.name)).toEqual(['default']);
    expect(ensureDefaultGroup(cloud.db, ACCOUNT_A).groupId).toBe(d[0]!.groupId);
    expect(ensureDefaultGroup(cloud.db, ACCOUNT_B).groupId).not.toBe(d[0]!.groupId);
  });

  it('resolves names and ids together without repeating a group', async () => {
    const web = await cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'w' });
    const gs = resolveGroups(cloud.db, ACCOUNT_A, { names: ['web', 'default'], ids: [web.groupId as string] });
    expect(gs.map((g) => g.name)).toEqual(['web', 'default']);
    expect(() => resolveGroups(cloud.db, ACCOUNT_A, { names: ['nope'], ids: [] })).toThrow("The security group 'nope' does not exist");
  });
});

describe('AuthorizeSecurityGroupIngress / RevokeSecurityGroupIngress', () => {
  beforeEach(async () => {
    await cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'web' });
  });

  it('round-trips rules in the IpPermissions form: add, describe grouped by port range, revoke', async () => {
    await cloud.call('AuthorizeSecurityGroupIngress', {
      GroupName: 'web',
      IpPermissions: [
        { IpProtocol: 'tcp', FromPort: '80', ToPort: '80', IpRanges: [{ CidrIp: '0.0.0.0/0' }, { CidrIp: '10.0.0.0/8' }] },
        { IpProtocol: 'icmp', FromPort: '-1', ToPort: '-1', Groups: [{ GroupName: 'default' }] },
        { IpProtocol: '-1', IpRanges: [{ CidrIp: '192.168.0.0/16' }] },
      ],
    });
    const perms = await permissionsOf('web');
    const defaultId = ensureDefaultGroup(cloud.db, ACCOUNT_A).groupId;
    expect(perms).toEqual([
      { ipProtocol: 'tcp', fromPort: 80, toPort: 80, groups: [], ipRanges: [{ cidrIp: '0.0.0.0/0' }, { cidrIp: '10.0.0.0/8' }] },
      { ipProtocol: 'icmp', fromPort: -1, toPort: -1, groups: [{ userId: ACCOUNT_A, groupId: defaultId, groupName: 'default' }], ipRanges: [] },
      { ipProtocol: '-1', fromPort: undefined, toPort: undefined, groups: [], ipRanges: [{ cidrIp: '192.168.0.0/16' }] },
    ]);
    await cloud.call('RevokeSecurityGroupIngress', {
      GroupName: 'web', IpPermissions: [{ IpProtocol: 'tcp', FromPort: '80', ToPort: '80', IpRanges: [{ CidrIp: '0.0.0.0/0' }] }],
    });
    await cloud.call('RevokeSecurityGroupIngress', { GroupName: 'web', IpPermissions: [{ IpProtocol: 'icmp', FromPort: '-1', ToPort: '-1', Groups: [{ GroupId: defaultId }] }] });
    await cloud.call('RevokeSecurityGroupIngress', { GroupName: 'web', IpPermissions: [{ IpProtocol: 'all', IpRanges: [{ CidrIp: '192.168.0.0/16' }] }] });
    expect(await permissionsOf('web')).toEqual([
      { ipProtocol: 'tcp', fromPort: 80, toPort: 80, groups: [], ipRanges: [{ cidrIp: '10.0.0.0/8' }] },
    ]);
  });

  it('accepts the flat form of boto 2 and euca2ools, including a whole source group', async () => {
    await cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'web', IpProtocol: 'TCP', FromPort: '22', ToPort: '22', CidrIp: '1.2.3.4/32' });
    await cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'web', SourceSecurityGroupName: 'default', SourceSecurityGroupOwnerId: ACCOUNT_A });
    const perms = await permissionsOf('web');
    expect(perms.map((p) => [p.ipProtocol, p.fromPort, p.toPort, p.ipRanges.length, p.groups.map((g) => g.groupName)])).toEqual([
      ['tcp', 22, 22, 1, []], ['tcp', 0, 65535, 0, ['default']], ['udp', 0, 65535, 0, ['default']], ['icmp', -1, -1, 0, ['default']],
    ]);
    await cloud.call('RevokeSecurityGroupIngress', { GroupName: 'web', SourceSecurityGroupName: 'default' });
    await cloud.call('RevokeSecurityGroupIngress', { GroupName: 'web', IpProtocol: 'tcp', FromPort: '22', ToPort: '22', CidrIp: '1.2.3.4/32' });
    expect(await permissionsOf('web')).toEqual([]);
  });

  it('refuses an existing rule with InvalidPermission.Duplicate and a missing one with InvalidPermission.NotFound, all or nothing', async () => {
    const ssh = { GroupName: 'web', IpProtocol: 'tcp', FromPort: '22', ToPort: '22', CidrIp: '0.0.0.0/0' };
    await cloud.call('AuthorizeSecurityGroupIngress', ssh);
    expect(await errorCode(cloud.call('AuthorizeSecurityGroupIngress', ssh))).toBe('InvalidPermission.Duplicate');
    // A request mixing a new rule with an existing one adds nothing.
    expect(await errorCode(cloud.call('AuthorizeSecurityGroupIngress', {
      GroupName: 'web', IpPermissions: [{ IpProtocol: 'tcp', FromPort: '22', ToPort: '22', IpRanges: [{ CidrIp: '10.1.0.0/16' }, { CidrIp: '0.0.0.0/0' }] }],
    }))).toBe('InvalidPermission.Duplicate');
    expect((await permissionsOf('web'))[0]!.ipRanges).toEqual([{ cidrIp: '0.0.0.0/0' }]);
    expect(await errorCode(cloud.call('RevokeSecurityGroupIngress', { ...ssh, CidrIp: '10.0.0.0/8' }))).toBe('InvalidPermission.NotFound');
    expect(await errorCode(cloud.call('RevokeSecurityGroupIngress', ssh))).toBe('no error');
    expect(await errorCode(cloud.call('RevokeSecurityGroupIngress', ssh))).toBe('InvalidPermission.NotFound');
  });

  it('validates protocols, port ranges and CIDR blocks', async () => {
    const auth = (p: Record<string, unknown>) => errorCode(cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'web', CidrIp: '0.0.0.0/0', ...p }));
    expect(await auth({ IpProtocol: 'tcp', FromPort: '22' })).toBe('InvalidParameterValue');
    expect(await auth({ IpProtocol: 'tcp', FromPort: '100', ToPort: '10' })).toBe('InvalidParameterValue');
    expect(await auth({ IpProtocol: 'udp', FromPort: '0', ToPort: '70000' })).toBe('InvalidParameterValue');
    expect(await auth({ IpProtocol: 'icmp', FromPort: '300', ToPort: '0' })).toBe('InvalidParameterValue');
    expect(await auth({ IpProtocol: 'gopher', FromPort: '1', ToPort: '2' })).toBe('InvalidParameterValue');
    expect(await auth({ IpProtocol: 'tcp', FromPort: '1', ToPort: '2', CidrIp: '10.0.0/8' })).toBe('InvalidParameterValue');
    expect(await auth({ IpProtocol: 'tcp', FromPort: '1', ToPort: '2', CidrIp: '10.0.0.0/33' })).toBe('InvalidParameterValue');
    expect(await auth({ FromPort: '1', ToPort: '2' })).toBe('MissingParameter');
    expect(await errorCode(cloud.call('AuthorizeSecurityGroupIngress', { IpProtocol: 'tcp', FromPort: '1', ToPort: '2' }))).toBe('MissingParameter');
    expect(await auth({ IpProtocol: 'tcp', FromPort: '1', ToPort: '2', SourceSecurityGroupName: 'nope', CidrIp: undefined })).toBe('InvalidGroup.NotFound');
    expect(await auth({ IpProtocol: '47' })).toBe('no error');
    expect(await auth({ IpProtocol: '6', FromPort: '0', ToPort: '65535' })).toBe('no error');
    expect((await permissionsOf('web')).map((p) => p.ipProtocol)).toEqual(['47', 'tcp']);
  });

  it('lets a rule name another account\'s group by owner and name', async () => {
    const theirs = await cloud.call('CreateSecurityGroup', { GroupName: 'lb', GroupDescription: 'load balancers' }, B);
    await cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'web', IpProtocol: 'tcp', FromPort: '80', ToPort: '80', SourceSecurityGroupName: 'lb', SourceSecurityGroupOwnerId: ACCOUNT_B });
    expect((await permissionsOf('web'))[0]!.groups).toEqual([{ userId: ACCOUNT_B, groupId: theirs.groupId, groupName: 'lb' }]);
  });
});

describe('DescribeSecurityGroups filters', () => {
  it('filters by name, description, rule fields and tags, with wildcards', async () => {
    const web = await cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'Web tier' });
    await cloud.call('CreateSecurityGroup', { GroupName: 'db', GroupDescription: 'Database tier' });
    await cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'web', IpProtocol: 'tcp', FromPort: '443', ToPort: '443', CidrIp: '0.0.0.0/0' });
    await cloud.call('AuthorizeSecurityGroupIngress', { GroupName: 'db', IpProtocol: 'tcp', FromPort: '5432', ToPort: '5432', SourceSecurityGroupName: 'web' });
    await cloud.call('CreateTags', { ResourceId: [web.groupId], Tag: [{ Key: 'tier', Value: 'front' }] });
    const names = async (Name: string, ...Value: string[]) => (await describeGroups({ Filter: [{ Name, Value }] })).map((g) => g.groupName);
    expect(await names('group-name', 'd*')).toEqual(['db', 'default']);
    expect(await names('description', '* tier')).toEqual(['db', 'web']);
    expect(await names('ip-permission.from-port', '443')).toEqual(['web']);
    expect(await names('ip-permission.to-port', '54??')).toEqual(['db']);
    expect(await names('ip-permission.protocol', 'tcp')).toEqual(['db', 'web']);
    expect(await names('ip-permission.cidr', '0.0.0.0/0')).toEqual(['web']);
    expect(await names('ip-permission.group-name', 'web')).toEqual(['db']);
    expect(await names('group-id', web.groupId as string)).toEqual(['web']);
    expect(await names('owner-id', ACCOUNT_A)).toEqual(['db', 'default', 'web']);
    expect(await names('tag:tier', 'front')).toEqual(['web']);
    expect((await describeGroups({ GroupName: ['web'] }))[0]!.tagSet).toEqual([{ key: 'tier', value: 'front' }]);
    expect(await errorCode(names('colour', 'red'))).toBe('InvalidParameterValue');
  });
});
