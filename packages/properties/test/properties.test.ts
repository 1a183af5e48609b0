// The property catalogue's types and the cached reader's rules (TTL, shared fetches, falling back
// while the clc does not answer). The reader's fetch here is a function the test controls; the clc
// suite (services/clc/test/properties.test.ts) runs it over the wire against a real clc.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '@mallee/config';
import type { properties as ops } from '@mallee/wire';
import {
  PROPERTIES, PropertyReader, PropertyValueError, booleanProperty, cloudProperties, defaultFor, enumProperty, integerProperty,
  clusterProperties, resolvePropertyName, storageProperties, walrusProperties,
} from '../src/index.js';

const value = (name: string, v: string): ops.PropertyValue => ({ name, value: v, type: 'integer', defaultValue: '0', description: '', source: 'set' });

describe('property definitions', () => {
  it('parse values by type and refuse the rest with the property name in the message', () => {
    const n = integerProperty({ name: 'test.count', description: 'd', default: 3, min: 0, max: 10 });
    expect(n.parse(' 7 ')).toBe(7);
    for (const bad of ['11', '-1', '2.5', 'x', '']) expect(() => n.parse(bad)).toThrow(PropertyValueError);
    expect(() => n.parse('11')).toThrow(/test\.count.*at most 10/);
    const b = booleanProperty({ name: 'test.flag', description: 'd', default: false });
    expect([b.parse('TRUE'), b.parse('false')]).toEqual([true, false]);
    expect(() => b.parse('yes')).toThrow(/true or false/);
    const e = enumProperty({ name: 'test.mode', description: 'd', default: 'a', choices: ['a', 'b'] });
    expect(e.parse('b')).toBe('b');
    expect(() => e.parse('c')).toThrow(/one of a, b/);
    expect(() => integerProperty({ name: 'Bad Name', description: 'd', default: 1 })).toThrow(/dotted/);
    expect(() => integerProperty({ name: 'test.bad', description: 'd', default: -1, min: 0 })).toThrow(PropertyValueError);
  });

  it('every catalogued property has a unique dotted name, a description and a default its own type accepts', () => {
    expect(new Set(PROPERTIES.map((p) => p.name)).size).toBe(PROPERTIES.length);
    for (const p of PROPERTIES) {
      expect(p.description.length).toBeGreaterThan(10);
      expect(p.format(p.parse(p.format(p.default)))).toBe(p.format(p.default));
    }
  });

  it('a per-zone property is also named <zone>.<name>; others are not', () => {
    expect(resolvePropertyName('storage.maxvolumesizeingb')).toEqual({ def: storageProperties.maxVolumeSizeGb });
    expect(resolvePropertyName('zone-1.storage.maxvolumesizeingb')).toEqual({ def: storageProperties.maxVolumeSizeGb, zone: 'zone-1' });
    expect(resolvePropertyName('zone-1.cloud.vmstate.terminated_time')).toBeUndefined();
    expect(resolvePropertyName('nothing')).toBeUndefined();
  });

  it('the mallee.conf setting a property replaces is its default on that host', () => {
    const conf = loadConfig({ env: {}, overrides: { TERMINATED_RETENTION: 90, WALRUS_MAX_BUCKETS_PER_ACCOUNT: 100 } });
    expect(defaultFor(cloudProperties.terminatedTime, conf)).toEqual({ value: 1.5, source: 'mallee.conf' });
    expect(defaultFor(walrusProperties.maxBucketsPerAccount, conf)).toEqual({ value: 100, source: 'default' }); // same as built in
    expect(defaultFor(cloudProperties.terminatedTime)).toEqual({ value: 60, source: 'default' });
  });
});

describe('PropertyReader', () => {
  it('fetches once per TTL, shares concurrent fetches and uses the values it got', async () => {
    let fetches = 0;
    let current = '5';
    const reader = new PropertyReader({ ttlMs: 60_000, fetch: async () => (fetches++, [value('walrus.storagemaxbucketsperaccount', current)]) });
    const got = await Promise.all([1, 2, 3].map(() => reader.get(walrusProperties.maxBucketsPerAccount)));
    expect(got).toEqual([5, 5, 5]);
    expect(fetches).toBe(1);
    current = '6';
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(5);
    reader.invalidate();
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(6);
    expect(fetches).toBe(2);
    expect(reader.status().fresh).toBe(true);
  });

  it('when the clc does not answer it keeps the last values, or its own mallee.conf, and backs off before asking again', async () => {
    let fail = true;
    let fetches = 0;
    const config = loadConfig({ env: {}, overrides: { WALRUS_MAX_BUCKETS_PER_ACCOUNT: 9 } });
    const errors: string[] = [];
    const reader = new PropertyReader({
      ttlMs: 0, retryMs: 60_000, config, onError: (e) => errors.push(e.message),
      fetch: async () => {
        fetches++;
        if (fail) throw new Error('clc unreachable');
        return [value('walrus.storagemaxbucketsperaccount', '4')];
      },
    });
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(9);
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(9);
    expect(fetches).toBe(1); // backing off
    expect(reader.status()).toMatchObject({ fresh: false, lastError: 'clc unreachable' });
    fail = false;
    reader.invalidate();
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(4);
    fail = true;
    reader.invalidate();
    expect(await reader.get(walrusProperties.maxBucketsPerAccount)).toBe(4); // last known
    expect(errors).toEqual(['clc unreachable', 'clc unreachable']);
  });

  it('ownConfUnlessSet: a value the admin did not set leaves this host\'s mallee.conf in charge (a cc on its own host)', async () => {
    const config = loadConfig({ env: {}, overrides: { SCHEDPOLICY: 'ROUNDROBIN' } });
    let answer: ops.PropertyValue = { ...value('cluster.schedulingpolicy', 'GREEDY'), type: 'enum', source: 'mallee.conf' };
    const reader = new PropertyReader({ ttlMs: 0, config, ownConfUnlessSet: true, fetch: async () => [answer] });
    expect(await reader.get(clusterProperties.schedulingPolicy)).toBe('ROUNDROBIN'); // the clc host's conf says GREEDY
    answer = { ...answer, value: 'POWERSAVE', source: 'set' };
    expect(await reader.get(clusterProperties.schedulingPolicy)).toBe('POWERSAVE');
    const plain = new PropertyReader({ ttlMs: 0, config, fetch: async () => [{ ...answer, value: 'GREEDY', source: 'mallee.conf' }] });
    expect(await plain.get(clusterProperties.schedulingPolicy)).toBe('GREEDY');
  });
});
