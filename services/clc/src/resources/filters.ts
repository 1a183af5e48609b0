// EC2 Describe* filtering: within one filter the values are OR'ed, filters are AND'ed; values match
// case-sensitively with `*` (any run) and `?` (one character) wildcards, `\` escaping the next character.
import { Ec2Error, type Filter } from '@mallee/aws-protocol';
import type { Tag } from './tags.js';

export type FieldAccessor<T> = (item: T) => unknown;

const ANY_ONE = Symbol('?');
const ANY_RUN = Symbol('*');
type GlobToken = string | typeof ANY_ONE | typeof ANY_RUN;

/**
 * Compiles an EC2 filter value into a matcher. Matching is greedy with backtracking to the last `*`
 * only, so it is O(pattern × value) whatever the client sends (a RegExp of many `.*` is not).
 */
export function filterMatcher(value: string): (s: string) => boolean {
  const tokens: GlobToken[] = [];
  const chars = Array.from(value);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\\' && i + 1 < chars.length) tokens.push(chars[++i]!);
    else if (c === '*') tokens.push(ANY_RUN);
    else if (c === '?') tokens.push(ANY_ONE);
    else tokens.push(c);
  }
  return (s) => globMatch(tokens, Array.from(s));
}

function globMatch(p: GlobToken[], s: string[]): boolean {
  let i = 0;
  let j = 0;
  let star = -1;
  let mark = 0;
  while (j < s.length) {
    const t = p[i];
    if (t !== undefined && t !== ANY_RUN && (t === ANY_ONE || t === s[j])) {
      i++;
      j++;
    } else if (t === ANY_RUN) {
      star = i++;
      mark = j;
    } else if (star >= 0) {
      i = star + 1;
      j = ++mark;
    } else {
      return false;
    }
  }
  while (p[i] === ANY_RUN) i++;
  return i === p.length;
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
  const patterns = (filter.Value ?? []).map(filterMatcher);
  const matchesAny = (values: string[]) => values.some((v) => patterns.some((p) => p(v)));
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
