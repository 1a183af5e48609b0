// Benchmark (not a test): resident memory of each daemon at 10,000 instances (simulated hypervisor) and
// of Walrus at 100,000 objects, against moto_server holding the same. Writes bench/results/memory.md.
//   npm run bench -- memory      (MALLEE_BENCH_MEM_INSTANCES=10000, MALLEE_BENCH_MEM_OBJECTS=100000)
import { createHash } from 'node:crypto';
import { signV4 } from '@mallee/aws-protocol';
import { instancesOf } from '../test/e2e/helpers/ec2-client.js';
import { sleep } from '../test/e2e/helpers/cloud.js';
import { machineFacts, rssMiB, startMallee, startMoto, writeResult, type Ec2Target } from './lib.js';

const INSTANCES = Number(process.env.MALLEE_BENCH_MEM_INSTANCES ?? 10_000);
const OBJECTS = Number(process.env.MALLEE_BENCH_MEM_OBJECTS ?? 100_000);
const BATCH = 1000;
const mib = (x: number) => x.toFixed(0);

async function launch(t: Ec2Target, n: number): Promise<void> {
  for (let have = 0; have < n; have += BATCH) {
    const k = Math.min(BATCH, n - have);
    await t.client.ok('RunInstances', { ImageId: t.imageId, MinCount: k, MaxCount: k, InstanceType: t.instanceType });
  }
}

/** PUTs `n` 1 KiB objects with 16 parallel clients (SigV4, signed payload). */
async function fill(s3Url: string, creds: { accessKeyId: string; secretAccessKey: string }, region: string, n: number): Promise<number> {
  const sign = (method: string, path: string, body: Buffer) => {
    const u = new URL(path, s3Url);
    return { u, headers: signV4({ method, path: u.pathname, headers: { host: u.host, 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') }, body, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey, region, service: 's3', doubleEncodePath: false }).headers };
  };
  const b = sign('PUT', '/memory-bench', Buffer.alloc(0));
  const made = await fetch(b.u, { method: 'PUT', headers: b.headers });
  if (made.status !== 200) throw new Error(`CreateBucket ${made.status}: ${await made.text()}`);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < n) {
      const i = next++;
      const body = Buffer.alloc(1024, i & 0xff);
      const s = sign('PUT', `/memory-bench/dir${i % 100}/obj-${i}`, body);
      const r = await fetch(s.u, { method: 'PUT', headers: s.headers, body });
      if (r.status !== 200) throw new Error(`PutObject ${i}: ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
    }
  }));
  return (performance.now() - t0) / 1000;
}

const rows: string[] = [];
const mallee = await startMallee({ capacity: INSTANCES + 10 });
let notes = '';
try {
  const idle = mallee.pids();
  const before = Object.fromEntries(Object.entries(idle).map(([s, p]) => [s, rssMiB(p)]));
  const t0 = performance.now();
  await launch(mallee, INSTANCES);
  const loadS = (performance.now() - t0) / 1000;
  // Let every daemon see them (polls), then list once so the clc has built a full reply.
  await sleep(5000);
  const listed = instancesOf(await mallee.client.ok('DescribeInstances')).length;
  if (listed !== INSTANCES) throw new Error(`listed ${listed}, expected ${INSTANCES}`);
  await sleep(3000);
  for (const [s, p] of Object.entries(mallee.pids())) if (s !== 'walrus' && s !== 'sc') rows.push(`| Mallee ${s} | ${INSTANCES.toLocaleString('en')} instances | ${mib(before[s]!)} | ${mib(rssMiB(p))} |`);
  const fillS = await fill(mallee.env.S3_URL!, { accessKeyId: mallee.env.AWS_ACCESS_KEY_ID!, secretAccessKey: mallee.env.AWS_SECRET_ACCESS_KEY! }, mallee.env.AWS_DEFAULT_REGION!, OBJECTS);
  await sleep(3000);
  rows.push(`| Mallee walrus | ${OBJECTS.toLocaleString('en')} objects (1 KiB) | ${mib(before.walrus!)} | ${mib(rssMiB(mallee.pids().walrus!))} |`);
  notes += `- Mallee: launching ${INSTANCES.toLocaleString('en')} instances took ${loadS.toFixed(0)} s; ${OBJECTS.toLocaleString('en')} PUTs (16 clients) took ${fillS.toFixed(0)} s (${(OBJECTS / fillS).toFixed(0)} PUT/s)\n`;
} finally {
  await mallee.stop().catch(() => {});
}

const moto = await startMoto();
try {
  const before = rssMiB(moto.pid);
  const t0 = performance.now();
  await launch(moto, INSTANCES);
  const loadS = (performance.now() - t0) / 1000;
  const atInstances = rssMiB(moto.pid);
  rows.push(`| ${moto.name} (one process: EC2 and S3) | ${INSTANCES.toLocaleString('en')} instances | ${mib(before)} | ${mib(atInstances)} |`);
  notes += `- moto_server: launching took ${loadS.toFixed(0)} s\n`;
  try {
    const fillS = await fill(moto.url, { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench' }, 'us-east-1', OBJECTS);
    rows.push(`| ${moto.name} | + ${OBJECTS.toLocaleString('en')} objects (1 KiB) | ${mib(atInstances)} | ${mib(rssMiB(moto.pid))} |`);
    notes += `- moto_server: ${OBJECTS.toLocaleString('en')} PUTs took ${fillS.toFixed(0)} s (${(OBJECTS / fillS).toFixed(0)} PUT/s)\n`;
  } catch (err) {
    notes += `- moto_server's S3 could not be filled: ${(err as Error).message.slice(0, 200)}\n`;
  }
} finally {
  await moto.stop().catch(() => {});
}

writeResult('memory', `# Memory: RSS of each daemon at ${INSTANCES.toLocaleString('en')} instances and Walrus at ${OBJECTS.toLocaleString('en')} objects

${machineFacts('memory.ts')}
- Mallee: all-in-one, simulated hypervisor; RSS from /proc/<pid>/status (VmRSS) of each daemon process, idle and then
  with the instances launched (and polled), Walrus after the PUTs; moto_server keeps everything in one Python process

| process | holding | RSS idle MiB | RSS loaded MiB |
|---|---|---:|---:|
${rows.join('\n')}

${notes}`);
