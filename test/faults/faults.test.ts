// Fault injection: kill -9 of the clc, cc, nc (simulated) and Walrus at random points of a mixed
// workload (RunInstances, TerminateInstances, PutObject, DeleteObject) from parallel clients, each
// daemon restarted by `mallee up` as an operator would; then: no acknowledged object lost or changed,
// no instance duplicated or orphaned (the clc and the node agree), every resource reaches a final
// state. An NC that stops answering is NOTREADY with its instances kept, and recovers when it returns.
// Walrus on a full disk (a small tmpfs home) answers clean S3 errors and keeps what it had.
//
// Extension point: `FAULT_TARGETS` and `OPERATIONS` below are tables. The sc's volumes and snapshots
// and net's addresses and iptables rules join as one entry each (an operation with its bookkeeping,
// and a check of what the daemon reconciled against tgt/iptables) — see the README of test/faults.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signV4 } from '@mallee/aws-protocol';
import { nc, WireClient } from '@mallee/wire';
import { instancesOf, items } from '../e2e/helpers/ec2-client.js';
import { eventually, freePortBase, sleep, startCloud, type Cloud } from '../e2e/helpers/cloud.js';
import { registerTestImage } from '../e2e/helpers/images.js';

const OPS = Number(process.env.MALLEE_FAULT_OPS ?? 160);
const SEED = Number(process.env.MALLEE_FAULT_SEED ?? 8);

