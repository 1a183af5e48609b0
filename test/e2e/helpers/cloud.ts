// Brings up a real all-in-one cloud from the built daemons in a temp home on free ports, through
// the `mallee` command exactly as a user would, and tears it down again.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ec2Client } from './ec2-client.js';

const run = promisify(execFile);
export const repoRoot = new URL('../../../', import.meta.url).pathname;
export const malleeBin = join(repoRoot, 'packages/cli/dist/src/main.js');

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A base port with the five after it free (clc, cc, nc, walrus, sc). */
export async function freePortBase(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    let all = true;
    for (let p = base; p < base + 5 && all; p++) all = await portFree(p);
    if (all) return base;
  }
  throw new Error('no five consecutive free ports found');
}

/** Runs the mallee CLI (in network namespace `netns` when given: the daemons it starts run there too). */
export async function mallee(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000, netns?: string): Promise<{ stdout: string; stderr: string }> {
  try {
    const argv = [process.execPath, malleeBin, ...args];
    const [cmd, ...rest] = netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv;
    return await run(cmd!, rest, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`mallee ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/** `export KEY='value'` lines of an eucarc, unquoted. */
export function parseEucarc(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^export ([A-Z0-9_]+)='(.*)'$/.exec(line);
    if (m) out[m[1]!] = m[2]!.replace(/'\\''/g, "'");
  }
  return out;
}

export interface Cloud {
  home: string;
  /** The eucarc's variables: what every client gets. */
  env: Record<string, string>;
  ec2Url: string;
  region: string;
  client: Ec2Client;
  mallee(args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /** Log tails of every daemon (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

export async function startCloud(opts: { pollInterval?: number; /** mallee.conf keys as MALLEE_<KEY> env for every daemon */ conf?: Record<string, string | number>; /** libvirt: real guests, and `up` registers the test image */ hypervisor?: 'simulated' | 'libvirt'; /** false: `up --no-test-image` */ testImage?: boolean;
  /** Run every daemon in this network namespace (its BIND_ADDRESS, in conf, reachable from this host) */ netns?: string } = {}): Promise<Cloud> {
  const confEnv = Object.fromEntries(Object.entries(opts.conf ?? {}).map(([k, v]) => [`MALLEE_${k}`, String(v)]));
  const home = mkdtempSync(join(tmpdir(), 'mallee-e2e-'));
  const base = await freePortBase();
  const logs = () =>
    ['clc', 'walrus', 'sc', 'cc', 'nc']
      .map((s) => {
        try {
          return `--- ${s}.log\n${readFileSync(join(home, 'log', `${s}.log`), 'utf8').split('\n').slice(-20).join('\n')}`;
        } catch {
          return `--- ${s}.log missing`;
        }
      })
      .join('\n');
  try {
    await mallee(['up', '--home', home, '--hypervisor', opts.hypervisor ?? 'simulated', '--detach', '--port-base', String(base), '--poll-interval', String(opts.pollInterval ?? 1), ...(opts.testImage === false ? ['--no-test-image'] : [])], confEnv, undefined, opts.netns);
  } catch (err) {
    const message = `${(err as Error).message}\n${logs()}`;
    await mallee(['down', '--home', home], {}, undefined, opts.netns).catch(() => {});
    rmSync(home, { recursive: true, force: true });
    throw new Error(message);
  }
  const env = parseEucarc(join(home, 'eucarc'));
  const cloud: Cloud = {
    home,
    env,
    ec2Url: env.EC2_URL!,
    region: env.AWS_DEFAULT_REGION!,
    client: new Ec2Client(env.EC2_URL!, { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! }, env.AWS_DEFAULT_REGION!),
    mallee: (args, timeoutMs) => mallee([...args, '--home', home], confEnv, timeoutMs, opts.netns),
    logs,
    stop: async () => {
      await mallee(['down', '--home', home], {}, undefined, opts.netns).catch(() => {});
      if (opts.hypervisor === 'libvirt') await removeGuestsOf(home);
      // The sc leaves its exports in tgtd on purpose (guests keep their volumes across an sc restart):
      // a test's cloud takes those of its home with it.
      await removeTargetsOf(home);
      if (!process.env.MALLEE_E2E_KEEP) rmSync(home, { recursive: true, force: true });
    },
  };
  return cloud;
}

/** A target as `tgtadm --lld iscsi --mode target --op show` lists it. */
export interface TgtTarget { tid: number; iqn: string; /** the LUNs' backing files */ backing: string[]; /** CHAP accounts bound to it */ accounts: string[] }

/** Parses `tgtadm --lld iscsi --mode target --op show`: the one reading of its output the suites share. */
export function parseTgtTargets(shown: string): TgtTarget[] {
  return shown.split(/^(?=Target \d+:)/m).flatMap((block) => {
    const m = /^Target (\d+): (\S+)/.exec(block);
    if (!m) return [];
    const bound = /^\s*Account information:\n([\s\S]*?)^\s*ACL information:/m.exec(block)?.[1] ?? '';
    return [{
      tid: Number(m[1]),
      iqn: m[2]!,
      backing: [...block.matchAll(/Backing store path: (\S+)/g)].map((b) => b[1]!).filter((p) => p !== 'None'),
      accounts: bound.split('\n').map((l) => l.trim()).filter(Boolean),
    }];
  });
}

/**
 * Deletes the tgtd targets whose backing store is a file under `home`, and the CHAP accounts bound to them
 * (an account outlives its target in tgtd); none when tgtd is not running.
 */
export async function removeTargetsOf(home: string): Promise<void> {
  const shown = await runTool('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'show'], process.env);
  if (shown.code !== 0) return;
  const accounts = new Set<string>();
  for (const t of parseTgtTargets(shown.stdout)) {
    if (!t.backing.some((p) => p.startsWith(`${home}/`))) continue;
    for (const user of t.accounts) accounts.add(user);
    await runTool('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'delete', '--force', '--tid', String(t.tid)], process.env);
  }
  for (const user of accounts) await runTool('tgtadm', ['--lld', 'iscsi', '--mode', 'account', '--op', 'delete', '--user', user], process.env);
}

/** Environment for a client process: the eucarc's variables over a clean AWS config. */
export function clientEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_') || k.startsWith('EC2_') || k.startsWith('EUCA')) delete env[k];
  return { ...env, ...vars, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_EC2_METADATA_DISABLED: 'true' };
}

export async function runTool(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 << 20 });
    return { ...r, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? String(err), code: typeof e.code === 'number' ? e.code : 1 };
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until check() returns a value (not undefined) or time runs out. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Guests a failed test may leave behind: the libvirt domains of this home's instance directories. */
export async function removeGuestsOf(home: string): Promise<string[]> {
  const dir = join(home, 'instances');
  const ids = existsSync(dir) ? readdirSync(dir).filter((n) => /^i-[0-9a-f]+$/.test(n)) : [];
  for (const id of ids) {
    await runTool('virsh', ['-c', 'qemu:///system', 'destroy', id], process.env, 30_000);
    await runTool('virsh', ['-c', 'qemu:///system', 'undefine', id], process.env, 30_000);
  }
  return ids;
}

/** Names of the libvirt domains that exist now (running or not). */
export async function libvirtDomains(): Promise<string[]> {
  const r = await runTool('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], process.env, 30_000);
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}
