import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deleteTagsFor, registerTaggableType, tagSetFor, tagSetsFor, ownerColumn } from '../../src/resources/index.js';
import { Ec2Error } from '@mallee/aws-protocol';
import { ACCOUNT_A, ACCOUNT_B, errorCode, openCloud, principalOf, type Cloud } from './harness.js';

let cloud: Cloud;
let sg: string;
const I_A = 'i-0a0a0a0a';
beforeEach(async () => {
  cloud = openCloud();
  // An instance row as the core would write it (the stand-in migration's instances table).
  cloud.addInstance(I_A, ACCOUNT_A);
  sg = (await cloud.call('CreateSecurityGroup', { GroupName: 'g', GroupDescription: 'g' })).groupId as string;
});
afterEach(() => cloud.close());

const B = principalOf(ACCOUNT_B);
type TagItem = { resourceId: string; resourceType: string; key: string; value: string };
const describeTags = async (Filter: { Name: string; Value: string[] }[] = [], principal = principalOf(ACCOUNT_A)) =>
  (await cloud.call('DescribeTags', { Filter }, principal)).tagSet as TagItem[];

describe('CreateTags / DescribeTags / DeleteTags', () => {
  it('tags instances and groups, knows their types by id prefix, and overwrites a key\'s value', async () => {
    await cloud.call('CreateTags', { ResourceId: [I_A, sg], Tag: [{ Key: 'Name', Value: 'web' }, { Key: 'empty' }] });
    await cloud.call('CreateTags', { ResourceId: [I_A], Tag: [{ Key: 'Name', Value: 'web-1' }] });
    expect(await describeTags()).toEqual([
      { resourceId: I_A, resourceType: 'instance', key: 'Name', value: 'web-1' },
      { resourceId: I_A, resourceType: 'instance', key: 'empty', value: '' },
      { resourceId: sg, resourceType: 'security-group', key: 'Name', value: 'web' },
      { resourceId: sg, resourceType: 'security-group', key: 'empty', value: '' },
    ]);
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A)).toEqual([{ key: 'Name', value: 'web-1' }, { key: 'empty', value: '' }]);
    const batch = tagSetsFor(cloud.db, ACCOUNT_A, [I_A, sg, 'i-99999999']);
    expect([...batch.keys()]).toEqual([I_A, sg, 'i-99999999']);
    expect(batch.get(sg)!.map((t) => t.value)).toEqual(['web', '']);
    expect(batch.get('i-99999999')).toEqual([]);
  });

  it('filters by key, value, resource-id and resource-type with wildcards', async () => {
    await cloud.call('CreateTags', { ResourceId: [I_A], Tag: [{ Key: 'env', Value: 'prod' }, { Key: 'owner', Value: 'ops' }] });
    await cloud.call('CreateTags', { ResourceId: [sg], Tag: [{ Key: 'env', Value: 'production' }] });
    const ids = async (Name: string, ...Value: string[]) => (await describeTags([{ Name, Value }])).map((t) => `${t.resourceId}/${t.key}`);
    expect(await ids('key', 'env')).toEqual([`${I_A}/env`, `${sg}/env`]);
    expect(await ids('value', 'prod')).toEqual([`${I_A}/env`]);
    expect(await ids('value', 'prod*')).toEqual([`${I_A}/env`, `${sg}/env`]);
    expect(await ids('resource-type', 'security-group')).toEqual([`${sg}/env`]);
    expect(await ids('resource-id', I_A)).toEqual([`${I_A}/env`, `${I_A}/owner`]);
    expect(await errorCode(ids('tag-owner', 'x'))).toBe('InvalidParameterValue');
  });

  it('deletes a key, a key only at a given value, or every tag of a resource', async () => {
    await cloud.call('CreateTags', { ResourceId: [I_A], Tag: [{ Key: 'a', Value: '1' }, { Key: 'b', Value: '2' }, { Key: 'c', Value: '3' }] });
    await cloud.call('DeleteTags', { ResourceId: [I_A], Tag: [{ Key: 'a' }, { Key: 'b', Value: 'not-2' }] });
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A).map((t) => t.key)).toEqual(['b', 'c']);
    await cloud.call('DeleteTags', { ResourceId: [I_A], Tag: [{ Key: 'b', Value: '2' }] });
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A).map((t) => t.key)).toEqual(['c']);
    await cloud.call('DeleteTags', { ResourceId: [I_A] });
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A)).toEqual([]);
    await cloud.call('CreateTags', { ResourceId: [sg], Tag: [{ Key: 'x', Value: 'y' }] });
    deleteTagsFor(cloud.db, sg);
    expect(tagSetFor(cloud.db, ACCOUNT_A, sg)).toEqual([]);
  });

  it('enforces EC2\'s limits: 50 tags a resource, keys to 127, values to 255, no aws: prefix', async () => {
    const tags = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ Key: `k${i + from}`, Value: 'v' }));
    await cloud.call('CreateTags', { ResourceId: [I_A], Tag: tags(49) });
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [I_A], Tag: tags(2, 49) }))).toBe('TagLimitExceeded');
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A)).toHaveLength(49);
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [I_A], Tag: [...tags(1, 49), { Key: 'k0', Value: 'new' }] }))).toBe('no error');
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A)).toHaveLength(50);
    const one = (Key: string, Value = 'v') => errorCode(cloud.call('CreateTags', { ResourceId: [sg], Tag: [{ Key, Value }] }));
    expect(await one('k'.repeat(128))).toBe('InvalidParameterValue');
    expect(await one('k'.repeat(127))).toBe('no error');
    expect(await one('v', 'v'.repeat(256))).toBe('InvalidParameterValue');
    expect(await one('aws:cloudformation')).toBe('InvalidParameterValue');
    expect(await one('')).toBe('InvalidParameterValue');
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [sg] }))).toBe('MissingParameter');
    expect(await errorCode(cloud.call('CreateTags', { Tag: [{ Key: 'a' }] }))).toBe('MissingParameter');
  });

  it('lets only the owner tag: others get the resource\'s NotFound, unknown id shapes InvalidID', async () => {
    const tag = [{ Key: 'k', Value: 'v' }];
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [I_A], Tag: tag }, B))).toBe('InvalidInstanceID.NotFound');
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [sg], Tag: tag }, B))).toBe('InvalidGroup.NotFound');
    expect(await errorCode(cloud.call('DeleteTags', { ResourceId: [I_A] }, B))).toBe('InvalidInstanceID.NotFound');
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: ['i-12345678'], Tag: tag }))).toBe('InvalidInstanceID.NotFound');
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: ['vol-12345678'], Tag: tag }))).toBe('InvalidID');
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: ['i-xyz'], Tag: tag }))).toBe('InvalidID');
    // All or nothing: a failing resource leaves the others untagged.
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [I_A, 'i-12345678'], Tag: tag }))).toBe('InvalidInstanceID.NotFound');
    expect(tagSetFor(cloud.db, ACCOUNT_A, I_A)).toEqual([]);
    await cloud.call('CreateTags', { ResourceId: [I_A], Tag: tag });
    expect(await describeTags([], B)).toEqual([]);
    expect(tagSetFor(cloud.db, ACCOUNT_B, I_A)).toEqual([]);
  });

  it('makes a new resource type taggable with one registration', async () => {
    // A made-up type, so the test never collides with the real types registered later.
    cloud.db.exec('CREATE TABLE gizmos (gizmo_id TEXT PRIMARY KEY, account_id TEXT NOT NULL)');
    cloud.db.prepare('INSERT INTO gizmos VALUES (?, ?)').run('gizmo-0b0b0b0b', ACCOUNT_A);
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: ['gizmo-0b0b0b0b'], Tag: [{ Key: 'x' }] }))).toBe('InvalidID');
    registerTaggableType({
      type: 'gizmo', prefixes: ['gizmo'], ownerOf: ownerColumn('gizmos', 'gizmo_id', 'account_id'),
      notFound: (id) => new Ec2Error('InvalidGizmo.NotFound', `The gizmo '${id}' does not exist.`),
    });
    await cloud.call('CreateTags', { ResourceId: ['gizmo-0b0b0b0b'], Tag: [{ Key: 'disk', Value: 'data' }] });
    expect((await describeTags([{ Name: 'resource-type', Value: ['gizmo'] }])).map((t) => t.key)).toEqual(['disk']);
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: ['gizmo-0b0b0b0b'], Tag: [{ Key: 'x' }] }, B))).toBe('InvalidGizmo.NotFound');
    expect(() => registerTaggableType({ type: 'other', prefixes: ['gizmo'], ownerOf: () => undefined, notFound: () => new Ec2Error('X', 'x') })).toThrow();
  });
});

