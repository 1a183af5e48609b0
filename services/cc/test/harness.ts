// A cluster on one host for tests: real NC daemons and a real CC, in-process on port 0 with temp
// homes, talking over the wire; a client that speaks to the cc as its clc.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type ConfigKey } from '@mallee/config';
import { WireClient, cc, generateKey, writeKeyFile, type InstanceSpec } from '@mallee/wire';
import { startDaemon as startNcDaemon, nodeKeyFile } from '@mallee/nc';
import { startDaemon as startCcDaemon, cloudKeyFile } from '../src/index.js';

type Overrides = Partial<Record<ConfigKey, string | number>>;

const homes: string[] = [];
const stoppers = new Set<() => Promise<void>>();

function tempHome(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  homes.push(dir);
  return dir;
}

function config(overrides: Overrides) {
  return loadConfig({ env: {}, overrides: { HYPERVISOR: 'simulated', LOG_LEVEL: 'silent', BIND_ADDRESS: '127.0.0.1', SIM_BOOT_DELAY: 100, POLL_INTERVAL: 0.2, ...overrides } });
}

export interface TestNc {
  name: string;
  home: string;
  url: string;
  stop(): Promise<void>;
  /** Start again on the same home and port (as a restarted host would come back). */
  start(): Promise<void>;
}

export async function startNc(name: string, overrides: Overrides = {}): Promise<TestNc> {
  const home = tempHome(`mallee-nc-${name}-`);
  const cfg = config(overrides);
  let daemon: Awaited<ReturnType<typeof startNcDaemon>> | undefined = await startNcDaemon({ home, config: cfg, port: 0, monitorIntervalMs: 200 });
  const port = Number(new URL(daemon.url).port);
  const stop = async () => {
    await daemon?.close();
    daemon = undefined;
  };
  stoppers.add(stop);
  return {
    name,
    home,
    url: daemon.url,
    stop,
    start: async () => {
      daemon = await startNcDaemon({ home, config: cfg, port, monitorIntervalMs: 200 });
    },
  };
}

export interface TestCc {
  url: string;
  /** The key the clc signs with (keys/cloud.key). */
  key: string;
  home: string;
  client: WireClient;
  pollNow(): Promise<void>;
  /** RegisterNode over the wire, then install the issued key in the nc's home (what `mallee register-nodes` does). */
  register(node: TestNc): Promise<void>;
  stop(): Promise<void>;
  /** Stop and start again on the same home and port. */
  restart(): Promise<void>;
}

export async function startCc(overrides: Overrides = {}, opts: { clcUrl?: string } = {}): Promise<TestCc> {
  const home = tempHome('mallee-cc-');
  const key = generateKey();
  writeKeyFile(cloudKeyFile(home), key);
  const cfg = config(overrides);
  let daemon = await startCcDaemon({ home, config: cfg, port: 0, ...opts });
  const port = Number(new URL(daemon.url).port);
  const stop = () => daemon.close();
  stoppers.add(stop);
  const client = new WireClient({ url: daemon.url, from: 'clc', key });
  return {
    url: daemon.url,
    key,
    home,
    client,
    pollNow: () => daemon.pollNow(),
    register: async (node) => {
      const res = await client.call(cc.RegisterNode, { node: node.name, url: node.url });
      writeKeyFile(nodeKeyFile(node.home), res.key);
      await daemon.pollNow();
    },
    stop,
    restart: async () => {
      await daemon.close();
      daemon = await startCcDaemon({ home, config: cfg, port, ...opts });
    },
  };
}

export async function cleanup(): Promise<void> {
  await Promise.all([...stoppers].map((s) => s()));
  stoppers.clear();
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
}

export const m1small = { name: 'm1.small', cores: 1, memoryMiB: 256, diskGiB: 5 };

export function specs(n: number, vmType = m1small): InstanceSpec[] {
  const reservationId = `r-${randomBytes(4).toString('hex')}`;
  return Array.from({ length: n }, (_, launchIndex) => ({
    instanceId: `i-${randomBytes(4).toString('hex')}`,
    reservationId,
    ownerId: '000000000001',
    launchIndex,
    imageId: 'emi-12345678',
    imageLocation: '',
    vmType,
    groupNames: ['default'],
  }));
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
