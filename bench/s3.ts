// Benchmark (not a test): S3 PUT and GET against Mallee's Walrus, s3rver (npm) and moto_server in the
// same run, driven by one SigV4 client, with the disk's own fsync'd write speed (`dd … conv=fsync` into
// the same directory) as the limit; and the resident memory of each server during a 1 GiB upload.
// Rounds are interleaved (every server, then dd, per round; the order rotates) so that all of them see
// the same load on a shared machine. Writes bench/results/s3.md.
//   npx tsx bench/s3.ts     (MALLEE_BENCH_S3_ROUNDS=3; MALLEE_BENCH_S3_PROFILE=1 runs Walrus under node --cpu-prof,
//   profiles in bench/tmp/profiles). bench/results/s3-notes.md (the analysis, by hand) is appended to the results.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingMessage } from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { signV4, UNSIGNED_PAYLOAD } from '@mallee/aws-protocol';
import { freePortBase, repoRoot, sleep } from '../test/e2e/helpers/cloud.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const rounds = Number(process.env.MALLEE_BENCH_S3_ROUNDS ?? 3);
const profile = process.env.MALLEE_BENCH_S3_PROFILE === '1';
const SMALL_OPS = 300;
const SMALL_CONCURRENCY = 8;
const MEDIUM_OPS = 24;
const KEY = { accessKeyId: 'BENCHKEY0000000000000', secretAccessKey: 'benchsecretbenchsecretbenchsecret0000000' };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Server {
  name: string;
  url: string;
  pid: number;
  region: string;
  key: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** One signed request; the body is a Buffer or a file streamed as UNSIGNED-PAYLOAD; the reply body is counted and dropped. */
function s3(srv: Server, method: string, path: string, body?: Buffer | { file: string; size: number }): Promise<{ status: number; bytes: number; text: string }> {
  const u = new URL(srv.url);
  const length = body === undefined ? 0 : Buffer.isBuffer(body) ? body.length : body.size;
  const headers = { host: u.host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD, 'content-length': String(length) };
  const signed = signV4({ method, path, headers, ...srv.key, region: srv.region, service: 's3', doubleEncodePath: false, payloadHash: UNSIGNED_PAYLOAD });
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: signed.headers, agent }, (res: IncomingMessage) => {
      let bytes = 0;
      const keep: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if ((res.statusCode ?? 0) >= 300 && keep.length < 8) keep.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, text: Buffer.concat(keep).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else pipeline(createReadStream(body.file, { highWaterMark: MiB }), req).catch(reject);
  });
}

async function ok(srv: Server, method: string, path: string, body?: Buffer | { file: string; size: number }, expectBytes?: number): Promise<void> {
  const r = await s3(srv, method, path, body);
  if (r.status >= 300) throw new Error(`${srv.name}: ${method} ${path} → ${r.status} ${r.text.slice(0, 300)}`);
  if (expectBytes !== undefined && r.bytes !== expectBytes) throw new Error(`${srv.name}: GET ${path} answered ${r.bytes} bytes, not ${expectBytes}`);
}

async function waitHttp(url: string, child: ChildProcess, name: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode})`);
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${name} did not answer at ${url}`);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([gone, sleep(10_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  };
}

async function startWalrus(dir: string, port: number): Promise<Server> {
  const home = join(dir, 'walrus-home');
  mkdirSync(home, { recursive: true });
  const creds = join(dir, 'walrus-keys.json');
  writeFileSync(creds, JSON.stringify({ [KEY.accessKeyId]: { secretAccessKey: KEY.secretAccessKey, accountId: '000000000001', accountName: 'bench' } }));
  const args = [...(profile ? ['--cpu-prof', '--cpu-prof-dir', join(repoRoot, 'bench', 'tmp', 'profiles')] : []), join(repoRoot, 'services/walrus/dist/src/main.js'), '--home', home, '--port', String(port)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, MALLEE_WALRUS_CREDENTIALS: creds, MALLEE_LOG_LEVEL: 'warn' } });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/_mallee/healthz`, child, 'walrus');
  return { name: 'Mallee Walrus', url, pid: child.pid!, region: 'mallee', key: KEY, stop: stopper(child) };
}

async function startS3rver(dir: string, port: number): Promise<Server> {
  const data = join(dir, 's3rver-data');
  mkdirSync(data, { recursive: true });
  const script = `import S3rver from 's3rver'; await new S3rver({ port: ${port}, address: '127.0.0.1', directory: ${JSON.stringify(data)}, silent: true, resetOnClose: false }).run();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(url, child, 's3rver');
  // s3rver knows one key pair, S3RVER/S3RVER, and checks signatures with it.
  return { name: `s3rver ${s3rverVersion()}`, url, pid: child.pid!, region: 'us-east-1', key: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, stop: stopper(child) };
}

