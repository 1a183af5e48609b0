// A small signed EC2 Query client for the CLI's own calls to the cloud it runs (SigV4 via aws-protocol).
import { XMLParser } from 'fast-xml-parser';
import { signV4 } from '@mallee/aws-protocol';
import { CliError } from './admin.js';

export interface Ec2Endpoint {
  url: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => name === 'item' });
const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Calls an EC2 action and returns the response element's content; an EC2 error becomes a CliError. */
export async function ec2Call(ep: Ec2Endpoint, action: string, params: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const body = Object.entries({ Action: action, Version: '2016-11-15', ...params })
    .map(([k, v]) => `${enc(k)}=${enc(v)}`)
    .join('&');
  const u = new URL(ep.url);
  const { headers } = signV4({
    method: 'POST',
    path: u.pathname || '/',
    headers: { host: u.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body,
    accessKeyId: ep.accessKeyId,
    secretAccessKey: ep.secretAccessKey,
    region: ep.region,
    service: 'ec2',
  });
  const res = await fetch(u, { method: 'POST', headers, body, signal: AbortSignal.timeout(60_000) });
  const doc = parser.parse(await res.text()) as Record<string, Record<string, unknown>>;
  if (res.status !== 200) {
    const err = (doc.Response as { Errors?: { Error?: { Code?: string; Message?: string } } } | undefined)?.Errors?.Error;
    throw new CliError(`${action} failed: ${err?.Code ?? res.status}: ${err?.Message ?? ''}`);
  }
  return doc[`${action}Response`] ?? {};
}
