// Walrus for tests: an in-process daemon on port 0 with a temp home and two accounts (alice, bob)
// from a static credential table, plus helpers to run the real clients against it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { signV4 } from '@mallee/aws-protocol';
import { loadConfig } from '@mallee/config';
import { startDaemon, staticCredentials, type Quotas, type RunningDaemon, type StaticKey } from '../src/index.js';

export const ACCOUNTS: Record<string, StaticKey & { accessKeyId: string }> = {
  alice: { accessKeyId: 'AKIAALICE0000000001', secretAccessKey: 'alice/secret+key0000000000000000000000', accountId: '100000000001', accountName: 'alice' },
  bob: { accessKeyId: 'AKIABOB000000000002', secretAccessKey: 'bob/secret+key00000000000000000000000000', accountId: '200000000002', accountName: 'bob' },
  /** A member of the cloud's admin account (eucalyptus). */
  admin: { accessKeyId: 'AKIAADMIN0000000003', secretAccessKey: 'admin/secret+key000000000000000000000000', accountId: '000000000001', accountName: 'eucalyptus', isAdmin: true },
};

export const credentialTable = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.accessKeyId, a]));

export const testConfig = () => loadConfig({ env: {}, overrides: { LOG_LEVEL: 'silent', BIND_ADDRESS: '127.0.0.1' } });

export interface TestWalrus {
  url: string;
  home: string;
  daemon: RunningDaemon;
  close(): Promise<void>;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startWalrus(opts: { quotas?: Quotas } = {}): Promise<TestWalrus> {
  const home = tempDir('mallee-walrus-');
  const daemon = await startDaemon({ home, config: testConfig(), port: 0, credentials: staticCredentials(credentialTable), ...opts });
  return {
    url: daemon.url,
    home,
    daemon,
    close: async () => {
      await daemon.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

const run = promisify(execFile);

/** Environment for awscli/boto3 signed as the given account. */
export function clientEnv(account: keyof typeof ACCOUNTS, home: string): NodeJS.ProcessEnv {
  const a = ACCOUNTS[account]!;
  return {
    ...process.env,
    AWS_ACCESS_KEY_ID: a.accessKeyId,
    AWS_SECRET_ACCESS_KEY: a.secretAccessKey,
    AWS_DEFAULT_REGION: 'mallee',
    AWS_CONFIG_FILE: join(home, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

/** Runs `aws --endpoint-url URL …`; rejects with stderr on a non-zero exit. */
export async function aws(w: TestWalrus, account: keyof typeof ACCOUNTS, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const { stdout } = await run('aws', ['--endpoint-url', w.url, ...args], { env: clientEnv(account, w.home), maxBuffer: 64 * 1024 * 1024, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  return stdout;
}

/** Like aws() but returns the failure's stderr instead of throwing. */
export async function awsFails(w: TestWalrus, account: keyof typeof ACCOUNTS, args: string[]): Promise<string> {
  try {
    await aws(w, account, args);
  } catch (e) {
    return String((e as { stderr?: string }).stderr ?? e);
  }
  throw new Error(`aws ${args.join(' ')} succeeded but was expected to fail`);
}

/** Runs a python script from test/clients with the endpoint and both accounts' keys as arguments. */
export async function python(w: TestWalrus, script: string, interpreter = 'python3'): Promise<string> {
  const a = ACCOUNTS.alice!;
  const b = ACCOUNTS.bob!;
  const { stdout } = await run(interpreter, [join(import.meta.dirname, 'clients', script), w.url, a.accessKeyId, a.secretAccessKey, a.accountId, b.accessKeyId, b.secretAccessKey, b.accountId], {
    env: clientEnv('alice', w.home),
    maxBuffer: 16 * 1024 * 1024,
    timeout: 120_000,
  });
  return stdout;
}

export interface Sent {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  raw: Buffer;
}

export interface RawRequest {
  method: string;
  path: string;
  query?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  sign?: boolean;
  secret?: string;
  account?: keyof typeof ACCOUNTS;
}

/** A raw request (path sent exactly as given), SigV4-signed as alice unless `sign` is false. */
export async function rawS3(w: TestWalrus, opts: RawRequest): Promise<Sent> {
  const res = await openS3(w, opts);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), raw: Buffer.concat(chunks) };
}

/** rawS3's request, answering the response as soon as its headers arrive (the body not yet read). */
export function openS3(w: TestWalrus, opts: RawRequest): Promise<IncomingMessage> {
  const host = new URL(w.url).host;
  const body = opts.body === undefined ? Buffer.alloc(0) : Buffer.from(opts.body);
  let headers: Record<string, string> = { host, ...opts.headers };
  let query = opts.query ?? '';
  if (opts.sign !== false) {
    const a = ACCOUNTS[opts.account ?? 'alice']!;
    headers['x-amz-content-sha256'] ??= createHash('sha256').update(body).digest('hex');
    const s = signV4({ method: opts.method, path: opts.path, query, headers, body, accessKeyId: a.accessKeyId, secretAccessKey: opts.secret ?? a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: headers['x-amz-content-sha256'] });
    headers = s.headers;
    query = s.query;
  }
  const u = new URL(w.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: opts.method, path: opts.path + (query ? `?${query}` : ''), headers: { ...headers, 'content-length': String(body.length) } }, resolve);
    req.on('error', reject);
    req.end(body);
  });
}

