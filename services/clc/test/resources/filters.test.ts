import { describe, expect, it } from 'vitest';
import { applyFilters, filterMatcher, type Tag } from '../../src/resources/index.js';

interface Thing { id: string; name: string; ports: number[]; public: boolean; size?: number; tags: Tag[] }
const things: Thing[] = [
  { id: 't-1', name: 'web-server', ports: [80, 443], public: true, size: 8, tags: [{ key: 'Env', value: 'prod' }, { key: 'team', value: 'a*b' }] },
  { id: 't-2', name: 'db.server', ports: [5432], public: false, tags: [{ key: 'Env', value: 'dev' }] },
  { id: 't-3', name: 'Web-Cache', ports: [], public: false, size: 16, tags: [] },
];
const fields = {
  id: (t: Thing) => t.id,
  name: (t: Thing) => t.name,
  port: (t: Thing) => t.ports,
  'is-public': (t: Thing) => t.public,
  size: (t: Thing) => t.size,
};
const ids = (filters: { Name: string; Value: string[] }[]) => applyFilters(things, filters, fields, (t) => t.tags).map((t) => t.id);

describe('applyFilters', () => {
  it('ORs the values of one filter and ANDs separate filters', () => {
    expect(ids([{ Name: 'id', Value: ['t-1', 't-3'] }])).toEqual(['t-1', 't-3']);
    expect(ids([{ Name: 'id', Value: ['t-1', 't-3'] }, { Name: 'is-public', Value: ['false'] }])).toEqual(['t-3']);
    expect(ids([])).toEqual(['t-1', 't-2', 't-3']);
  });

  it('matches * and ? wildcards, case-sensitively', () => {
    expect(ids([{ Name: 'name', Value: ['web*'] }])).toEqual(['t-1']);
    expect(ids([{ Name: 'name', Value: ['*server'] }])).toEqual(['t-1', 't-2']);
    expect(ids([{ Name: 'name', Value: ['??-server'] }])).toEqual([]);
    expect(ids([{ Name: 'name', Value: ['???-server'] }])).toEqual(['t-1']);
    expect(ids([{ Name: 'name', Value: ['*-*'] }])).toEqual(['t-1', 't-3']);
  });

  it('treats regular-expression characters literally and honours backslash escapes', () => {
    expect(ids([{ Name: 'name', Value: ['db.server'] }])).toEqual(['t-2']);
    expect(ids([{ Name: 'name', Value: ['db?server'] }])).toEqual(['t-2']);
    expect(ids([{ Name: 'name', Value: ['dbxserver'] }])).toEqual([]);
    expect(ids([{ Name: 'tag:team', Value: ['a\\*b'] }])).toEqual(['t-1']);
    expect(filterMatcher('a\\*b')('axxb')).toBe(false);
    expect(filterMatcher('a\\?')('a?')).toBe(true);
    expect(filterMatcher('a\\?')('ab')).toBe(false);
    expect(filterMatcher('a\\\\')('a\\')).toBe(true);
    expect(filterMatcher('*a*b?c*')('xxaxxbyc')).toBe(true);
    expect(filterMatcher('*a*b?c*')('xxaxxbc')).toBe(false);
    expect(filterMatcher('?')('é')).toBe(true);
    expect(filterMatcher('')('')).toBe(true);
    expect(filterMatcher('**')('')).toBe(true);
  });

  it('compares numbers, booleans and arrays by their string forms; a missing field never matches', () => {
    expect(ids([{ Name: 'port', Value: ['443'] }])).toEqual(['t-1']);
    expect(ids([{ Name: 'port', Value: ['54*'] }])).toEqual(['t-2']);
    expect(ids([{ Name: 'is-public', Value: ['true'] }])).toEqual(['t-1']);
    expect(ids([{ Name: 'size', Value: ['*'] }])).toEqual(['t-1', 't-3']);
  });

  it('reads tags through tag:KEY, tag-key and tag-value', () => {
    expect(ids([{ Name: 'tag:Env', Value: ['prod'] }])).toEqual(['t-1']);
    expect(ids([{ Name: 'tag:Env', Value: ['*'] }])).toEqual(['t-1', 't-2']);
    expect(ids([{ Name: 'tag:env', Value: ['*'] }])).toEqual([]);
    expect(ids([{ Name: 'tag-key', Value: ['team'] }])).toEqual(['t-1']);
    expect(ids([{ Name: 'tag-value', Value: ['dev', 'prod'] }])).toEqual(['t-1', 't-2']);
  });

  it('matches hostile many-star patterns against long values in linear-ish time', () => {
    const pattern = filterMatcher('*a'.repeat(30) + '*c');
    const started = Date.now();
    expect(pattern('a'.repeat(5000))).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('rejects an unknown filter name with InvalidParameterValue, even with nothing to filter', () => {
    const err = (() => { try { applyFilters([], [{ Name: 'colour', Value: ['red'] }], fields); } catch (e) { return e as { code: string; message: string }; } })();
    expect(err?.code).toBe('InvalidParameterValue');
    expect(err?.message).toBe("The filter 'colour' is invalid");
    // Without a tag source, tag filters are unknown too.
    expect(() => applyFilters(things, [{ Name: 'tag:Env', Value: ['prod'] }], fields)).toThrow("The filter 'tag:Env' is invalid");
  });
});
