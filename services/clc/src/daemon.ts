// Starting and stopping the clc: database, admin account and keys, cluster poller, HTTP server and
// run files. Used by main.ts, the all-in-one launcher and the tests (in-process, port 0).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import { cloudProperties } from '@mallee/properties';
import { openDatabase, type Db } from '@mallee/store';
import { admin, generateKey, readKeyFile, walrus, writeKeyFile } from '@mallee/wire';
import { credentialLookup, ensureAdminAccount, walrusCredential } from './accounts.js';
import { coreActions, type Clc } from './actions/index.js';
import { adminHandlers } from './admin-ops.js';
import { ClusterPoller } from './cluster-poller.js';
import { Clusters } from './clusters.js';
import { Dispatcher } from './dispatch.js';
import { findInstanceType, seedInstanceTypes } from './instance-types.js';
import { clcMetrics } from './metrics.js';
import { clcMigrations } from './migrations.js';
import { addressActions, networkPlan, NetworkSync } from './network/index.js';
import { CloudProperties } from './properties.js';
import { resourceActionsFor } from './resources/index.js';
import { buildServer } from './server.js';
import { walrusLinkHandler } from './walrus-link.js';

export interface StartOptions {
  home: string;
  config: MalleeConfig;
  /** Overrides CLC_PORT (0 = any free port; the real one is in the returned url and run/clc.url). */
  port?: number;
  logger?: Logger;
}

export interface RunningDaemon {
  url: string;
  db: Db;
  close(): Promise<void>;
  /** Poll every cluster now (tests and the launcher use it instead of waiting POLL_INTERVAL). */
  pollNow(): Promise<void>;
}

export const adminKeyFile = (home: string) => join(home, 'keys', 'admin.key');
/** The key Walrus signs LookupAccessKey with (all-in-one: Walrus shares this home). */
export const walrusKeyFile = (home: string) => join(home, 'keys', 'walrus.key');

function ensureKeyFile(file: string): void {
  if (!readKeyFile(file)) writeKeyFile(file, generateKey());
}

/** Opens (and migrates) the clc database and makes what a new cloud needs: admin account, instance types. */
export function openClcDatabase(file: string): Db {
  const db = openDatabase(file, { migrations: clcMigrations });
  ensureAdminAccount(db);
  seedInstanceTypes(db);
  return db;
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const { home, config } = opts;
  const log = opts.logger ?? pino({ name: 'clc', level: config.LOG_LEVEL });
  const runDir = join(home, 'run');
  mkdirSync(runDir, { recursive: true });
  ensureKeyFile(adminKeyFile(home));
  ensureKeyFile(walrusKeyFile(home));

  const db = openClcDatabase(join(home, 'clc.sqlite'));
  const clusters = new Clusters(db);
  const dispatcher = new Dispatcher(clusters);
  const properties = new CloudProperties(db, config, {
    zones: () => clusters.list().map((c) => c.name),
    checks: { [cloudProperties.defaultTypeName.name]: (name) => (findInstanceType(db, String(name)) ? undefined : `no instance type named ${String(name)}`) },
  });
  properties.onChange((name) => log.info({ property: name }, 'cloud property changed'));
  const network = new NetworkSync(db, clusters, networkPlan(config), log.child({ component: 'network' }));
  let url = '';
  const clc: Clc = { db, config, clusters, dispatcher, properties, network, url: () => url };
  const poller = new ClusterPoller({
    db, clusters, dispatcher, log, pollIntervalMs: config.POLL_INTERVAL * 1000,
    retentionMs: () => properties.get(cloudProperties.terminatedTime) * 60_000,
    afterPoll: (zone) => network.afterPoll(zone),
  });
  const keys: Record<string, string> = { [admin.ADMIN_SENDER]: adminKeyFile(home), [walrus.WALRUS_SENDER]: walrusKeyFile(home) };
  const app = buildServer({
    logger: log,
    actions: network.watch([...coreActions(clc), ...resourceActionsFor(db), ...addressActions({ ...clc, network })]),
    credentials: credentialLookup(db),
    keyFor: (from) => (keys[from] ? readKeyFile(keys[from]) : undefined),
    wireHandlers: [
      ...adminHandlers({ db, clusters, properties, region: config.REGION, url: () => url, pollSoon: () => void poller.pollAll() }),
      walrusLinkHandler((accessKeyId) => walrusCredential(db, accessKeyId)),
    ],
    metrics: clcMetrics({ db, clusters, dispatcher, poller }),
  });
  try {
    url = await app.listen({ port: opts.port ?? config.CLC_PORT, host: config.BIND_ADDRESS });
  } catch (err) {
    await app.close();
    db.close();
    throw err;
  }
  poller.start();
  writeFileSync(join(runDir, 'clc.url'), url + '\n');
  writeFileSync(join(runDir, 'clc.pid'), `${process.pid}\n`);
  log.info({ url, home, region: config.REGION }, 'cloud controller listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    db,
    pollNow: () => poller.pollAll(),
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await poller.stop();
        network.stop();
        db.close();
        rmSync(join(runDir, 'clc.url'), { force: true });
        rmSync(join(runDir, 'clc.pid'), { force: true });
      })()),
  };
}
