// Benchmark (not a test): DescribeInstances latency with 1,000 and 10,000 instances, Mallee (real
// clc/cc/nc, simulated hypervisor) vs moto_server loaded with the same number of instances, both
// driven by the same SigV4 Query client in the same run. Writes bench/results/describe-instances.md.
//   npm run bench            (MALLEE_BENCH_SIZES=1000,10000  MALLEE_BENCH_SAMPLES=15)
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ec2Client, instancesOf, items } from '../test/e2e/helpers/ec2-client.js';
import { freePortBase, mallee, parseEucarc, repoRoot, sleep } from '../test/e2e/helpers/cloud.js';

const sizes = (process.env.MALLEE_BENCH_SIZES ?? '1000,10000').split(',').map(Number);
// moto needs tens of seconds per 10,000-instance listing: fewer samples at that size.
const samplesFor = (n: number) => Number(process.env.MALLEE_BENCH_SAMPLES ?? (n > 2000 ? 5 : 21));
const maxSize = Math.max(...sizes);
const BATCH = 1000;
// moto takes about a minute per 10,000-instance listing on a busy 2-core machine.
const REQUEST_TIMEOUT_MS = 600_000;

interface Target {
  name: string;
  client: Ec2Client;
  imageId: string;
  instanceType: string;
  stop(): Promise<void>;
}

async function startMallee(): Promise<Target> {
  const home = mkdtempSync(join(tmpdir(), 'mallee-bench-'));
  const base = await freePortBase();
  // Capacity for every instance of the run; quick boots; polling as deployed.
  writeFileSync(
    join(home, 'mallee.conf'),
    [
      'HYPERVISOR="simulated"',
      `CLC_PORT="${base}"`, `CC_PORT="${base + 1}"`, `NC_PORT="${base + 2}"`, `WALRUS_PORT="${base + 3}"`, `SC_PORT="${base + 4}"`,
      `SIM_CORES="${maxSize * 2}"`, `SIM_MEM="${maxSize * 2048}"`, `SIM_DISK="${maxSize * 20}"`,
      'SIM_BOOT_DELAY="50"', 'LOG_LEVEL="warn"', `INSTANCE_PATH="${home}/instances"`, '',
    ].join('\n'),
  );
  await mallee(['up', '--home', home, '--detach']);
  const env = parseEucarc(join(home, 'eucarc'));
  const client = new Ec2Client(env.EC2_URL!, { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! }, env.AWS_DEFAULT_REGION!, undefined, REQUEST_TIMEOUT_MS);
  // RegisterImage reads the bundle: make a tiny one the way users do.
  writeFileSync(join(home, 'img'), randomBytes(4096));
  await mallee(['bundle-and-upload', '-i', join(home, 'img'), '-b', 'bench'], { ...env, TMPDIR: home });
  const imageId = String((await client.ok('RegisterImage', { ImageLocation: 'bench/img.manifest.xml', Name: 'bench' })).imageId);
  return {
    name: 'Mallee',
    client,
    imageId,
    instanceType: 'm1.small',
    stop: async () => {
      await mallee(['down', '--home', home]);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

async function startMoto(): Promise<Target> {
  const port = await freePortBase();
  const proc: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}/`;
  const client = new Ec2Client(url, { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench' }, 'us-east-1', undefined, REQUEST_TIMEOUT_MS);
  for (let i = 0; ; i++) {
    try {
      await client.ok('DescribeRegions');
      break;
    } catch (err) {
      if (i > 100) throw new Error(`moto_server did not start: ${(err as Error).message}`);
      await sleep(200);
    }
  }
  const images = items((await client.ok('DescribeImages', { 'Owner.1': 'amazon' })).imagesSet);
  return {
    name: `moto_server ${execFileSync('python3', ['-c', 'import moto;print(moto.__version__)']).toString().trim()}`,
    client,
    imageId: String(images[0]?.imageId ?? 'ami-12c6146b'),
    instanceType: 't2.micro',
    stop: async () => {
      proc.kill('SIGTERM');
    },
  };
}

async function countInstances(t: Target): Promise<number> {
  return instancesOf(await t.client.ok('DescribeInstances')).length;
}

async function loadTo(t: Target, n: number): Promise<void> {
  let have = await countInstances(t);
  while (have < n) {
    const k = Math.min(BATCH, n - have);
    await t.client.ok('RunInstances', { ImageId: t.imageId, MinCount: k, MaxCount: k, InstanceType: t.instanceType });
    have += k;
  }
  const seen = await countInstances(t);
  if (seen !== n) throw new Error(`${t.name}: ${seen} instances listed, expected ${n}`);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function measure(t: Target, n: number): Promise<{ median: number; p95: number; bytes: number }> {
  const times: number[] = [];
  let bytes = 0;
  const listed = instancesOf(await t.client.ok('DescribeInstances')).length; // warm-up, and the count check
  if (listed !== n) throw new Error(`${t.name}: listed ${listed}, expected ${n}`);
  for (let i = 0; i < samplesFor(n); i++) {
    const start = performance.now();
    const r = await t.client.send('DescribeInstances');
    times.push(performance.now() - start);
    if (r.status !== 200) throw new Error(`${t.name}: DescribeInstances ${r.status}`);
    bytes = r.body.length;
  }
  times.sort((a, b) => a - b);
  return { median: percentile(times, 50), p95: percentile(times, 95), bytes };
}

const rows: string[] = [];
const targets = [await startMallee(), await startMoto()];
try {
  for (const n of [...sizes].sort((a, b) => a - b)) {
    for (const t of targets) {
      const t0 = performance.now();
      await loadTo(t, n);
      const loadS = (performance.now() - t0) / 1000;
      const m = await measure(t, n);
      const row = `| ${n.toLocaleString('en')} | ${t.name} | ${m.median.toFixed(1)} | ${m.p95.toFixed(1)} | ${(m.bytes / 1e6).toFixed(2)} | ${loadS.toFixed(1)} |`;
      console.log(row);
      rows.push(row);
    }
  }
} finally {
  for (const t of targets) await t.stop().catch(() => {});
}

const rev = execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']).toString().trim();
const md = `# DescribeInstances: Mallee vs moto_server

Run by \`npm run bench\` (bench/describe-instances.ts) on ${new Date().toISOString()} at commit ${rev}.

- Machine: ${cpus().length} CPUs (\`nproc\` ${execFileSync('nproc').toString().trim()}; ${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, shared with other work
- Node ${process.version}; ${targets[1]!.name} (pyenv Python), on 127.0.0.1
- Mallee: all-in-one (\`mallee up --hypervisor simulated\`): real clc + cc + nc (and walrus, idle) processes, simulated hypervisor, SQLite in WAL mode
- Client: the same SigV4-signed EC2 Query client (test/e2e/helpers/ec2-client.ts, Node fetch) for both, one request at a time;
  an unfiltered DescribeInstances listing every instance, timed from sending the signed request to the last byte of the reply
  (no XML parsing in the timing); ${sizes.map((n) => `${samplesFor(n)} timed requests at ${n.toLocaleString('en')}`).join(', ')}, after one warm-up, per target
- "load" is the time to launch the instances (RunInstances in batches of ${BATCH}), not part of the measurement

| instances | server | median ms | p95 ms (nearest-rank) | response MB | load s |
|---:|---|---:|---:|---:|---:|
${rows.join('\n')}
`;
mkdirSync(join(repoRoot, 'bench/results'), { recursive: true });
writeFileSync(join(repoRoot, 'bench/results/describe-instances.md'), md);
console.log(md);
