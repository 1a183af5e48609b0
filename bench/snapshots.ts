// Benchmark (not a test): EBS snapshots into Walrus against their limit in the same run (hot-plug
// latency is bench/attach.ts). Writes bench/results/snapshots.md.
//   1. Full snapshot of a 1 GiB volume filled with random data, and an incremental one after 1% of it
//      changed (CreateSnapshot → completed, real clc + sc + Walrus), vs `cp` of the backing file to the
//      same disk (the most a copy of those bytes can cost) and `cp --sparse=always` (the cut itself).
//   npm run bench:snapshots      (MALLEE_BENCH_SNAPSHOT_RUNS=3)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { items } from '../test/e2e/helpers/ec2-client.js';
import { repoRoot, startCloud, type Cloud } from '../test/e2e/helpers/cloud.js';
import { until } from './lib.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const snapshotRuns = Number(process.env.MALLEE_BENCH_SNAPSHOT_RUNS ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const rate = (bytes: number, ms: number) => `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;

function timeCmd(cmd: string, args: string[]): number {
  const t = performance.now();
  execFileSync(cmd, args);
  return performance.now() - t;
}

async function snapshotSeconds(cloud: Cloud, volumeId: string): Promise<{ ms: number; snapshotId: string }> {
  const t = performance.now();
  const snapshotId = String((await cloud.client.ok('CreateSnapshot', { VolumeId: volumeId })).snapshotId);
  await until(`${snapshotId} completed`, async () => {
    const s = items((await cloud.client.ok('DescribeSnapshots', { 'SnapshotId.1': snapshotId })).snapshotSet)[0]!;
    if (s.status === 'error') throw new Error(`${snapshotId} failed`);
    return s.status === 'completed' ? true : undefined;
  }, 600_000, 25);
  return { ms: performance.now() - t, snapshotId };
}

async function scMetric(cloud: Cloud, name: string): Promise<number> {
  const url = readFileSync(join(cloud.home, 'run', 'sc.url'), 'utf8').trim();
  const text = await (await fetch(new URL('/metrics', url))).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

async function benchSnapshots(): Promise<string[]> {
  const cloud = await startCloud({ conf: { LOG_LEVEL: 'warn' } });
  try {
    const rows: string[] = [];
    const full: number[] = [];
    const incr: number[] = [];
    const cp: number[] = [];
    const cut: number[] = [];
    const cutIncr: number[] = [];
    let incrUploaded = 0;
    for (let run = 0; run < snapshotRuns; run++) {
      const vol = String((await cloud.client.ok('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' })).volumeId);
      await until('volume available', async () => (JSON.stringify(await cloud.client.ok('DescribeVolumes', { 'VolumeId.1': vol })).includes('"status":"available"') ? true : undefined));
      const file = join(cloud.home, 'sc', 'volumes', `${vol}.img`);
      // Fill the volume as a guest would have: 1 GiB of random data (no chunk is zero or repeated).
      const fd = openSync(file, 'r+');
      for (let off = 0; off < GiB; off += 16 * MiB) writeSync(fd, randomBytes(16 * MiB), 0, 16 * MiB, off);
      closeSync(fd);
      execFileSync('sync');
      const copy = join(cloud.home, 'bench-copy.img');
      cp.push(timeCmd('cp', [file, copy]));
      rmSync(copy);
      cut.push(timeCmd('cp', ['--sparse=always', '--reflink=auto', file, copy]));
      rmSync(copy);
      const f = await snapshotSeconds(cloud, vol);
      full.push(f.ms);
      // Change 1% (10.24 MiB, contiguous) and snapshot again: only those chunks go to Walrus.
      const fd2 = openSync(file, 'r+');
      writeSync(fd2, randomBytes(Math.ceil(GiB / 100)), 0, Math.ceil(GiB / 100), 512 * MiB);
      closeSync(fd2);
      const before = await scMetric(cloud, 'mallee_sc_chunk_bytes');
      const i = await snapshotSeconds(cloud, vol);
      incr.push(i.ms);
      cutIncr.push(await scMetric(cloud, 'mallee_sc_last_cut_ms'));
      incrUploaded = (await scMetric(cloud, 'mallee_sc_chunk_bytes')) - before;
      for (const s of [i.snapshotId, f.snapshotId]) await cloud.client.ok('DeleteSnapshot', { SnapshotId: s });
      await cloud.client.ok('DeleteVolume', { VolumeId: vol });
    }
    rows.push(
      '| what (1 GiB volume, random data) | median time | throughput |',
      '|---|---|---|',
      `| \`cp\` of the backing file to the same disk (the limit) | ${fmt(median(cp))} | ${rate(GiB, median(cp))} |`,
      `| \`cp --sparse=always --reflink=auto\` (the cut the sc takes while guest I/O is held) | ${fmt(median(cut))} | ${rate(GiB, median(cut))} |`,
      `| Mallee full snapshot (CreateSnapshot → completed: cut, SHA-256 of 1,024 chunks, 1 GiB into Walrus) | ${fmt(median(full))} | ${rate(GiB, median(full))} |`,
      `| Mallee incremental snapshot after 1% changed (cut, hash everything, upload ${(incrUploaded / MiB).toFixed(1)} MiB) | ${fmt(median(incr))} | ${rate(GiB, median(incr))} of volume |`,
      '',
      `The incremental snapshot's cut took ${fmt(median(cutIncr))} (sc metric mallee_sc_last_cut_ms): that is how long an attached guest's I/O is held; the upload runs after the thaw.`,
    );
    return rows;
  } finally {
    await cloud.stop();
  }
}

const loadBefore = loadavg()[0]!;
const snap = await benchSnapshots();
const out = [
  '# EBS snapshots',
  '',
  `Run ${new Date().toISOString()} by \`npm run bench:snapshots\` (bench/snapshots.ts) on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / GiB)} GiB,`,
  `volumes on ${execFileSync('df', ['--output=fstype', join(repoRoot)], { encoding: 'utf8' }).split('\n')[1]?.trim()} (no reflink), chunks of 1 MiB (SC_CHUNK_MB default), Walrus on the same disk; ${snapshotRuns} runs each.`,
  `Load average (1 min) ${loadBefore.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end: on a shared machine the absolute numbers move; the rows of one table ran side by side.`,
  '',
  '## Snapshot throughput',
  '',
  ...snap,
  '',
  'AttachVolume → device visible in the guest: bench/attach.ts, results in attach.md.',
  '',
];
mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
writeFileSync(join(repoRoot, 'bench', 'results', 'snapshots.md'), out.join('\n'));
console.log(out.join('\n'));
