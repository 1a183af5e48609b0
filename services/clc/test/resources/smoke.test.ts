import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureDefaultGroup, resolveGroups, findKeyPair } from '../../src/resources/index.js';
import { ACCOUNT_A, errorCode, openCloud, type Cloud } from './harness.js';

let cloud: Cloud;
beforeEach(() => { cloud = openCloud(); });
afterEach(() => cloud.close());

describe('smoke', () => {
  it('creates a key pair and a group', async () => {
    const k = await cloud.call('CreateKeyPair', { KeyName: 'k1' });
    expect(k.keyMaterial).toMatch(/BEGIN RSA PRIVATE KEY/);
    expect(findKeyPair(cloud.db, ACCOUNT_A, 'k1')?.fingerprint).toBe(k.keyFingerprint);
    const g = await cloud.call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'web servers' });
    expect(resolveGroups(cloud.db, ACCOUNT_A, { names: ['web'], ids: [] })[0]!.groupId).toBe(g.groupId);
    expect(ensureDefaultGroup(cloud.db, ACCOUNT_A).name).toBe('default');
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'k1' }))).toBe('InvalidKeyPair.Duplicate');
  });
});
