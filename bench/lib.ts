// What the benchmarks share: a Mallee all-in-one (simulated hypervisor) sized for the run, moto_server
// as the EC2 peer, machine facts for the results file, percentiles, and writing bench/results/<name>.md.
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ec2Client, items } from '../test/e2e/helpers/ec2-client.js';
import { freePortBase, mallee, parseEucarc, repoRoot, sleep } from '../test/e2e/helpers/cloud.js';

export interface Ec2Target {
  name: string;
  client: Ec2Client;
  imageId: string;
  instanceType: string;
  stop(): Promise<void>;
}

export interface MalleeTarget extends Ec2Target {
  home: string;
  env: Record<string, string>;
  /** Daemon → pid (clc, cc, nc, walrus, sc). */
  pids(): Record<string, number>;
}

/** An all-in-one with room for `capacity` m1.small instances; `conf` adds mallee.conf lines (e.g. NODE_OPTIONS-free tuning). */
export async function startMallee(opts: { capacity: number; requestTimeoutMs?: number; conf?: Record<string, string> }): Promise<MalleeTarget> {
  const home = mkdtempSync(join(tmpdir(), 'mallee-bench-'));
  const base = await freePortBase();
  writeFileSync(
    join(home, 'mallee.conf'),
    [
      'HYPERVISOR="simulated"',
      `CLC_PORT="${base}"`, `CC_PORT="${base + 1}"`, `NC_PORT="${base + 2}"`, `WALRUS_PORT="${base + 3}"`, `SC_PORT="${base + 4}"`,
      `SIM_CORES="${opts.capacity * 2}"`, `SIM_MEM="${opts.capacity * 2048}"`, `SIM_DISK="${opts.capacity * 20}"`,
      // USERMODE, as a new all-in-one: MANAGED would cap a security group at VNET_ADDRSPERNET instances.
      'SIM_BOOT_DELAY="50"', 'LOG_LEVEL="warn"', `INSTANCE_PATH="${home}/instances"`, 'VNET_MODE="USERMODE"',
      ...Object.entries(opts.conf ?? {}).map(([k, v]) => `${k}="${v}"`), '',
    ].join('\n'),
  );
  // MALLEE_BENCH_PROFILE=DIR: every daemon writes a CPU profile there when stopped (bench/cpu-profile.mjs).
  const profile = process.env.MALLEE_BENCH_PROFILE;
  await mallee(['up', '--home', home, '--detach'], profile ? { NODE_OPTIONS: `--import=${join(repoRoot, 'bench/cpu-profile.mjs')}` } : {});
  const env = parseEucarc(join(home, 'eucarc'));
  const client = new Ec2Client(env.EC2_URL!, { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! }, env.AWS_DEFAULT_REGION!, undefined, opts.requestTimeoutMs ?? 600_000);
  // RegisterImage reads the bundle: make a tiny one the way users do.
  writeFileSync(join(home, 'img'), randomBytes(4096));
  await mallee(['bundle-and-upload', '-i', join(home, 'img'), '-b', 'bench'], { ...env, TMPDIR: home });
  const imageId = String((await client.ok('RegisterImage', { ImageLocation: 'bench/img.manifest.xml', Name: 'bench' })).imageId);
  const pids = () => Object.fromEntries(['clc', 'cc', 'nc', 'walrus', 'sc'].flatMap((s) => {
    try {
      return [[s, Number(readFileSync(join(home, 'run', `${s}.pid`), 'utf8'))]];
    } catch {
      return [];
    }
  }));
  return {
    name: 'Mallee',
    client,
    imageId,
    instanceType: 'm1.small',
    home,
    env,
    pids,
    stop: async () => {
      await mallee(['down', '--home', home]);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export async function startMoto(requestTimeoutMs = 600_000): Promise<Ec2Target & { pid: number; url: string }> {
  const port = await freePortBase();
  const proc: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}/`;
  const client = new Ec2Client(url, { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench' }, 'us-east-1', undefined, requestTimeoutMs);
  for (let i = 0; ; i++) {
    try {
      await client.ok('DescribeRegions');
      break;
    } catch (err) {
      if (i > 150) throw new Error(`moto_server did not start: ${(err as Error).message}`);
      await sleep(200);
    }
  }
  const images = items((await client.ok('DescribeImages', { 'Owner.1': 'amazon' })).imagesSet);
  return {
    name: `moto_server ${execFileSync('python3', ['-c', 'import moto;print(moto.__version__)']).toString().trim()}`,
    client,
    imageId: String(images[0]?.imageId ?? 'ami-12c6146b'),
    instanceType: 't2.micro',
    pid: proc.pid!,
    url,
    stop: async () => {
      proc.kill('SIGTERM');
    },
  };
}

/** Poll f every `every` ms until it returns a value (not undefined); throws after `ms`. */
export async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, ms = 600_000, every = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]! : NaN;
}

/** Resident set size in MiB (from /proc). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The lines every results file starts with: what ran, when, at which commit, on what machine. */
export function machineFacts(script: string): string {
  const rev = execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']).toString().trim();
  return [
    `Run by \`npm run bench\` (bench/${script}) on ${new Date().toISOString()} at commit ${rev}.`,
    '',
    `- Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load average ${loadavg().map((l) => l.toFixed(1)).join(' / ')} at the end (shared with other engineers' builds and guests: absolute numbers are noisy, both servers of a table saw the same machine)`,
    `- Node ${process.version}; peers on 127.0.0.1`,
  ].join('\n');
}

export function writeResult(name: string, markdown: string): void {
  mkdirSync(join(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(join(repoRoot, 'bench/results', `${name}.md`), markdown);
  console.log(markdown);
}

/**
 * The busiest functions of each daemon's CPU profile in `dir` (written with MALLEE_BENCH_PROFILE): how busy
 * the daemon was over the run, and the top self times outside idle, GC and the program itself.
 */
export function profileSummary(dir: string, top = 6): string {
  const out: string[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile')).sort()) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]; samples: number[]; timeDeltas: number[] };
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const self = new Map<string, number>();
    let total = 0;
    let idle = 0;
    p.samples.forEach((id, i) => {
      const t = p.timeDeltas[i] ?? 0;
      const cf = byId.get(id)!.callFrame;
      total += t;
      if (cf.functionName === '(idle)') idle += t;
      if (['(idle)', '(program)', '(garbage collector)'].includes(cf.functionName)) return;
      const k = `${cf.functionName || '(anonymous)'} (${cf.url.replace(/^.*\/(node_modules|packages|services)\//, '$1/').replace(/^node:.*/, 'node') || 'native'}:${cf.lineNumber + 1})`;
      self.set(k, (self.get(k) ?? 0) + t);
    });
    const daemon = f.split('-')[0];
    if (daemon === 'cli') continue;
    out.push(`- **${daemon}**: busy ${((100 * (total - idle)) / total).toFixed(0)}% of ${(total / 1e6).toFixed(0)} s; top self time: ${[...self].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, t]) => `${k} ${((100 * t) / total).toFixed(1)}%`).join(', ')}`);
  }
  return out.join('\n');
}
