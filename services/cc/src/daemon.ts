// Starting and stopping the CC: node registry, polling, wire server, run files. Used by main.ts,
// the all-in-one launcher and the tests (in-process, port 0).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { clcUrlOf, type MalleeConfig } from '@mallee/config';
import { clcPropertyReader, clusterProperties } from '@mallee/properties';
import { openDatabase } from '@mallee/store';
import { readKeyFile, writeRunFile } from '@mallee/wire';
import { Cluster } from './cluster.js';
import { CC_CALLER } from './handlers.js';
import { networkMigrations, NetworkManager } from './net/manager.js';
import { NodeRegistry, migrations } from './registry.js';
import { buildServer } from './server.js';

export interface StartOptions {
  home: string;
  config: MalleeConfig;
  /** Overrides CC_PORT (0 = any free port; the real one is in the returned url and run/cc.url). */
  port?: number;
  logger?: Logger;
  /** The clc the cc reads its cloud properties from (default CLC_URL, else the clc on this host). */
  clcUrl?: string;
}

export interface RunningDaemon {
  url: string;
  close(): Promise<void>;
  /** Poll every node now (tests and the launcher use it instead of waiting POLL_INTERVAL). */
  pollNow(): Promise<void>;
}

export function cloudKeyFile(home: string): string {
  return join(home, 'keys', 'cloud.key');
}

function missingKey(file: string): never {
  throw new Error(`no ${file} yet (mallee register-cluster issues it)`);
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const { home, config } = opts;
  const log = opts.logger ?? pino({ name: 'cc', level: config.LOG_LEVEL });
  const runDir = join(home, 'run');
  mkdirSync(runDir, { recursive: true });

  const db = openDatabase(join(home, 'cc.sqlite'), { migrations: [...migrations, ...networkMigrations] });
  // The manager asks the cluster (made next) for its nodes and live instances only once it applies a state.
  const network: NetworkManager = new NetworkManager({ config, home, db, log, nodeHosts: (): string[] => cluster.nodeHosts(), liveInstances: (): Set<string> => cluster.liveInstanceIds() });
  const keyFile = cloudKeyFile(home);
  // The zone's cluster.* properties, read as cc:<zone> with the cluster key; unset ones leave this host's mallee.conf in charge.
  const properties = clcPropertyReader({
    clcUrl: opts.clcUrl ?? clcUrlOf(config), from: `cc:${config.ZONE}`, key: () => readKeyFile(keyFile) ?? missingKey(keyFile), prefix: 'cluster.', zone: config.ZONE,
    config, ownConfUnlessSet: true, ttlMs: 10_000, timeoutMs: 3000,
    onError: (err) => log.debug({ err: err.message }, 'cloud properties not readable from the clc now; using mallee.conf'),
  });
  const cluster: Cluster = new Cluster({
    registry: new NodeRegistry(db), policy: config.SCHEDPOLICY, pollIntervalMs: config.POLL_INTERVAL * 1000, log, network,
    currentPolicy: () => properties.get(clusterProperties.schedulingPolicy),
    cloudKey: () => readKeyFile(keyFile),
    migrateLibvirtUri: config.MIGRATE_LIBVIRT_URI,
  });
  const app = buildServer({ logger: log, cluster, network, keyFor: (from) => (from === CC_CALLER ? readKeyFile(keyFile) : undefined) });
  let url: string;
  try {
    // The network first: a restarted cc has its bridges, leases and rules back before it serves.
    await network.start();
    url = await app.listen({ port: opts.port ?? config.CC_PORT, host: config.BIND_ADDRESS });
  } catch (err) {
    await app.close();
    await network.stop();
    db.close();
    throw err;
  }
  cluster.start();
  writeRunFile(join(runDir, 'cc.pid'), String(process.pid));
  writeRunFile(join(runDir, 'cc.url'), url);
  log.info({ url, home, policy: config.SCHEDPOLICY, zone: config.ZONE }, 'cluster controller listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    pollNow: () => cluster.pollAll(),
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await cluster.stop();
        await network.stop();
        db.close();
        rmSync(join(runDir, 'cc.url'), { force: true });
        rmSync(join(runDir, 'cc.pid'), { force: true });
      })()),
  };
}
