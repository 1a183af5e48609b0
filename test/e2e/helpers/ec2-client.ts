// A minimal EC2 Query client with its own SigV4 signer, for what the real clients cannot do:
// wrong secrets, unknown actions, exact HTTP statuses, and many requests in parallel.
import { createHash, createHmac } from 'node:crypto';
import { XMLParser } from 'fast-xml-parser';

export interface Ec2Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface Ec2Reply {
  status: number;
  body: string;
  /** Parsed XML (root element's content). */
  xml: Record<string, unknown>;
  /** For error replies: Response.Errors.Error.Code. */
  code?: string;
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => name === 'item' });
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');
const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export class Ec2Client {
  constructor(
    private readonly url: string,
    private readonly creds: Ec2Credentials,
    private readonly region: string,
    private readonly version = '2016-11-15',
    private readonly timeoutMs = 60_000,
  ) {}

  withCredentials(creds: Ec2Credentials): Ec2Client {
    return new Ec2Client(this.url, creds, this.region, this.version, this.timeoutMs);
  }

  async call(action: string, params: Record<string, string | number | boolean> = {}): Promise<Ec2Reply> {
    const { status, body } = await this.send(action, params);
    const doc = parser.parse(body) as Record<string, Record<string, unknown>>;
    const root = Object.values(doc).find((v) => typeof v === 'object') ?? {};
    const code = (root as { Errors?: { Error?: { Code?: string } } }).Errors?.Error?.Code;
    return { status, body, xml: root, ...(code ? { code } : {}) };
  }

  /** The signed request and the whole reply body, unparsed (what a benchmark should time). */
  async send(action: string, params: Record<string, string | number | boolean> = {}): Promise<{ status: number; body: string }> {
    const all: Record<string, string> = { Action: action, Version: this.version };
    for (const [k, v] of Object.entries(params)) all[k] = String(v);
    const body = Object.keys(all)
      .sort()
      .map((k) => `${enc(k)}=${enc(all[k]!)}`)
      .join('&');
    const u = new URL(this.url);
    const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      host: u.host,
      'x-amz-date': amzDate,
    };
    const signed = Object.keys(headers).sort();
    const canonical = ['POST', u.pathname || '/', '', ...signed.map((h) => `${h}:${headers[h]}`), '', signed.join(';'), sha256(body)].join('\n');
    const scope = `${day}/${this.region}/ec2/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
    const kDate = hmac(`AWS4${this.creds.secretAccessKey}`, day);
    const kSigning = hmac(hmac(hmac(kDate, this.region), 'ec2'), 'aws4_request');
    const signature = createHmac('sha256', kSigning).update(toSign).digest('hex');
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${this.creds.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`;
    const res = await fetch(this.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    return { status: res.status, body: await res.text() };
  }

  /** call() that throws unless the reply is 200. */
  async ok(action: string, params: Record<string, string | number | boolean> = {}): Promise<Record<string, unknown>> {
    const r = await this.call(action, params);
    if (r.status !== 200) throw new Error(`${action} → ${r.status} ${r.code ?? ''}: ${r.body.slice(0, 500)}`);
    return r.xml;
  }
}

type Item = Record<string, unknown>;
const items = (v: unknown): Item[] => ((v as { item?: Item[] } | undefined)?.item ?? []) as Item[];

/** Flatten DescribeInstances' reservationSet into instances (with their reservation id). */
export function instancesOf(xml: Record<string, unknown>): { instanceId: string; state: string; reservationId: string; item: Item }[] {
  return items(xml.reservationSet).flatMap((r) =>
    items(r.instancesSet).map((i) => ({
      instanceId: String(i.instanceId),
      state: String((i.instanceState as Item | undefined)?.name),
      reservationId: String(r.reservationId),
      item: i,
    })),
  );
}

export { items };
