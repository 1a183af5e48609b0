// Starting and stopping the clc: database, admin account and keys, cluster poller, HTTP server and
// run files. Used by main.ts, the all-in-one launcher and the tests (in-process, port 0).
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import { cloudProperties } from '@mallee/properties';
import { openDaemonDatabase, type Db } from '@mallee/store';
import { DaemonMetrics } from '@mallee/telemetry';
import { admin, generateKey, readKeyFile, walrus, writeKeyFile, writeRunFile } from '@mallee/wire';
import { credentialLookup, ensureAdminAccount, walrusCredential } from './accounts.js';
import { accountCertificates, ensureCloudCa } from './certificates.js';
import { coreActions, type Clc } from './actions/index.js';
import { adminHandlers } from './admin-ops.js';
import { migrationHandlers } from './live-migration.js';
import { ClusterPoller } from './cluster-poller.js';
import { PollerLease } from './poller-lease.js';
import { Clusters } from './clusters.js';
import { Dispatcher } from './dispatch.js';
import { findInstanceType, seedInstanceTypes } from './instance-types.js';
import { clcMetrics } from './metrics.js';
import { clcMigrations } from './migrations.js';
import { addressActions, networkPlan, NetworkSync } from './network/index.js';
import { CloudProperties } from './properties.js';
import { describeServices } from './services.js';
import { resourceActionsFor } from './resources/index.js';
import { buildServer } from './server.js';
import { WalrusLink } from './walrus.js';
import { certificatesHandler, walrusLinkHandler } from './walrus-link.js';
import { restorableSnapshot, StorageControllers, StoragePoller, storageActions, storageAdminHandlers, storageServices, withBootVolumes } from './storage/index.js';

export interface StartOptions {
  home: string;
  config: MalleeConfig;
  /** Overrides CLC_PORT (0 = any free port; the real one is in the returned url and run/clc.url). */
  port?: number;
  logger?: Logger;
  /** Seconds the presigned image URLs in launches stay valid (default 15 minutes). */
  imageUrlTtl?: number;
}

export interface RunningDaemon {
  url: string;
  db: Db;
  close(): Promise<void>;
  /** Poll every cluster now (tests and the launcher use it instead of waiting POLL_INTERVAL). */
  pollNow(): Promise<void>;
}

export const adminKeyFile = (home: string) => join(home, 'keys', 'admin.key');
/** Where Walrus keeps the link key the clc issues at RegisterWalrus (all-in-one: Walrus shares this home). */
export const walrusKeyFile = (home: string) => join(home, 'keys', 'walrus.key');

function ensureKeyFile(file: string): void {
  if (!readKeyFile(file)) writeKeyFile(file, generateKey());
}

/** Opens (and migrates) the clc database and makes what a new cloud needs: admin account, instance types. */
/** clc.sqlite, or schema clc of DB_URL (PostgreSQL) when it is set. */
export function openClcDatabase(file: string, dbUrl = ''): Db {
  const db = openDaemonDatabase(dbUrl, file, 'clc', { migrations: clcMigrations });
  ensureAdminAccount(db);
  seedInstanceTypes(db);
  return db;
}