async function startMoto(port: number): Promise<Server> {
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'ignore'] });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(url, child, 'moto_server');
  return { name: `moto_server ${motoVersion()}`, url, pid: child.pid!, region: 'us-east-1', key: KEY, stop: stopper(child) };
}

const s3rverVersion = () => (JSON.parse(readFileSync(join(repoRoot, 'node_modules/s3rver/package.json'), 'utf8')) as { version: string }).version;
function motoVersion(): string {
  try {
    return execFileSync('python3', ['-c', 'import moto; print(moto.__version__)'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

/** The server's process and its children (moto_server's shim execs python; s3rver runs in node). */
function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

interface Sample { putMBps: number[]; getMBps: number[]; putOps: number[]; getOps: number[]; putOps8: number[]; getOps8: number[]; putMBps1m: number[]; getMBps1m: number[] }
const newSample = (): Sample => ({ putMBps: [], getMBps: [], putOps: [], getOps: [], putOps8: [], getOps8: [], putMBps1m: [], getMBps1m: [] });

async function timed(f: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
}

async function pool(n: number, concurrency: number, f: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await f(next++);
  }));
}

async function oneRound(srv: Server, round: number, files: { big: string }, s: Sample): Promise<void> {
  const b = `bench-${round}`;
  await ok(srv, 'PUT', `/${b}`);
  const small = randomBytes(KiB);
  // 1 KiB, one at a time (latency-bound) and 8 at a time.
  s.putOps.push(SMALL_OPS / (await timed(() => pool(SMALL_OPS, 1, (i) => ok(srv, 'PUT', `/${b}/k1/${i}`, small)))));
  s.getOps.push(SMALL_OPS / (await timed(() => pool(SMALL_OPS, 1, (i) => ok(srv, 'GET', `/${b}/k1/${i}`, undefined, KiB)))));
  s.putOps8.push(SMALL_OPS / (await timed(() => pool(SMALL_OPS, SMALL_CONCURRENCY, (i) => ok(srv, 'PUT', `/${b}/k8/${i}`, small)))));
  s.getOps8.push(SMALL_OPS / (await timed(() => pool(SMALL_OPS, SMALL_CONCURRENCY, (i) => ok(srv, 'GET', `/${b}/k8/${i}`, undefined, KiB)))));
  // 1 MiB, one at a time.
  const medium = randomBytes(MiB);
  s.putMBps1m.push((MEDIUM_OPS * MiB) / 1e6 / (await timed(() => pool(MEDIUM_OPS, 1, (i) => ok(srv, 'PUT', `/${b}/m/${i}`, medium)))));
  s.getMBps1m.push((MEDIUM_OPS * MiB) / 1e6 / (await timed(() => pool(MEDIUM_OPS, 1, (i) => ok(srv, 'GET', `/${b}/m/${i}`, undefined, MiB)))));
  // 256 MiB, streamed from a file.
  s.putMBps.push((256 * MiB) / 1e6 / (await timed(() => ok(srv, 'PUT', `/${b}/big`, { file: files.big, size: 256 * MiB }))));
  s.getMBps.push((256 * MiB) / 1e6 / (await timed(() => ok(srv, 'GET', `/${b}/big`, undefined, 256 * MiB))));
  // Clean up, so rounds do not fill the disk.
  for (let i = 0; i < SMALL_OPS; i++) await ok(srv, 'DELETE', `/${b}/k1/${i}`).catch(() => undefined);
  for (let i = 0; i < SMALL_OPS; i++) await ok(srv, 'DELETE', `/${b}/k8/${i}`).catch(() => undefined);
  for (let i = 0; i < MEDIUM_OPS; i++) await ok(srv, 'DELETE', `/${b}/m/${i}`).catch(() => undefined);
  await ok(srv, 'DELETE', `/${b}/big`).catch(() => undefined);
  await ok(srv, 'DELETE', `/${b}`).catch(() => undefined);
}

function ddMBps(dir: string): number {
  const out = join(dir, 'dd.bin');
  const t = performance.now();
  execFileSync('dd', ['if=/dev/zero', `of=${out}`, 'bs=1M', 'count=256', 'conv=fsync'], { stdio: 'ignore' });
  const secs = (performance.now() - t) / 1000;
  rmSync(out, { force: true });
  return (256 * MiB) / 1e6 / secs;
}

/** Peak and baseline RSS of the server while it takes one 1 GiB PUT (streamed from a file). */
async function rssDuringUpload(srv: Server, file: string): Promise<{ beforeMiB: number; peakMiB: number; afterMiB: number; MBps: number }> {
  await ok(srv, 'PUT', '/rss');
  await sleep(500);
  const before = rssKiB(srv.pid);
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssKiB(srv.pid))), 50);
  const secs = await timed(() => ok(srv, 'PUT', '/rss/one-gib', { file, size: GiB }));
  clearInterval(timer);
  peak = Math.max(peak, rssKiB(srv.pid));
  const after = rssKiB(srv.pid);
  await ok(srv, 'DELETE', '/rss/one-gib').catch(() => undefined);
  await ok(srv, 'DELETE', '/rss').catch(() => undefined);
  return { beforeMiB: before / 1024, peakMiB: peak / 1024, afterMiB: after / 1024, MBps: GiB / 1e6 / secs };
}