/** A small seeded PRNG (mulberry32): the same seed gives the same workload and kill points. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let cloud: Cloud;
let image: string;
const FAULT_TARGETS = ['clc', 'walrus', 'cc', 'nc'] as const;
type Target = (typeof FAULT_TARGETS)[number];

const pidOf = (svc: Target) => Number(readFileSync(join(cloud.home, 'run', `${svc}.pid`), 'utf8'));

// ---- S3 with SigV4 ---------------------------------------------------------------------------

async function s3(method: string, key: string, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  const url = new URL(`${cloud.env.S3_URL}/faults/${key}`);
  const payload = body ?? Buffer.alloc(0);
  const s = signV4({ method, path: url.pathname, headers: { host: url.host, 'x-amz-content-sha256': createHash('sha256').update(payload).digest('hex') }, body: payload, accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY!, region: cloud.region, service: 's3', doubleEncodePath: false });
  const res = await fetch(url, { method, headers: s.headers, ...(body ? { body } : {}), signal: AbortSignal.timeout(20_000) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

// ---- the workload ------------------------------------------------------------------------------

type Outcome = 'ack' | 'refused' | 'unknown';
interface KeyOp { kind: 'put' | 'delete'; content?: string; outcome: Outcome }
const keyHistory = new Map<string, KeyOp[]>();
interface Launch { token: string; outcome: Outcome; ids: string[] }
const launches: Launch[] = [];
const terminated = new Map<string, Outcome>();

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const outcomeOf = (status: number): Outcome => (status === 200 || status === 204 ? 'ack' : status >= 500 || status === 0 ? 'unknown' : 'refused');

const OPERATIONS = {
  async put(worker: number, r: () => number) {
    const key = `w${worker}/k${Math.floor(r() * 8)}`;
    const content = `${key} ${r().toString(36)} `.repeat(1 + Math.floor(r() * 2000));
    const op: KeyOp = { kind: 'put', content: md5(content), outcome: 'unknown' };
    (keyHistory.get(key) ?? keyHistory.set(key, []).get(key)!).push(op);
    op.outcome = await s3('PUT', key, Buffer.from(content)).then((x) => outcomeOf(x.status), () => 'unknown' as const);
  },
  async delete(worker: number, r: () => number) {
    const key = `w${worker}/k${Math.floor(r() * 8)}`;
    const op: KeyOp = { kind: 'delete', outcome: 'unknown' };
    (keyHistory.get(key) ?? keyHistory.set(key, []).get(key)!).push(op);
    op.outcome = await s3('DELETE', key).then((x) => outcomeOf(x.status), () => 'unknown' as const);
  },
  async run(worker: number, r: () => number) {
    const launch: Launch = { token: `faults-${SEED}-${worker}-${r().toString(36).slice(2)}`, outcome: 'unknown', ids: [] };
    launches.push(launch);
    try {
      const res = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 + Math.floor(r() * 2), ClientToken: launch.token });
      launch.outcome = outcomeOf(res.status);
      if (res.status === 200) launch.ids = items(res.xml.instancesSet).map((i) => String(i.instanceId));
    } catch {
      launch.outcome = 'unknown';
    }
  },
  async terminate(_worker: number, r: () => number) {
    const known = launches.flatMap((l) => l.ids).filter((id) => !terminated.has(id));
    if (!known.length) return;
    const id = known[Math.floor(r() * known.length)]!;
    terminated.set(id, 'unknown');
    try {
      const res = await cloud.client.call('TerminateInstances', { 'InstanceId.1': id });
      terminated.set(id, outcomeOf(res.status));
    } catch {
      terminated.set(id, 'unknown');
    }
  },
};
const MIX: [keyof typeof OPERATIONS, number][] = [['put', 35], ['delete', 15], ['run', 30], ['terminate', 20]];

function pick(r: () => number): keyof typeof OPERATIONS {
  let x = r() * 100;
  for (const [op, w] of MIX) if ((x -= w) < 0) return op;
  return 'put';
}

beforeAll(async () => {
  cloud = await startCloud({ conf: { SIM_CORES: 512, SIM_MEM: 512 * 1024, SIM_DISK: 512 * 20 } });
  image = await registerTestImage(cloud, 'faults-images/img.manifest.xml', 'faults');
  const bucket = new URL(`${cloud.env.S3_URL}/faults`);
  const s = signV4({ method: 'PUT', path: bucket.pathname, headers: { host: bucket.host, 'x-amz-content-sha256': createHash('sha256').update('').digest('hex') }, accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY!, region: cloud.region, service: 's3', doubleEncodePath: false });
  expect((await fetch(bucket, { method: 'PUT', headers: s.headers })).status).toBe(200);
}, 180_000);
afterAll(async () => {
  await cloud?.stop();
});

describe('kill -9 during a mixed workload', () => {
  const kills: string[] = [];

  it(`${OPS} operations from 4 clients while each daemon is killed at random points and restarted`, async () => {
    const r = rng(SEED);
    let next = 0;
    const plan = Array.from({ length: OPS }, () => ({ op: pick(r), seed: Math.floor(r() * 2 ** 31) }));
    // Kill points: each target once, at seeded positions in the workload, plus one more random one.
    const killAt = new Map<number, Target>();
    for (const t of [...FAULT_TARGETS, FAULT_TARGETS[Math.floor(r() * FAULT_TARGETS.length)]!]) {
      let at: number;
      do at = 10 + Math.floor(r() * (OPS - 20)); while (killAt.has(at));
      killAt.set(at, t);
    }
    let restarting: Promise<void> = Promise.resolve();
    const worker = async (w: number) => {
      while (next < plan.length) {
        const i = next++;
        const target = killAt.get(i);
        if (target) {
          // Kill now, while the other clients' requests are in flight; restart a moment later.
          const pid = pidOf(target);
          process.kill(pid, 'SIGKILL');
          kills.push(`${target}@${i}`);
          restarting = restarting.then(async () => {
            await sleep(300 + Math.floor(r() * 1500));
            await cloud.mallee(['up', '--detach']);
          });
        }
        const p = plan[i]!;
        await OPERATIONS[p.op](w, rng(p.seed));
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    await restarting;
    await cloud.mallee(['up', '--detach']);
    expect(kills).toHaveLength(FAULT_TARGETS.length + 1);
    const acked = launches.filter((l) => l.outcome === 'ack').length;
    console.log(`kills: ${kills.join(', ')}; launches acknowledged ${acked}/${launches.length}; S3 ops acknowledged ${[...keyHistory.values()].flat().filter((o) => o.outcome === 'ack').length}/${[...keyHistory.values()].flat().length}`);
    expect(acked).toBeGreaterThan(0);
  }, 600_000);

  it('no acknowledged object was lost or changed; unacknowledged writes left one of the attempted states', async () => {
    for (const [key, history] of keyHistory) {
      const lastAck = history.map((o) => o.outcome).lastIndexOf('ack');
      // Final states allowed: after the last acknowledged op, or after any later op whose outcome is unknown.
      const allowed = new Set<string>();
      const state = (o: KeyOp) => (o.kind === 'delete' ? 'absent' : o.content!);
      if (lastAck >= 0) allowed.add(state(history[lastAck]!));
      else allowed.add('absent');
      for (const o of history.slice(lastAck + 1)) if (o.outcome === 'unknown') allowed.add(state(o));
      const got = await s3('GET', key);
      const actual = got.status === 404 ? 'absent' : got.status === 200 ? md5(got.body) : `status ${got.status}`;
      if (lastAck < 0 && actual !== 'absent' && history.some((o) => o.content === actual)) continue;
      expect(allowed, `${key}: ${history.map((o) => `${o.kind}:${o.outcome}`).join(' ')}`).toContain(actual);
    }
  });

  it('no instance duplicated: an unacknowledged launch retried with its ClientToken is the same launch', async () => {
    for (const l of launches.filter((x) => x.outcome !== 'ack')) {
      const res = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ClientToken: l.token });
      if (res.status === 200) l.ids = items(res.xml.instancesSet).map((i) => String(i.instanceId));
      else expect([res.status, res.code], res.body).toEqual([400, 'InvalidParameterValue']); // the launch failed: nothing exists
    }
    const all = instancesOf(await cloud.client.ok('DescribeInstances'));
    const seen = new Map<string, number>();
    for (const i of all) seen.set(i.instanceId, (seen.get(i.instanceId) ?? 0) + 1);
    expect([...seen].filter(([, n]) => n > 1)).toEqual([]);
    const launched = new Set(launches.flatMap((l) => l.ids));
    for (const l of launches.filter((x) => x.outcome === 'ack')) for (const id of l.ids) expect(seen.get(id), `${id} (acknowledged) listed once`).toBe(1);
    // Nothing exists that no launch accounts for.
    expect(all.map((i) => i.instanceId).filter((id) => !launched.has(id))).toEqual([]);
  });

  it('every instance reaches a final state, acknowledged terminations are terminated, and the node runs exactly what the clc says', async () => {
    const settled = await eventually('every instance running or terminated', async () => {
      const all = instancesOf(await cloud.client.ok('DescribeInstances'));
      return all.every((i) => i.state === 'running' || i.state === 'terminated') ? all : undefined;
    }, 180_000);
    for (const [id, outcome] of terminated) if (outcome === 'ack') expect(settled.find((i) => i.instanceId === id)?.state, id).toBe('terminated');
    const node = new WireClient({ url: readFileSync(join(cloud.home, 'run', 'nc.url'), 'utf8').trim(), from: 'cc', key: readFileSync(join(cloud.home, 'keys', 'node.key'), 'utf8').trim() });
    await eventually('the node and the clc agree on what runs', async () => {
      const onNode = new Set((await node.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.filter((i) => i.state !== 'terminated' && i.state !== 'shutting-down').map((i) => i.instanceId));
      const running = new Set(instancesOf(await cloud.client.ok('DescribeInstances')).filter((i) => i.state === 'running').map((i) => i.instanceId));
      const orphans = [...onNode].filter((id) => !running.has(id));
      const missing = [...running].filter((id) => !onNode.has(id));
      return orphans.length === 0 && missing.length === 0 ? true : undefined;
    }, 120_000);
    // And all of it can be ended: terminate what runs, everything reaches terminated.
    const running = settled.filter((i) => i.state === 'running').map((i) => i.instanceId);
    for (let i = 0; i < running.length; i += 50) {
      await cloud.client.ok('TerminateInstances', Object.fromEntries(running.slice(i, i + 50).map((id, j) => [`InstanceId.${j + 1}`, id])));
    }
    await eventually('every instance terminated', async () => (instancesOf(await cloud.client.ok('DescribeInstances')).every((i) => i.state === 'terminated') ? true : undefined), 120_000);
  });
});

describe('an NC that stops answering', () => {
  it('is NOTREADY with its instances kept as last known, and is ENABLED with them running when it returns', async () => {
    const run = await cloud.client.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2 });
    const ids = items(run.instancesSet).map((i) => String(i.instanceId));
    await eventually('running', async () => (instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! })).every((i) => i.state === 'running') ? true : undefined), 60_000);
    process.kill(pidOf('nc'), 'SIGKILL');
    const nodeState = async () => {
      const { stdout } = await cloud.mallee(['describe-services', '--output', 'json']);
      const services = JSON.parse(stdout) as { services?: { type?: string; name?: string; state?: string }[] } | { type?: string; state?: string }[];
      const list = Array.isArray(services) ? services : services.services ?? [];
      return list.find((s) => s.type === 'nc')?.state;
    };
    await eventually('node NOTREADY', async () => ((await nodeState()) === 'NOTREADY' ? true : undefined), 60_000);
    // The instances are still there, as last known: not lost, not terminated.
    const during = instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! }));
    expect(during.map((i) => i.state)).toEqual(['running', 'running']);
    await cloud.mallee(['up', '--detach']);
    await eventually('node ENABLED again', async () => ((await nodeState()) === 'ENABLED' ? true : undefined), 60_000);
    const after = instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! }));
    expect(after.map((i) => i.state)).toEqual(['running', 'running']);
    await cloud.client.ok('TerminateInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! });
  });
});

// ---- Walrus on a full disk ---------------------------------------------------------------------

describe('Walrus on a full disk', () => {
  let dir: string;
  let mounted = false;
  let stop: (() => void) | undefined;
  let url: string;
  const key = { accessKeyId: 'AKIAFAULTS0000000001', secretAccessKey: 'faults/secret/key/000000000000000000000' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mallee-faults-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'mallee-faults', dir]);
    mounted = true;
    const home = join(dir, 'home');
    mkdirSync(home);
    const creds = join(tmpdir(), `mallee-faults-creds-${process.pid}.json`);
    writeFileSync(creds, JSON.stringify({ [key.accessKeyId]: { secretAccessKey: key.secretAccessKey, accountId: '100000000099', accountName: 'faults' } }));
    const { spawn } = await import('node:child_process');
    const repo = new URL('../../', import.meta.url).pathname;
    const child = spawn(process.execPath, [join(repo, 'services/walrus/dist/src/main.js'), '--home', home], { env: { ...process.env, MALLEE_WALRUS_CREDENTIALS: creds, MALLEE_WALRUS_PORT: String(await freePortBase()), MALLEE_BIND_ADDRESS: '127.0.0.1', MALLEE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    stop = () => child.kill('SIGKILL');
    url = await eventually('walrus on tmpfs listening', async () => {
      try {
        return readFileSync(join(home, 'run', 'walrus.url'), 'utf8').trim() || undefined;
      } catch {
        if (child.exitCode !== null) throw new Error(`walrus exited: ${stderr}`);
        return undefined;
      }
    }, 30_000);
  }, 60_000);
  afterAll(() => {
    stop?.();
    if (mounted) execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  const put = async (path: string, body: Buffer) => {
    const u = new URL(path, url);
    const s = signV4({ method: 'PUT', path: u.pathname, headers: { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
    const res = await fetch(u, { method: 'PUT', headers: s.headers, body });
    return { status: res.status, body: await res.text() };
  };
  const req = async (method: string, path: string) => {
    const u = new URL(path, url);
    const s = signV4({ method, path: u.pathname, headers: { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
    const res = await fetch(u, { method, headers: s.headers });
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  };

  it('uploads past the free space fail with InsufficientStorage (507), keep every acknowledged object, leave no partial file, and work again once space is freed', async () => {
    expect((await put('/full', Buffer.alloc(0))).status).toBe(200);
    const stored = new Map<string, string>();
    let refusal: { status: number; body: string } | undefined;
    for (let i = 0; i < 40 && !refusal; i++) {
      const body = Buffer.alloc(2 * 1024 * 1024, i);
      const r = await put(`/full/obj-${i}`, body);
      if (r.status === 200) stored.set(`obj-${i}`, md5(body));
      else refusal = r;
    }
    expect(refusal, 'the tmpfs filled up').toBeDefined();
    expect(refusal!.status).toBe(507);
    expect(refusal!.body).toMatch(/<Code>InsufficientStorage<\/Code>/);
    expect(stored.size).toBeGreaterThan(2);
    // No partial object, and no temp file left behind.
    const tmpFiles = readdirSync(join(dir, 'home', 'walrus', 'tmp'));
    expect(tmpFiles).toEqual([]);
    for (const [k, sum] of stored) {
      const g = await req('GET', `/full/${k}`);
      expect([g.status, md5(g.body)], k).toEqual([200, sum]);
    }
    // Free space, and uploads work again.
    for (const k of [...stored.keys()].slice(0, 3)) expect((await req('DELETE', `/full/${k}`)).status).toBe(204);
    expect((await put('/full/after', Buffer.alloc(1024 * 1024, 7))).status).toBe(200);
  });
});
