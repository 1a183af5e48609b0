// EC2 Query parameters: application/x-www-form-urlencoded pairs (GET query and POST body) and
// their nesting (`Filter.1.Value.2`, `BlockDeviceMapping.1.Ebs.VolumeSize`) into objects and lists.
import { Ec2Error } from './errors.js';

export type QueryPair = readonly [key: string, value: string];

export interface QueryLimits {
  /** Largest accepted query string or body, in bytes. */
  maxBytes: number;
  /** Most key=value pairs accepted (query and body together). */
  maxParams: number;
  /** Deepest dotted key accepted (`A.1.B.2` has depth 4). */
  maxDepth: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = { maxBytes: 1024 * 1024, maxParams: 10_000, maxDepth: 8 };

const malformed = (message: string) => new Ec2Error('MalformedQueryString', message);

const utf8 = new TextDecoder('utf-8', { fatal: true });

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Decodes one form-encoded component: `+` is a space, `%XX` a byte, and the bytes must be UTF-8.
 * A stray `%` or invalid UTF-8 is an error rather than a guess, because the signature was computed
 * over what the client meant and a guess would only turn into a confusing signature mismatch.
 */
export function decodeFormComponent(s: string): string {
  if (!/[%+]/.test(s)) return s;
  const bytes = Buffer.allocUnsafe(Buffer.byteLength(s, 'utf8'));
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2b) {
      bytes[n++] = 0x20;
    } else if (c === 0x25) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) throw malformed(`Invalid percent-encoding in query string near "${s.slice(i, i + 3)}"`);
      bytes[n++] = hi * 16 + lo;
      i += 2;
    } else if (c < 0x80) {
      bytes[n++] = c;
    } else {
      // Non-ASCII characters that arrived unencoded: keep them as their UTF-8 bytes.
      const cp = s.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      n += bytes.write(ch, n, 'utf8');
      if (cp > 0xffff) i++;
    }
  }
  try {
    return utf8.decode(bytes.subarray(0, n));
  } catch {
    throw malformed('Query string is not valid UTF-8 after percent-decoding');
  }
}

/** Splits a form-encoded string into decoded pairs, keeping repeats and order. */
export function parseFormEncoded(input: string | Buffer | undefined, limits: QueryLimits = DEFAULT_QUERY_LIMITS): QueryPair[] {
  if (input === undefined || input.length === 0) return [];
  const bytes = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (bytes > limits.maxBytes) throw new Ec2Error('RequestEntityTooLarge', `Request parameters exceed ${limits.maxBytes} bytes`, 413);
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = utf8.decode(input);
    } catch {
      throw malformed('Request body is not valid UTF-8');
    }
  }
  const pairs: QueryPair[] = [];
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('&', start);
    if (end < 0) end = text.length;
    if (end > start) {
      if (pairs.length >= limits.maxParams) throw malformed(`Too many parameters (more than ${limits.maxParams})`);
      const part = text.slice(start, end);
      const eq = part.indexOf('=');
      const key = decodeFormComponent(eq < 0 ? part : part.slice(0, eq));
      const value = eq < 0 ? '' : decodeFormComponent(part.slice(eq + 1));
      if (key !== '') pairs.push([key, value]);
    }
    start = end + 1;
  }
  return pairs;
}

/** A nested parameter value: a string leaf, a structure, or a list (from `.N` keys). */
export type ParamValue = string | ParamObject | ParamValue[];
export interface ParamObject { [key: string]: ParamValue }

/** The `.N` index each list element came from, so errors can name `Filter.3.Name` even when 1 and 2 are absent. */
const listIndices = new WeakMap<ParamValue[], string[]>();

/** The original `.N` index of a list element (1-based as sent), or position+1 for lists built elsewhere. */
export function originalIndex(list: unknown[], position: number): string {
  return listIndices.get(list as ParamValue[])?.[position] ?? String(position + 1);
}

type Node = { leaf?: string; leafKey?: string; children?: Map<string, Node> };

const POSITIVE_INT = /^[1-9]\d*$/;

function compareIndex(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

function build(node: Node): ParamValue {
  if (node.children === undefined) return node.leaf ?? '';
  const keys = [...node.children.keys()];
  if (keys.length > 0 && keys.every((k) => POSITIVE_INT.test(k))) {
    keys.sort(compareIndex);
    const list = keys.map((k) => build(node.children!.get(k)!));
    listIndices.set(list, keys);
    return list;
  }
  // Object.fromEntries defines own properties, so a key like `__proto__` stays plain data.
  return Object.fromEntries(keys.map((k) => [k, build(node.children!.get(k)!)]));
}

/**
 * Nests dotted keys into structures; an object whose keys are all positive integers becomes a list
 * ordered by index. A key used both as a value and as a structure (`A=1&A.1=2`) is an error, as is
 * the same key given twice with different values.
 */
export function nestParams(pairs: readonly QueryPair[], limits: QueryLimits = DEFAULT_QUERY_LIMITS): ParamObject {
  if (pairs.length > limits.maxParams) throw malformed(`Too many parameters (more than ${limits.maxParams})`);
  const root: Node = { children: new Map() };
  for (const [key, value] of pairs) {
    const parts = key.split('.');
    if (parts.length > limits.maxDepth) {
      throw new Ec2Error('InvalidParameterValue', `Parameter ${key} is nested deeper than ${limits.maxDepth} levels`);
    }
    if (parts.some((p) => p === '')) throw malformed(`Malformed parameter name "${key}"`);
    let node = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (node.leaf !== undefined) {
        throw new Ec2Error('InvalidParameterValue', `Parameter ${parts.slice(0, i).join('.')} is given both as a value and as a structure (${key})`);
      }
      node.children ??= new Map();
      let child = node.children.get(part);
      if (child === undefined) {
        child = {};
        node.children.set(part, child);
      }
      node = child;
    }
    if (node.children !== undefined) {
      throw new Ec2Error('InvalidParameterValue', `Parameter ${key} is given both as a value and as a structure`);
    }
    if (node.leaf !== undefined && node.leaf !== value) {
      throw new Ec2Error('InvalidParameterValue', `Parameter ${key} is given more than once with different values`);
    }
    node.leaf = value;
  }
  return build(root) as ParamObject;
}

/** Splits a raw request URL (`/path?query`) into its raw path and raw query. */
export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}