/** The registered Walrus; before registration, the all-in-one's by its run file in this home (for the console). */
function walrusUrlOf(link: WalrusLink, home: string): string | undefined {
  const registered = link.url();
  if (registered) return registered;
  try {
    return readFileSync(join(home, 'run', 'walrus.url'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const { home, config } = opts;
  const log = opts.logger ?? pino({ name: 'clc', level: config.LOG_LEVEL });
  const runDir = join(home, 'run');
  mkdirSync(runDir, { recursive: true });
  ensureKeyFile(adminKeyFile(home));
  const cloudCa = await ensureCloudCa(home);

  const db = openClcDatabase(join(home, 'clc.sqlite'), config.DB_URL);
  const clusters = new Clusters(db);
  const walrusLink = new WalrusLink(db, { region: config.REGION, ...(opts.imageUrlTtl !== undefined ? { imageUrlTtl: opts.imageUrlTtl } : {}) });
  const storage = { db, clusters, controllers: new StorageControllers(db) };
  const dispatcher = new Dispatcher(clusters, async (specs) => walrusLink.withImageSources(await withBootVolumes(storage, specs)));
  const properties = new CloudProperties(db, config, {
    zones: () => clusters.list().map((c) => c.name),
    checks: { [cloudProperties.defaultTypeName.name]: (name) => (findInstanceType(db, String(name)) ? undefined : `no instance type named ${String(name)}`) },
  });
  properties.onChange((name) => log.info({ property: name }, 'cloud property changed'));
  const network = new NetworkSync(db, clusters, networkPlan(config), log.child({ component: 'network' }), config.POLL_INTERVAL * 1000);
  let url = '';
  const lease = new PollerLease(db, log.child({ component: 'poller-lease' }));
  const storagePoller = new StoragePoller(storage, log.child({ component: 'storage' }), () => lease.holding);
  const services = () => describeServices({
    clusters, region: config.REGION, url: () => url,
    others: async () => [...(await walrusLink.serviceStatus()), ...storageServices(storage.controllers)],
  });
  const clc: Clc = { db, config, clusters, dispatcher, properties, services, network, storage, url: () => url };
  const poller = new ClusterPoller({
    db, clusters, dispatcher, log, pollIntervalMs: config.POLL_INTERVAL * 1000,
    retentionMs: () => properties.get(cloudProperties.terminatedTime) * 60_000,
    afterPoll: (zone) => network.afterPoll(zone),
    leading: () => lease.check(),
  });
  const credentials = credentialLookup(db);
  const app = buildServer({
    logger: log,
    actions: network.watch([
      ...addressActions({ ...clc, network }),
      ...coreActions(clc),
      ...resourceActionsFor(db, {
        checkManifest: walrusLink.checkManifest(), deregistered: (image) => walrusLink.flush(image),
        rootSnapshot: (principal, snapshotId) => ({ volumeSize: restorableSnapshot(db, principal.accountId, snapshotId).volume_size }),
      }),
      ...storageActions(storage, config.REGION),
    ]),
    credentials,
    // An SC signs as sc:<zone> (properties) with the key the clc issued it at register-sc; a cc as cc:<zone> with
    // the cluster's key (its keys/cloud.key, issued at register-cluster).
    keyFor: (from) => (from === admin.ADMIN_SENDER ? readKeyFile(adminKeyFile(home)) : from === walrus.WALRUS_SENDER ? walrusLink.key()
      : from.startsWith('sc:') ? storage.controllers.get(from.slice(3))?.key
      : from.startsWith('cc:') ? clusters.keyOf(from.slice(3)) : undefined),
    wireHandlers: [
      ...adminHandlers({ db, home, clusters, walrus: walrusLink, properties, services, pollSoon: () => void poller.pollAll() }),
      walrusLinkHandler((accessKeyId) => walrusCredential(db, accessKeyId)),
      certificatesHandler((accountId) => ({
        certificates: accountCertificates(db, accountId).map(({ certificateId, userId, pem }) => ({ certificateId, userId, pem })),
        cloudCertificate: cloudCa.certificate,
      })),
      ...storageAdminHandlers(db, storage.controllers, () => void storagePoller.pollAll(), () => walrusLink.url()),
      ...migrationHandlers({ db, clusters, controllers: storage.controllers, log, pollSoon: () => void poller.pollAll() }),
    ],
    metrics: clcMetrics(new DaemonMetrics('clc'), { db, clusters, dispatcher, poller, lease }),
    console: { credentials, region: config.REGION, walrusUrl: () => walrusUrlOf(walrusLink, home), describeServices: services, metrics: { intervalMs: config.CONSOLE_METRICS_INTERVAL * 1000, keep: Math.ceil(3600 / config.CONSOLE_METRICS_INTERVAL) } },
  });
  try {
    url = await app.listen({ port: opts.port ?? config.CLC_PORT, host: config.BIND_ADDRESS });
  } catch (err) {
    await app.close();
    db.close();
    throw err;
  }
  poller.start();
  const storageTimer = setInterval(() => void storagePoller.pollAll(), config.POLL_INTERVAL * 1000);
  storageTimer.unref();
  void storagePoller.pollAll();
  writeRunFile(join(runDir, 'clc.pid'), String(process.pid));
  writeRunFile(join(runDir, 'clc.url'), url);
  log.info({ url, home, region: config.REGION }, 'cloud controller listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    db,
    pollNow: async () => {
      await poller.pollAll();
      await storagePoller.pollAll();
    },
    close: () =>
      (closing ??= (async () => {
        clearInterval(storageTimer);
        await app.close();
        await poller.stop();
        network.stop();
        await storagePoller.settled();
        db.close();
        rmSync(join(runDir, 'clc.url'), { force: true });
        rmSync(join(runDir, 'clc.pid'), { force: true });
      })()),
  };
}
