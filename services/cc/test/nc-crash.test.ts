// kill -9 of a real nc process: its guests (simulated, persisted like libvirt domains) and launch
// records must bring back exactly the same instances. Runs the built daemon (services/nc/dist).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cc } from '@mallee/wire';
import { cleanup, specs, startCc, waitFor } from './harness.js';

const repo = fileURLToPath(new URL('../../..', import.meta.url));
const ncMain = join(repo, 'services/nc/dist/src/main.js');
const children = new Set<ChildProcess>();
const homes: string[] = [];

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  if (!existsSync(dir)) return newest;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith(ext)) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  // The daemon runs from its build; rebuild it when the sources are newer.
  if (!existsSync(ncMain) || newestMtime(join(repo, 'services/nc/dist/src'), '.js') < newestMtime(join(repo, 'services/nc/src'), '.ts')) {
    execFileSync('npx', ['tsc', '-b', 'services/nc'], { cwd: repo, stdio: 'pipe' });
  }
}, 120_000);

afterEach(async () => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  await cleanup();
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function spawnNc(home: string): Promise<{ child: ChildProcess; url: string }> {
  rmSync(join(home, 'run', 'nc.url'), { force: true });
  const child = spawn(process.execPath, [ncMain, '--home', home, '--conf', join(home, 'mallee.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  const url = await waitFor('nc.url', () => (existsSync(join(home, 'run', 'nc.url')) ? readFileSync(join(home, 'run', 'nc.url'), 'utf8').trim() : undefined), 20_000);
  return { child, url };
}

describe('node controller crash', () => {
  it('kill -9 of the nc with 3 instances running, restart: the same 3 instances, still running, no duplicates', async () => {
    const home = mkdtempSync(join(tmpdir(), 'mallee-nc-crash-'));
    homes.push(home);
    const port = await freePort();
    writeFileSync(join(home, 'mallee.conf'), `HYPERVISOR="simulated"\nNC_PORT="${port}"\nBIND_ADDRESS="127.0.0.1"\nSIM_BOOT_DELAY="100"\nLOG_LEVEL="warn"\n`);
    let nc = await spawnNc(home);
    const ccd = await startCc();
    await ccd.register({ name: 'node1', home, url: nc.url, stop: async () => {}, start: async () => {} });
    const batch = specs(3);
    await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 3 });
    await waitFor('running', async () => (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'running'));

    nc.child.kill('SIGKILL');
    await new Promise((r) => nc.child.once('exit', r));
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]!.state).toBe('NOTREADY');

    nc = await spawnNc(home);
    await ccd.pollNow();
    expect((await ccd.client.call(cc.DescribeNodes, {})).nodes[0]!.state).toBe('ENABLED');
    const after = (await ccd.client.call(cc.DescribeInstances, { instanceIds: [] })).instances;
    expect(after.map((i) => i.instanceId).sort()).toEqual(batch.map((s) => s.instanceId).sort());
    expect(after.every((i) => i.state === 'running' && i.ownerId === '000000000001')).toBe(true);
    // Retrying the launch after the crash starts nothing new.
    await ccd.client.call(cc.RunInstances, { instances: batch, minCount: 3 });
    expect((await ccd.client.call(cc.DescribeResources, { vmTypes: [] })).nodes[0]!.cores.available).toBe(1);
  });
});
