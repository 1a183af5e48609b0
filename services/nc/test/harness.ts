// Starts real NC daemons in-process on port 0 with temp homes, and a wire client speaking as their cc.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type ConfigKey } from '@mallee/config';
import { WireClient, generateKey, writeKeyFile } from '@mallee/wire';
import { startDaemon, nodeKeyFile, type StartOptions } from '../src/index.js';

export interface TestNode {
  home: string;
  url: string;
  key: string;
  client: WireClient;
  stop(): Promise<void>;
  /** Stop and start again on the same home (and a new port). */
  restart(): Promise<void>;
}

const homes: string[] = [];
const running = new Set<TestNode>();

export function tempHome(prefix = 'mallee-nc-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  homes.push(dir);
  return dir;
}

export function testConfig(overrides: Partial<Record<ConfigKey, string | number>> = {}) {
  return loadConfig({ env: {}, overrides: { HYPERVISOR: 'simulated', LOG_LEVEL: process.env.NC_TEST_LOG_LEVEL ?? 'silent', BIND_ADDRESS: '127.0.0.1', SIM_BOOT_DELAY: 100, ...overrides } });
}

export async function startNode(
  overrides: Partial<Record<ConfigKey, string | number>> = {},
  extra: Partial<StartOptions> & { home?: string; installKey?: boolean } = {},
): Promise<TestNode> {
  const home = extra.home ?? tempHome();
  const config = testConfig(overrides);
  const key = generateKey();
  if (extra.installKey !== false) writeKeyFile(nodeKeyFile(home), key);
  let daemon = await startDaemon({ home, config, port: 0, monitorIntervalMs: 200, ...extra });
  const node: TestNode = {
    home,
    url: daemon.url,
    key,
    client: new WireClient({ url: daemon.url, from: 'cc', key }),
    stop: async () => {
      running.delete(node);
      await daemon.close();
    },
    restart: async () => {
      await daemon.close();
      daemon = await startDaemon({ home, config, port: 0, monitorIntervalMs: 200, ...extra });
      node.url = daemon.url;
      node.client = new WireClient({ url: daemon.url, from: 'cc', key });
      running.add(node);
    },
  };
  running.add(node);
  return node;
}

export async function cleanup(): Promise<void> {
  await Promise.all([...running].map((n) => n.stop()));
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function spec(overrides: { instanceId?: string; cores?: number; memoryMiB?: number; diskGiB?: number; name?: string } = {}) {
  const instanceId = overrides.instanceId ?? `i-${randomBytes(4).toString('hex')}`;
  return {
    instanceId,
    reservationId: 'r-0badcafe',
    ownerId: '000000000001',
    launchIndex: 0,
    imageId: 'emi-12345678',
    imageLocation: '',
    vmType: { name: overrides.name ?? 'm1.small', cores: overrides.cores ?? 1, memoryMiB: overrides.memoryMiB ?? 256, diskGiB: overrides.diskGiB ?? 5 },
    groupNames: ['default'],
  };
}
