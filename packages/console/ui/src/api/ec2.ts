// EC2 Query calls from the browser, signed with the user's keys (SigV4) against the clc's EC2
// endpoint on this origin: the same API and authorization as any CLI. Replies are turned into plain
// objects (an element of <item>s becomes an array).
import { signer, type Session } from './session.js';

export const EC2_PATH = '/services/compute';
export const API_VERSION = '2016-11-15';

export class ApiError extends Error {
  constructor(public readonly code: string, message: string, public readonly status: number) {
    super(message);
  }
  /** The cloud does not implement the action (yet): show "not available", not a failure. */
  get notAvailable(): boolean {
    return this.code === 'InvalidAction' || this.code === 'NotImplemented';
  }
}

export type Params = Record<string, string | number | boolean | undefined>;
export type Obj = Record<string, unknown>;

function toValue(el: Element): unknown {
  const kids = Array.from(el.children);
  if (!kids.length) return el.textContent ?? '';
  if (kids.every((k) => k.localName === 'item')) return kids.map(toValue);
  const o: Obj = {};
  for (const k of kids) o[k.localName] = toValue(k);
  return o;
}

/** A set in a reply: an array of items, or [] when the element is empty or absent. */
export function list<T = Obj>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

export const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export function parseXml(text: string): Document {
  return new DOMParser().parseFromString(text, 'application/xml');
}

export async function ec2(session: Session, action: string, params: Params = {}): Promise<Obj> {
  const body = new URLSearchParams({ Action: action, Version: API_VERSION });
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') body.set(k, String(v));
  const res = await signer(session, 'ec2').fetch(new URL(EC2_PATH, location.origin).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body: body.toString(),
  });
  const doc = parseXml(await res.text());
  const root = doc.documentElement;
  if (!res.ok || root.localName === 'Response' || root.localName === 'parsererror') {
    const code = doc.querySelector('Error > Code')?.textContent ?? `HTTP${res.status}`;
    const message = doc.querySelector('Error > Message')?.textContent ?? res.statusText;
    throw new ApiError(code, message, res.status);
  }
  return toValue(root) as Obj;
}

/** The console's own signed JSON reads (/console/api/*), verified like an EC2 request. */
export async function consoleApi<T>(session: Session, path: string): Promise<T> {
  const res = await signer(session, 'ec2').fetch(new URL(`/console/api/${path}`, location.origin).href);
  const body = (await res.json()) as T & { code?: string; message?: string };
  if (!res.ok) throw new ApiError(body.code ?? `HTTP${res.status}`, body.message ?? res.statusText, res.status);
  return body;
}

/** Flattens EC2's filter/list conventions: listParams('InstanceId', ids) → InstanceId.1=…, InstanceId.2=… */
export function listParams(name: string, values: string[]): Params {
  const p: Params = {};
  values.forEach((v, i) => (p[`${name}.${i + 1}`] = v));
  return p;
}
