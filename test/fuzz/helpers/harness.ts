// What every fuzz suite shares: one real all-in-one cloud (the built daemons as processes, simulated
// hypervisor), raw HTTP that sends exactly the bytes a case holds, the checks a reply must pass, and
// the daemons' RSS and liveness.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import fc from 'fast-check';
import { parseEucarc, startCloud, type Cloud } from '../../e2e/helpers/cloud.js';

/** `MALLEE_FUZZ_RUNS` multiplies every property's run count (`npm run fuzz` sets it); the seed is fixed unless `MALLEE_FUZZ_SEED` says otherwise. */
export const RUNS_FACTOR = Number(process.env.MALLEE_FUZZ_RUNS ?? 1);
export const SEED = Number(process.env.MALLEE_FUZZ_SEED ?? 20_240_808);

/** fast-check parameters for a property of `base` runs in the default suite. */
export function params(base: number): fc.Parameters<unknown> {
  return { numRuns: Math.max(1, Math.round(base * RUNS_FACTOR)), seed: SEED, endOnFailure: true, verbose: 1 };
}

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface FuzzCloud {
  cloud: Cloud;
  ec2Url: string;
  s3Url: string;
  ccUrl: string;
  ncUrl: string;
  region: string;
  /** A non-admin account made for fuzzing, so no case reaches admin-only actions. */
  user: Credentials;
  admin: Credentials;
  key(name: 'cloud' | 'node' | 'admin'): string;
  pid(svc: Daemon): number;
  stop(): Promise<void>;
}

export type Daemon = 'clc' | 'walrus' | 'cc' | 'nc';
export const DAEMONS: readonly Daemon[] = ['clc', 'walrus', 'cc', 'nc'];

export async function startFuzzCloud(): Promise<FuzzCloud> {
  const cloud = await startCloud({ pollInterval: 2 });
  try {
    await cloud.mallee(['account', 'create', 'fuzz']);
    const out = join(cloud.home, 'fuzz-creds');
    await cloud.mallee(['credentials', '--account', 'fuzz', '--out', out]);
    const env = parseEucarc(join(out, 'eucarc'));
    const read = (f: string) => readFileSync(join(cloud.home, f), 'utf8').trim();
    return {
      cloud,
      ec2Url: cloud.ec2Url,
      s3Url: cloud.env.S3_URL!,
      ccUrl: read('run/cc.url'),
      ncUrl: read('run/nc.url'),
      region: cloud.region,
      user: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
      admin: { accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY! },
      key: (name) => read(`keys/${name}.key`),
      pid: (svc) => Number(read(`run/${svc}.pid`)),
      stop: () => cloud.stop(),
    };
  } catch (err) {
    await cloud.stop();
    throw err;
  }
}

/** Resident set size of a process, in bytes (from /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  raw: Buffer;
}

export interface RawRequest {
  method: string;
  /** Sent exactly as given (path and query, already encoded or deliberately not). */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/**
 * One HTTP request with the path, headers and body as given (node:http only refuses what cannot be put
 * on the wire at all: control characters and spaces in the path, which a case then skips).
 */
