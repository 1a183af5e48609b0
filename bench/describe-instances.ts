// Benchmark (not a test): DescribeInstances latency with 1,000 and 10,000 instances, Mallee (real
// clc/cc/nc, simulated hypervisor) vs moto_server loaded with the same number of instances, both
// driven by the same SigV4 Query client in the same run. Writes bench/results/describe-instances.md.
//   npm run bench            (MALLEE_BENCH_SIZES=1000,10000  MALLEE_BENCH_SAMPLES=15)
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { instancesOf } from '../test/e2e/helpers/ec2-client.js';
import { repoRoot } from '../test/e2e/helpers/cloud.js';
import { startMallee as startMalleeTarget, startMoto as startMotoTarget, type Ec2Target } from './lib.js';

const sizes = (process.env.MALLEE_BENCH_SIZES ?? '1000,10000').split(',').map(Number);
// moto needs tens of seconds per 10,000-instance listing: fewer samples at that size.
const samplesFor = (n: number) => Number(process.env.MALLEE_BENCH_SAMPLES ?? (n > 2000 ? 5 : 21));
const maxSize = Math.max(...sizes);
const BATCH = 1000;
// moto takes about a minute per 10,000-instance listing on a busy 2-core machine.
const REQUEST_TIMEOUT_MS = 600_000;

type Target = Ec2Target;

const startMallee = () => startMalleeTarget({ capacity: maxSize, requestTimeoutMs: REQUEST_TIMEOUT_MS });
const startMoto = () => startMotoTarget(REQUEST_TIMEOUT_MS);

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
