// EC2 Describe* filtering: within one filter the values are OR'ed, filters are AND'ed; values match
// case-sensitively with `*` (any run) and `?` (one character) wildcards, `\` escaping the next character.
import { Ec2Error, type Filter } from '@mallee/aws-protocol';
import type { Tag } from './tags.js';

export type FieldAccessor<T> = (item: T) => unknown;

/** Compiles an EC2 filter value into an anchored RegExp. */
export function filterPattern(value: string): RegExp {
  let re = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length) re += escapeRegExp(value[++i]!);
    else if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else re += escapeRegExp(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The values an accessor produced, as the strings EC2 compares filter values against. */
function asStrings(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.flatMap(asStrings);
  if (v instanceof Date) return [v.toISOString()];
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return [String(v)];
  return [];
}

export function invalidFilter(name: string): Ec2Error {
  return new Ec2Error('InvalidParameterValue', `The filter '${name}' is invalid`);
}

/**
 * Keeps the items matching every filter. `fields` maps a filter name to the item's value(s) (scalar,
 * array, number, boolean); `tag:KEY`, `tag-key` and `tag-value` read `tagsOf`. An unknown filter name
 * throws InvalidParameterValue ("The filter 'x' is invalid"), even when there are no items.
 */
export function applyFilters<T>(
  items: T[],
  filters: Filter[],
  fields: Record<string, FieldAccessor<T>>,
  tagsOf?: (t: T) => Tag[],
): T[] {
  const predicates = filters.map((f) => compileFilter(f, fields, tagsOf));
  const active = predicates.filter((p): p is (t: T) => boolean => p !== undefined);
  if (!active.length) return items;
  return items.filter((item) => active.every((p) => p(item)));
}

function compileFilter<T>(
  filter: Filter,
  fields: Record<string, FieldAccessor<T>>,
  tagsOf?: (t: T) => Tag[],
): ((t: T) => boolean) | undefined {
  const name = filter.Name;
  const patterns = (filter.Value ?? []).map(filterPattern);
  const matchesAny = (values: string[]) => values.some((v) => patterns.some((p) => p.test(v)));
  let pick: (t: T) => string[];
  if (tagsOf && name.startsWith('tag:') && name.length > 4) {
    const key = name.slice(4);
    pick = (t) => tagsOf(t).filter((tag) => tag.key === key).map((tag) => tag.value);
  } else if (tagsOf && name === 'tag-key') {
    pick = (t) => tagsOf(t).map((tag) => tag.key);
  } else if (tagsOf && name === 'tag-value') {
    pick = (t) => tagsOf(t).map((tag) => tag.value);
  } else if (Object.hasOwn(fields, name)) {
    const accessor = fields[name]!;
    pick = (t) => asStrings(accessor(t));
  } else {
    throw invalidFilter(name);
  }
  // A filter given without values constrains nothing (EC2 ignores it too).
  if (!patterns.length) return undefined;
  return (t) => matchesAny(pick(t));
}