export function send(baseUrl: string, req: RawRequest, timeoutMs = 30_000): Promise<RawReply> {
  const u = new URL(baseUrl);
  // A body always goes with its length (node:http sends an OPTIONS or DELETE body unframed otherwise).
  const headers = { ...req.headers };
  if (req.body !== undefined && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) headers['content-length'] = String(Buffer.byteLength(req.body));
  return new Promise((resolve, reject) => {
    const r = request(
      { host: u.hostname, port: u.port, method: req.method, path: req.path, headers, timeout: timeoutMs, agent: false, setHost: !hasHost(req.headers) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: raw.toString('utf8'), raw });
        });
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`${req.method} ${req.path.slice(0, 200)}: no answer in ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end(req.body);
  });
}

const hasHost = (h: Record<string, string> | undefined) => h !== undefined && Object.keys(h).some((k) => k.toLowerCase() === 'host');

/** Whether node:http can send this path at all (it throws ERR_UNESCAPED_CHARACTERS otherwise). */
export function sendablePath(path: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0020\u007f-\uffff]/.test(path);
}

/** Whether node:http can send this header value (no CR/LF/NUL, latin-1 only). */
export function sendableHeader(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\u0000\r\n\u0100-\uffff]/.test(value);
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false });

function parseXml(body: string): Record<string, unknown> | undefined {
  if (XMLValidator.validate(body) !== true) return undefined;
  return parser.parse(body) as Record<string, unknown>;
}

const CODE = /^[A-Z][A-Za-z0-9]*(\.[A-Za-z0-9]+)*$/;

/** Why an EC2 reply is not acceptable for a malformed or fuzzed request, or undefined when it is. */
export function ec2ReplyProblem(r: RawReply): string | undefined {
  if (r.status >= 500) return `status ${r.status}`;
  if (r.status < 200 || (r.status >= 300 && r.status < 400)) return `status ${r.status}`;
  const doc = parseXml(r.body);
  if (!doc) return `status ${r.status} with a body that is not XML: ${r.body.slice(0, 300)}`;
  if (r.status === 200) {
    const root = Object.keys(doc).find((k) => k !== '?xml');
    return root?.endsWith('Response') ? undefined : `200 with root ${root}`;
  }
  const err = (doc.Response as { Errors?: { Error?: { Code?: string; Message?: string } }; RequestID?: string } | undefined);
  const code = err?.Errors?.Error?.Code;
  if (!code || !CODE.test(code)) return `status ${r.status} without an EC2 error code: ${r.body.slice(0, 300)}`;
  if (!err?.RequestID) return `error ${code} without RequestID`;
  if (/\bat .+\.[jt]s:\d+/.test(r.body)) return `error ${code} carries a stack trace`;
  return undefined;
}

/** Why an S3 reply is not acceptable, or undefined. NotImplemented (501) is S3's own answer for what is not served. */
export function s3ReplyProblem(r: RawReply, method: string): string | undefined {
  if (r.status >= 500 && r.status !== 501) return `status ${r.status}: ${r.body.slice(0, 300)}`;
  if (r.status < 400) return undefined; // successes are the actions' business; the fuzz is about what is refused
  if (method === 'HEAD') return r.body === '' ? undefined : 'HEAD error with a body';
  const doc = parseXml(r.body);
  const err = doc?.Error as { Code?: string; Message?: string; RequestId?: string } | undefined;
  if (!err?.Code || !CODE.test(err.Code)) return `status ${r.status} without an S3 <Error><Code>: ${r.body.slice(0, 300)}`;
  if (err.Code === 'InternalError') return 'InternalError';
  if (!err.RequestId) return `error ${err.Code} without RequestId`;
  if (r.status === 501 && err.Code !== 'NotImplemented') return `501 with ${err.Code}`;
  return undefined;
}

/** Why a wire reply is not acceptable: a Fault envelope with a 4xx status (or a 200 operation response). */
export function wireReplyProblem(r: RawReply): string | undefined {
  if (r.status >= 500) return `status ${r.status}: ${r.body.slice(0, 300)}`;
  const doc = parseXml(r.body);
  const env = doc?.Envelope as { Body?: Record<string, unknown> } | undefined;
  if (!env?.Body) return `status ${r.status} without a wire Envelope: ${r.body.slice(0, 300)}`;
  const op = Object.keys(env.Body)[0];
  if (r.status === 200) return op?.endsWith('Response') ? undefined : `200 with body ${op}`;
  if (op !== 'Fault') return `status ${r.status} with body ${op}`;
  const f = env.Body.Fault as { code?: string } | undefined;
  if (!f?.code || !CODE.test(f.code)) return `fault without a code: ${r.body.slice(0, 300)}`;
  return undefined;
}

/** Fails with every problem found (fast-check shrinks to the smallest case). */
export function expectNoProblem(what: string, problem: string | undefined): void {
  if (problem !== undefined) throw new Error(`${what}: ${problem}`);
}
