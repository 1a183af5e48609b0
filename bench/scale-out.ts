// Benchmark (not a test): what the scale-out backends cost and give, each measured against the embedded
// default in the same run. Writes bench/results/scale-out.md.
//   1. store statements: SQLite (WAL, synchronous=FULL) vs PostgreSQL through the synchronous libpq driver;
//   2. EC2 API throughput of an all-in-one (simulated hypervisor): SQLite vs PostgreSQL with one clc, and two clcs;
//   3. snapshot increments: RBD export-diff vs the sc's content-addressed chunks, for the same scattered writes.
// Needs the scale-out backends: eval "$(test/scale-out/backends.sh up all)"; npx tsx bench/scale-out.ts
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Db, type Migration } from '@mallee/store';
import { startCloud, type Cloud } from '../test/e2e/helpers/cloud.js';
import { Ec2Client } from '../test/e2e/helpers/ec2-client.js';
import { registerTestImage } from '../test/e2e/helpers/images.js';
import { dropDatabase, freshDatabase, startSecondClc, type SecondClc } from '../test/scale-out/helpers.js';

const pgUrl = process.env.MALLEE_TEST_PG_URL;
const cephConf = process.env.MALLEE_TEST_CEPH_CONF;
if (!pgUrl || !cephConf) throw new Error('start the backends first: eval "$(test/scale-out/backends.sh up all)"');
const lines: string[] = [];
const out = (s = '') => {
  lines.push(s);
  console.log(s);
};
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!;

// ---------------------------------------------------------------- 1. statements
function statements(db: Db): { select: number; insert: number; txn: number } {
  db.exec('DELETE FROM t');
  const ins = db.prepare('INSERT INTO t (id, n, note) VALUES (?, ?, ?)');
  db.transaction(() => { for (let i = 0; i < 1000; i++) ins.run(`k${i}`, i, 'x'.repeat(100)); })();
  const sel = db.prepare('SELECT id, n, note FROM t WHERE id = ?');
  let t = performance.now();
  for (let i = 0; i < 5000; i++) sel.get(`k${i % 1000}`);
  const select = ((performance.now() - t) * 1000) / 5000;
  t = performance.now();
  for (let i = 0; i < 300; i++) ins.run(`a${i}`, i, 'y');
  const insert = ((performance.now() - t) * 1000) / 300;
  const upd = db.prepare('UPDATE t SET n = n + 1 WHERE id = ?');
  const txn = db.transaction((i: number) => { for (let j = 0; j < 4; j++) upd.run(`k${(i + j) % 1000}`); ins.run(`b${i}`, i, 'z'); });
  t = performance.now();
  for (let i = 0; i < 300; i++) txn(i);
  return { select, insert, txn: ((performance.now() - t) * 1000) / 300 };
}

const schema: Migration[] = [{ id: 1, name: 't', up: 'CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT)' }];
const dir = mkdtempSync(join(tmpdir(), 'bench-scale-out-'));
const sqlite = openDatabase(join(dir, 'b.sqlite'), { migrations: schema });
const benchDb = `mallee_bench_${process.pid}`;
const pg = openDatabase(freshDatabase(pgUrl, benchDb), { migrations: schema, schema: 'bench' });
const s1 = statements(sqlite);
const p1 = statements(pg);
sqlite.close();
pg.close();
out('## 1. Store statements (µs each, one process, in-process driver)');
out();
out('| operation | SQLite (better-sqlite3, WAL, FULL) | PostgreSQL 15 (libpq, synchronous) |');
out('|---|---:|---:|');
out(`| SELECT by primary key | ${s1.select.toFixed(1)} | ${p1.select.toFixed(1)} |`);
out(`| INSERT, autocommit (a commit each) | ${s1.insert.toFixed(1)} | ${p1.insert.toFixed(1)} |`);
out(`| transaction of 4 UPDATEs + 1 INSERT (SERIALIZABLE on PostgreSQL) | ${s1.txn.toFixed(1)} | ${p1.txn.toFixed(1)} |`);
out();

// ---------------------------------------------------------------- 2. EC2 API
interface Api {
  name: string;
  clients: Ec2Client[];
  cloud: Cloud;
  second?: SecondClc;
  database?: string;
}