describe('TagSpecification on create', () => {
  it('tags a new group or image in the same request, and refuses a specification for another resource type', async () => {
    const g = await cloud.call('CreateSecurityGroup', {
      GroupName: 'tagged', GroupDescription: 't', TagSpecification: [{ ResourceType: 'security-group', Tag: [{ Key: 'team', Value: 'web' }] }],
    });
    expect(g.tagSet).toEqual([{ key: 'team', value: 'web' }]);
    expect(tagSetFor(cloud.db, ACCOUNT_A, g.groupId as string)).toEqual([{ key: 'team', value: 'web' }]);
    const img = await cloud.call('RegisterImage', {
      ImageLocation: 'b/tagged.manifest.xml', TagSpecification: [{ ResourceType: 'image', Tag: [{ Key: 'os', Value: 'linux' }] }],
    });
    expect(tagSetFor(cloud.db, ACCOUNT_A, img.imageId as string)).toEqual([{ key: 'os', value: 'linux' }]);
    expect(await errorCode(cloud.call('CreateSecurityGroup', {
      GroupName: 'wrong', GroupDescription: 't', TagSpecification: [{ ResourceType: 'instance', Tag: [{ Key: 'k', Value: 'v' }] }],
    }))).toBe('InvalidParameterValue');
    // The failed request created nothing.
    expect(await errorCode(cloud.call('DescribeSecurityGroups', { GroupName: ['wrong'] }))).toBe('InvalidGroup.NotFound');
  });
});
