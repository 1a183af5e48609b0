// The Node Controller over the wire with the libvirt driver and real TCG guests: what the cc sees.
// Skipped only where libvirtd, QEMU or the bindings are genuinely absent.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WireClient, generateKey, nc, writeKeyFile, type InstanceSpec } from '@mallee/wire';
import { nodeKeyFile } from '../src/index.js';
import { LibvirtConnection } from '../src/hypervisors/libvirt-connection.js';
import { buildTestImages, ensureLibvirtd, imagesOut, repo, whyLibvirtUnavailable } from './libvirt-env.js';
import { startNode, waitFor, cleanup } from './harness.js';

const ncMain = join(repo, 'services/nc/dist/src/main.js');

const skipReason = await whyLibvirtUnavailable();
if (skipReason) console.warn(`libvirt NC tests skipped: ${skipReason}`);

const guests = new Set<string>();
const homes: string[] = [];
const children: ChildProcess[] = [];

function libvirtHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'mallee-nc-libvirt-'));
  homes.push(home);
  mkdirSync(join(home, 'images'));
  symlinkSync(join(imagesOut, 'root.img'), join(home, 'images', 'emi-tst00001'));
  symlinkSync(join(imagesOut, 'vmlinuz'), join(home, 'images', 'eki-tst00001'));
  symlinkSync(join(imagesOut, 'initrd.img'), join(home, 'images', 'eri-tst00001'));
  return home;
}

function spec(memoryMiB = 256): InstanceSpec {
  const instanceId = `i-${randomBytes(4).toString('hex')}`;
  guests.add(instanceId);
  return {
    instanceId,
    reservationId: `r-${randomBytes(4).toString('hex')}`,
    ownerId: '000000000001',
    launchIndex: 0,
    imageId: 'emi-tst00001',
    imageLocation: '',
    kernelId: 'eki-tst00001',
    ramdiskId: 'eri-tst00001',
    vmType: { name: 'm1.small', cores: 1, memoryMiB, diskGiB: 1 },
    groupNames: ['default'],
  };
}

const consoleText = async (client: WireClient, instanceId: string) =>
  Buffer.from((await client.call(nc.ncGetConsoleOutput, { instanceId })).output, 'base64').toString('latin1');