async function startTarget(name: string, backend: 'sqlite' | 'pg' | 'pg2'): Promise<Api> {
  const database = backend === 'sqlite' ? undefined : `mallee_bench_api_${backend}_${process.pid}`;
  const dbUrl = database ? freshDatabase(pgUrl!, database) : undefined;
  const cloud = await startCloud({ conf: { ...(dbUrl ? { DB_URL: dbUrl } : {}), SIM_CORES: 1000, SIM_MEM: 1_000_000, SIM_DISK: 100_000, SIM_BOOT_DELAY: 50, LOG_LEVEL: 'warn' }, pollInterval: 2 });
  const clients = [cloud.client];
  let second: SecondClc | undefined;
  if (backend === 'pg2') {
    second = await startSecondClc(cloud, dbUrl!);
    clients.push(new Ec2Client(second.url, { accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY! }, cloud.region));
  }
  return { name, clients, cloud, ...(second ? { second } : {}), ...(database ? { database } : {}) };
}

/** `total` calls, `concurrency` in flight, spread over the target's clcs; answers calls/s and latencies. */
async function drive(api: Api, total: number, concurrency: number, call: (c: Ec2Client, i: number) => Promise<{ status: number }>) {
  let next = 0;
  const latencies: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < total; i = next++) {
      const t = performance.now();
      const r = await call(api.clients[i % api.clients.length]!, i);
      latencies.push(performance.now() - t);
      if (r.status !== 200) errors++;
    }
  }));
  return { perSecond: total / ((performance.now() - t0) / 1000), p50: quantile(latencies, 0.5), p95: quantile(latencies, 0.95), errors };
}

const targets: [string, 'sqlite' | 'pg' | 'pg2'][] = [['SQLite, one clc', 'sqlite'], ['PostgreSQL, one clc', 'pg'], ['PostgreSQL, two clc processes', 'pg2']];
const rows: string[] = [];
for (const [name, backend] of targets) {
  const api = await startTarget(name, backend);
  try {
    const imageId = await registerTestImage(api.cloud, `bench/${backend}.img.manifest.xml`, `bench-${backend}`);
    // 100 instances to list, launched as users do.
    for (let i = 0; i < 4; i++) await api.clients[0]!.ok('RunInstances', { ImageId: imageId, MinCount: 25, MaxCount: 25, InstanceType: 't1.micro' });
    await drive(api, 40, 8, (c) => c.call('DescribeInstances'));
    const describe = await drive(api, 600, 16, (c) => c.call('DescribeInstances'));
    const run = await drive(api, 150, 8, (c) => c.call('RunInstances', { ImageId: imageId, MinCount: 1, MaxCount: 1, InstanceType: 't1.micro' }));
    const groups = await drive(api, 300, 16, (c, i) => c.call('CreateSecurityGroup', { GroupName: `g${i}`, GroupDescription: 'bench' }));
    for (const [what, r] of [['DescribeInstances (100 instances)', describe], ['RunInstances (1 instance)', run], ['CreateSecurityGroup', groups]] as const) {
      rows.push(`| ${what} | ${name} | ${r.perSecond.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.errors} |`);
    }
  } finally {
    api.second?.stop();
    await api.cloud.stop();
    if (api.database) dropDatabase(pgUrl, api.database);
  }
}
out('## 2. EC2 API throughput (all-in-one, simulated hypervisor; calls spread over the clc processes)');
out();
out('| action | backend | calls/s | p50 ms | p95 ms | errors |');
out('|---|---|---:|---:|---:|---:|');
for (const r of rows.sort()) out(r);
out();