function makeFile(path: string, bytes: number): void {
  // Random data (not zeros: nothing below may compress it), written in 16 MiB blocks.
  const block = randomBytes(16 * MiB);
  writeFileSync(path, '');
  for (let done = 0; done < bytes; done += block.length) writeFileSync(path, block.subarray(0, Math.min(block.length, bytes - done)), { flag: 'a' });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mallee-bench-s3-'));
  const started = new Date();
  const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
  const big = join(dir, 'big.bin');
  const gib = join(dir, 'gib.bin');
  makeFile(big, 256 * MiB);
  makeFile(gib, GiB);
  // Written back before anything is timed: dirty pages of these files would slow every fsync below.
  execFileSync('sync');
  const base = await freePortBase();
  const servers: Server[] = [];
  try {
    servers.push(await startWalrus(dir, base), await startS3rver(dir, base + 1), await startMoto(base + 2));
    const samples = new Map(servers.map((s) => [s.name, newSample()]));
    const dd: number[] = [];
    const loads: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const order = [...servers.slice(r % servers.length), ...servers.slice(0, r % servers.length)];
      for (const srv of order) {
        loads.push(loadavg()[0]!);
        process.stderr.write(`round ${r + 1}/${rounds}: ${srv.name} …\n`);
        await oneRound(srv, r, { big }, samples.get(srv.name)!);
      }
      dd.push(ddMBps(dir));
    }
    const rss = new Map<string, Awaited<ReturnType<typeof rssDuringUpload>>>();
    for (const srv of servers) {
      process.stderr.write(`1 GiB upload: ${srv.name} …\n`);
      rss.set(srv.name, await rssDuringUpload(srv, gib));
    }
    const uptimeAfter = execFileSync('uptime', { encoding: 'utf8' }).trim();
    writeResults({ started, uptimeBefore, uptimeAfter, loads, dir, servers, samples, dd, rss });
  } finally {
    for (const s of servers) await s.stop();
    agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function writeResults(o: {
  started: Date; uptimeBefore: string; uptimeAfter: string; loads: number[]; dir: string; servers: Server[];
  samples: Map<string, Sample>; dd: number[]; rss: Map<string, { beforeMiB: number; peakMiB: number; afterMiB: number; MBps: number }>;
}): void {
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
  const fs = execFileSync('df', ['-T', o.dir], { encoding: 'utf8' }).trim().split('\n')[1]!.split(/\s+/);
  const f1 = (x: number) => x.toFixed(0);
  const row = (name: string, s: Sample) =>
    `| ${name} | ${f1(median(s.putOps))} | ${f1(median(s.getOps))} | ${f1(median(s.putOps8))} | ${f1(median(s.getOps8))} | ${f1(median(s.putMBps1m))} | ${f1(median(s.getMBps1m))} | ${f1(median(s.putMBps))} | ${f1(median(s.getMBps))} |`;
  const spread = (xs: number[]) => `${f1(Math.min(...xs))}–${f1(Math.max(...xs))}`;
  const lines = [
    '# S3: Mallee Walrus vs s3rver vs moto_server',
    '',
    `Run by \`npx tsx bench/s3.ts\` (also in \`npm run bench\`) on ${o.started.toISOString()} at commit ${commit}, ${rounds} interleaved rounds (medians; each round runs every server once, the order rotating, then dd).`,
    '',
    `- Machine: ${cpus().length} CPUs (${cpus()[0]?.model.trim()}), ${(totalmem() / GiB).toFixed(1)} GiB RAM; Node ${process.version}.`,
    `- Disk: the servers' data, the benchmark's files and dd's output all in one directory on ${fs[0]} (${fs[1]}, ${(statfsSync(o.dir).blocks * statfsSync(o.dir).bsize / GiB).toFixed(0)} GiB); moto_server keeps objects in memory.`,
    `- Load: the machine is shared with other engineers' builds, tests and guests. \`uptime\` before: \`${o.uptimeBefore}\`; after: \`${o.uptimeAfter}\`;`,
    `  1-minute load average at the start of each server's round: ${o.loads.map((l) => l.toFixed(1)).join(', ')}. Absolute numbers are noisy; the interleaving gives all three the same load.`,
    '- Client: one SigV4 client (node:http, keep-alive, `UNSIGNED-PAYLOAD`, no Content-MD5) for all three, in its own process; GET bodies counted and dropped.',
    `- Servers: ${o.servers.map((s) => s.name).join(', ')}; Walrus standalone (\`services/walrus/dist/src/main.js\`, static keys, no clc), durable writes as always (temp file → fsync → rename → dir fsync → SQLite commit).`,
    '',
    `| server | PUT 1 KiB ops/s | GET 1 KiB ops/s | PUT 1 KiB ops/s, ${SMALL_CONCURRENCY} at once | GET 1 KiB ops/s, ${SMALL_CONCURRENCY} at once | PUT 1 MiB MB/s | GET 1 MiB MB/s | PUT 256 MiB MB/s | GET 256 MiB MB/s |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...o.servers.map((s) => row(s.name, o.samples.get(s.name)!)),
    `| \`dd bs=1M count=256 conv=fsync\` (the disk's limit for a durable write) | | | | | | | ${f1(median(o.dd))} | |`,
    '',
    `Spread over the rounds (min–max), PUT 256 MiB MB/s: ${o.servers.map((s) => `${s.name} ${spread(o.samples.get(s.name)!.putMBps)}`).join('; ')}; dd ${spread(o.dd)}.`,
    `1 KiB runs are ${SMALL_OPS} objects each; 1 MiB runs ${MEDIUM_OPS} objects.`,
    '',
    '## Memory during one 1 GiB upload (a single streamed PUT)',
    '',
    '| server | RSS before MiB | peak RSS MiB | RSS after MiB | MB/s |',
    '|---|---:|---:|---:|---:|',
    ...o.servers.map((s) => {
      const r = o.rss.get(s.name)!;
      return `| ${s.name} | ${f1(r.beforeMiB)} | ${f1(r.peakMiB)} | ${f1(r.afterMiB)} | ${f1(r.MBps)} |`;
    }),
    '',
    'RSS of the server process (`/proc/PID/status` VmRSS, sampled every 50 ms).',
    '',
  ];
  const notes = join(repoRoot, 'bench', 'results', 's3-notes.md');
  if (existsSync(notes)) lines.push(readFileSync(notes, 'utf8').trimEnd(), '');
  writeFileSync(join(repoRoot, 'bench', 'results', 's3.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