/** A port nothing listens on now (the nc CLI wants a real one; it writes the URL it got to run/nc.url). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Wait until the node reports `state` for the instance; on timeout say what it last reported. */
async function waitState(client: WireClient, instanceId: string, state: string, timeoutMs: number): Promise<void> {
  let last: unknown;
  try {
    await waitFor(`${instanceId} ${state}`, async () => {
      last = (await client.call(nc.ncDescribeInstances, { instanceIds: [instanceId] })).instances[0];
      return (last as { state?: string } | undefined)?.state === state;
    }, timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}; the node last reported ${JSON.stringify(last)}`);
  }
}

const markers = (text: string, id: string) => text.split(`mallee: boot done ${id}`).length - 1;

const libvirtOverrides = (home: string) => ({ HYPERVISOR: 'qemu', INSTANCE_PATH: join(home, 'instances'), MAX_CORES: 8 });

describe.skipIf(skipReason !== undefined)('node controller with the libvirt driver (real TCG guests)', () => {
  beforeAll(async () => {
    await ensureLibvirtd();
    await buildTestImages();
  }, 660_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await cleanup();
    const conn = new LibvirtConnection('qemu:///system');
    await conn.open().catch(() => undefined);
    for (const id of guests) {
      await conn.destroy(id).catch(() => undefined);
      await conn.undefine(id).catch(() => undefined);
    }
    await conn.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  }, 120_000);

  it('ncRunInstance boots a real guest: running, console shows its id, reboot shows it twice, terminate removes it', async () => {
    const home = libvirtHome();
    const node = await startNode(libvirtOverrides(home), { home });
    const res = await node.client.call(nc.ncDescribeResource, {});
    expect(res.hypervisor).toBe('libvirt/qemu');
    // User-mode networking is restricted: the guest's connection to the host's loopback through slirp's
    // gateway (10.0.2.2, which unrestricted slirp maps to 127.0.0.1) never arrives, nor anything else.
    const connections: string[] = [];
    const listener = createServer((sock) => { connections.push(String(sock.remoteAddress)); sock.end('HTTP/1.0 200 OK\r\n\r\nreached\n'); });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const hostPort = (listener.address() as { port: number }).port;
    const probe = `#!/bin/sh\nsleep 1\nif timeout 5 wget -q -O - http://10.0.2.2:${hostPort}/ >/dev/null 2>&1; then echo "mallee-probe: host reached"; else echo "mallee-probe: host unreachable"; fi\n`;
    const s = { ...spec(), userData: Buffer.from(probe).toString('base64') };
    const t0 = Date.now();
    await node.client.call(nc.ncRunInstance, s);
    await waitState(node.client, s.instanceId, 'running', 60_000);
    await waitFor('boot-done marker', async () => markers(await consoleText(node.client, s.instanceId), s.instanceId) === 1, 90_000);
    console.info(`nc + libvirt/qemu: ncRunInstance → boot-done marker on ncGetConsoleOutput in ${Date.now() - t0} ms`);
    const verdict = await waitFor('the network probe', async () => /mallee-probe: host (reached|unreachable)/.exec(await consoleText(node.client, s.instanceId))?.[1], 60_000);
    listener.close();
    expect({ verdict, connections }).toEqual({ verdict: 'unreachable', connections: [] });

    await node.client.call(nc.ncRebootInstance, { instanceId: s.instanceId });
    // Both boots' markers in the last 64 KiB the NC returns (kernel messages included, ~25 KB a boot).
    await waitFor('second marker', async () => markers(await consoleText(node.client, s.instanceId), s.instanceId) === 2, 90_000);

    await node.client.call(nc.ncTerminateInstance, { instanceId: s.instanceId, force: false });
    await waitState(node.client, s.instanceId, 'terminated', 60_000);
    expect(existsSync(join(home, 'instances', s.instanceId))).toBe(false);
    const conn = new LibvirtConnection('qemu:///system');
    await conn.open();
    expect(await conn.domainState(s.instanceId)).toBeUndefined();
    await conn.close();
  }, 300_000);

  it('kill -9 of the nc with 3 guests running, then restart: the same 3 instances, no duplicates, still running', async () => {
    if (!existsSync(join(repo, 'services/nc/dist/src/hypervisors/libvirt.js'))) throw new Error('build first: npx tsc -b services/nc');
    const home = libvirtHome();
    const key = generateKey();
    writeKeyFile(nodeKeyFile(home), key);
    const conf = join(home, 'mallee.conf');
    writeFileSync(conf, Object.entries({ ...libvirtOverrides(home), NC_PORT: await freePort(), BIND_ADDRESS: '127.0.0.1', LOG_LEVEL: 'warn', MALLEE_HOME: home }).map(([k, v]) => `${k}="${v}"`).join('\n') + '\n');

    const startNc = async (): Promise<{ proc: ChildProcess; client: WireClient }> => {
      rmSync(join(home, 'run', 'nc.url'), { force: true });
      const proc = spawn(process.execPath, [ncMain, '--home', home, '--conf', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
      children.push(proc);
      const url = await waitFor('nc.url', () => (existsSync(join(home, 'run', 'nc.url')) ? readFileSync(join(home, 'run', 'nc.url'), 'utf8').trim() || undefined : undefined), 30_000);
      // The nc listens at once and answers NodeStarting until libvirtd is connected and its guests recovered.
      await waitFor('nc ready', async () => ((await (await fetch(new URL('/healthz', url))).json()) as { status: string }).status === 'ok', 60_000);
      return { proc, client: new WireClient({ url, from: 'cc', key }) };
    };

    const first = await startNc();
    const specs = [spec(), spec(), spec()];
    for (const s of specs) await first.client.call(nc.ncRunInstance, s);
    for (const s of specs) await waitFor(`boot of ${s.instanceId}`, async () => markers(await consoleText(first.client, s.instanceId), s.instanceId) >= 1, 120_000);
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));

    const second = await startNc();
    const { instances } = await second.client.call(nc.ncDescribeInstances, { instanceIds: [] });
    expect(instances.map((i) => i.instanceId).sort()).toEqual(specs.map((s) => s.instanceId).sort());
    expect(instances.map((i) => [i.state, i.stateReason ?? '', i.reservationId !== ''])).toEqual(specs.map(() => ['running', '', true]));
    // A cc retrying a launch after the restart gets the same guest, not a fourth one.
    await second.client.call(nc.ncRunInstance, specs[0]!);
    const conn = new LibvirtConnection('qemu:///system');
    await conn.open();
    const ours = (await conn.listDomains()).filter((d) => specs.some((s) => s.instanceId === d.name));
    expect(ours).toHaveLength(3);
    for (const s of specs) await second.client.call(nc.ncTerminateInstance, { instanceId: s.instanceId, force: true });
    await waitFor('all terminated', async () => (await second.client.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.every((i) => i.state === 'terminated'), 60_000);
    for (const s of specs) expect(await conn.domainState(s.instanceId)).toBeUndefined();
    await conn.close();
    second.proc.kill('SIGTERM');
    await new Promise((r) => second.proc.once('exit', r));
  }, 420_000);
});