// ---------------------------------------------------------------- 3. snapshot increments
const keyring = process.env.MALLEE_TEST_CEPH_KEYRING!;
const id = process.env.MALLEE_TEST_CEPH_ID ?? 'mallee';
const pool = process.env.MALLEE_TEST_CEPH_POOL ?? 'rbd';
const image = `bench-${process.pid}`;
const rbd = (...args: string[]) => execFileSync('rbd', ['-c', cephConf, '--id', id, '--keyring', keyring, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
const qemuPath = `rbd:${pool}/${image}:id=${id}:keyring=${keyring}:conf=${cephConf}`;
const SIZE_MIB = 1024;
const CHUNK_MIB = 1; // SC_CHUNK_MB's default
const snapRows: string[] = [];
rbd('create', '--size', String(SIZE_MIB), `${pool}/${image}`);
try {
  execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P 0x11 0 ${SIZE_MIB}M`, qemuPath], { stdio: 'ignore' });
  rbd('snap', 'create', `${pool}/${image}@base`);
  let prev = 'base';
  for (const [label, writes] of [
    ['1% of the volume in 4 KiB writes spread evenly', Array.from({ length: (SIZE_MIB * 256) / 100 }, (_, i) => [Math.floor((i * SIZE_MIB * 1024 * 1024) / ((SIZE_MIB * 256) / 100) / 4096) * 4096, 4096])],
    ['1% of the volume in one sequential run', [[64 * 1024 * 1024, Math.floor((SIZE_MIB * 1024 * 1024) / 100 / 4096) * 4096]]],
    ['64 scattered 64 KiB writes (a database\'s pages)', Array.from({ length: 64 }, (_, i) => [i * 16 * 1024 * 1024 + 8192, 65536])],
  ] as const) {
    const args = writes.flatMap(([off, len]) => ['-c', `write -P 0x${(snapRows.length + 0x22).toString(16)} ${off} ${len}`]);
    for (let i = 0; i < args.length; i += 400) execFileSync('qemu-io', ['-f', 'raw', ...args.slice(i, i + 400), qemuPath], { stdio: 'ignore' });
    const snap = `s${snapRows.length}`;
    rbd('snap', 'create', `${pool}/${image}@${snap}`);
    const diff = join(dir, `${snap}.diff`);
    rbd('export-diff', '--from-snap', prev, `${pool}/${image}@${snap}`, diff);
    const changed = writes.reduce((s, [, len]) => s + len, 0);
    const chunks = new Set<number>();
    for (const [off, len] of writes) for (let c = Math.floor(off / (CHUNK_MIB << 20)); c <= Math.floor((off + len - 1) / (CHUNK_MIB << 20)); c++) chunks.add(c);
    snapRows.push(`| ${label} | ${(changed / 1024 / 1024).toFixed(2)} | ${(statSync(diff).size / 1024 / 1024).toFixed(2)} | ${((chunks.size * CHUNK_MIB)).toFixed(2)} |`);
    prev = snap;
  }
} finally {
  execFileSync('rbd', ['-c', cephConf, '--id', id, '--keyring', keyring, 'snap', 'purge', `${pool}/${image}`], { stdio: 'ignore' });
  execFileSync('rbd', ['-c', cephConf, '--id', id, '--keyring', keyring, 'rm', `${pool}/${image}`], { stdio: 'ignore' });
}
out(`## 3. Snapshot increments of a ${SIZE_MIB} MiB volume (MiB uploaded for the second snapshot)`);
out();
out(`| change since the previous snapshot | bytes written | RBD export-diff | sc chunks (${CHUNK_MIB} MiB, content-addressed) |`);
out('|---|---:|---:|---:|');
for (const r of snapRows) out(r);
out();
dropDatabase(pgUrl, benchDb);
rmSync(dir, { recursive: true, force: true });

const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim();
mkdirSync(new URL('./results', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/scale-out.md', import.meta.url), [
  '# Scale-out backends: PostgreSQL and Ceph against the embedded defaults',
  '',
  `Run by \`npx tsx bench/scale-out.ts\` on ${new Date().toISOString()} at commit ${commit}, with the backends of`,
  '`test/scale-out/backends.sh` (PostgreSQL 15 and a one-OSD Ceph 16 on sparse files, on this host).',
  '',
  `- Machine: ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, shared with other engineers' builds and tests (absolute numbers are noisy; the`,
  '  rows of one table ran one after the other under the same load). PostgreSQL and Ceph run on the same 2 cores as Mallee.',
  '- Table 2: `mallee up --hypervisor simulated` clouds (clc + cc + nc + walrus + sc processes); the EC2 client is',
  '  test/e2e/helpers/ec2-client.ts (SigV4, Node fetch); with two clcs, calls alternate between them.',
  '- Table 3: the sc\'s column is counted, not run: the sc uploads every changed, non-zero chunk of SC_CHUNK_MB, so it is the',
  '  number of distinct chunks the writes touch (bench/results/snapshots.md measures the sc itself). RBD\'s is the size of',
  '  the real `rbd export-diff` file. Volume write throughput inside a guest (file+iSCSI vs RBD) is not measured: the',
  '  RBD volume backend (SC_BACKEND=ceph-rbd) was not built yet when this ran; bench/results/ebs-rbd.md measures it.',
  '',
  ...lines,
].join('\n'));
