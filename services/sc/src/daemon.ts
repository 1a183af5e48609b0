// Starting and stopping the SC: database, backend probe, tgtd and snapshot recovery, wire server, run
// files. Used by main.ts, the all-in-one launcher and the tests (in-process, port 0).
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { clcUrlOf, type MalleeConfig } from '@mallee/config';
import { clcPropertyReader, storageProperties } from '@mallee/properties';
import { openDaemonDatabase, type Db } from '@mallee/store';
import { readKeyFile, sc, writeRunFile } from '@mallee/wire';
import { createBackend } from './backends/index.js';
import { ChunkStore } from './chunks.js';
import { Exports } from './exports.js';
import { migrations } from './migrations.js';
import { credentialsFile, S3Client } from './s3.js';
import { buildServer } from './server.js';
import { SnapshotEngine } from './snapshots.js';
import { StorageController } from './storage-controller.js';
import { tgtOn, type Tgt } from './tgt.js';

export interface StartOptions {
  home: string;
  config: MalleeConfig;
  /** Overrides SC_PORT (0 = any free port; the real one is in the returned url and run/sc.url). */
  port?: number;
  logger?: Logger;
  /** tgtadm access (tests may count calls). */
  tgt?: Tgt;
  /** The clc the SC reads its properties from (default http://<BIND_ADDRESS>:<CLC_PORT>). */
  clcUrl?: string;
  /** ms between reconciliations of tgtd with the exports and chunk sweeps (default 30 s). */
  reconcileIntervalMs?: number;
}

export interface RunningDaemon {
  url: string;
  db: Db;
  /** This SC's name prefix in tgtd (IQNs, CHAP accounts) and in Walrus (object keys). */
  prefix: string;
  controller: StorageController;
  close(): Promise<void>;
}

export const scKeyFile = (home: string) => join(home, 'keys', 'sc.key');
export const blockStorageFile = (home: string) => join(home, 'keys', 'blockstorage.json');

/** A per-SC name, made once: two SCs sharing a tgtd (or a Walrus bucket) never touch each other's things. */
function scPrefix(db: Db): string {
  const known = db.prepare("SELECT value FROM settings WHERE name = 'prefix'").pluck().get() as string | undefined;
  if (known) return known;
  const prefix = `sc-${randomBytes(4).toString('hex')}`;
  db.prepare("INSERT INTO settings (name, value) VALUES ('prefix', ?)").run(prefix);
  return prefix;
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const { home, config } = opts;
  const log = opts.logger ?? pino({ name: 'sc', level: config.LOG_LEVEL });
  const runDir = join(home, 'run');
  mkdirSync(runDir, { recursive: true });
  const db = openDaemonDatabase(config.DB_URL, join(home, 'sc.sqlite'), 'sc', { migrations });
  const prefix = scPrefix(db);
  const backend = createBackend(config, home, prefix);
  try {
    await backend.probe();
  } catch (err) {
    db.close();
    throw err;
  }
  const keyFile = scKeyFile(home);
  const s3 = new S3Client(credentialsFile(blockStorageFile(home)));
  const chunks = new ChunkStore({ db, s3, prefix, log });
  const exports = new Exports({ db, tgt: opts.tgt ?? tgtOn(config.SC_TGT_CONTROL_PORT), prefix, log, pathOf: (id) => backend.path(id) });
  const snapshots = new SnapshotEngine({ db, backend, s3, chunks, prefix, chunkSize: config.SC_CHUNK_MB * 1024 * 1024, log });
  // Limits are cloud properties (storage.*, per zone) held by the clc; mallee.conf SC_MAX_* until it answers.
  const properties = clcPropertyReader({
    clcUrl: opts.clcUrl ?? clcUrlOf(config),
    from: `sc:${config.ZONE}`,
    key: () => readKeyFile(keyFile) ?? '',
    prefix: 'storage.',
    zone: config.ZONE,
    config,
    ttlMs: 5000,
    onError: (err) => log.debug({ err: err.message }, 'cloud properties not readable from the clc now; using the last known or mallee.conf'),
  });
  const controller = new StorageController({
    db, backend, exports, snapshots, s3, log,
    limits: async () => ({ maxVolumeGiB: await properties.get(storageProperties.maxVolumeSizeGb), maxTotalGiB: await properties.get(storageProperties.maxTotalVolumeSizeGb) }),
    portal: { address: config.SC_ISCSI_ADDRESS || config.BIND_ADDRESS, port: config.SC_ISCSI_PORT },
    wireKey: () => {
      const k = readKeyFile(keyFile);
      if (!k) throw new Error(`no ${keyFile}: register this storage controller with \`mallee register-sc\``);
      return k;
    },
  });
  const recover = async (part: () => Promise<void>, what: string) => {
    try {
      await part();
      return true;
    } catch (err) {
      log.warn({ err: (err as Error).message }, `${what} after start is not complete yet; retrying`);
      return false;
    }
  };
  // Volumes and exports before serving: they need only the disk and tgtd. Snapshots need Walrus: after.
  let recovered = await recover(() => controller.recover(), 'volume and export recovery');
  let snapshotsRecovered = false;
  const app = buildServer({ logger: log, controller, db, keyFor: (from) => (from === sc.SC_CALLER ? readKeyFile(keyFile) : undefined) });
  let url: string;
  try {
    url = await app.listen({ port: opts.port ?? config.SC_PORT, host: config.BIND_ADDRESS });
  } catch (err) {
    await app.close();
    await controller.stop();
    db.close();
    throw err;
  }
  const timer = setInterval(() => {
    void (async () => {
      if (!recovered) recovered = await recover(() => controller.recover(), 'volume and export recovery');
      else if (!snapshotsRecovered) snapshotsRecovered = await recover(() => controller.recoverSnapshots(), 'snapshot recovery');
      else await (backend.diffs ? chunks.sweep() : exports.reconcile().then(() => chunks.sweep())).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'periodic reconciliation failed'));
    })();
  }, opts.reconcileIntervalMs ?? 30_000);
  void (async () => {
    snapshotsRecovered = await recover(() => controller.recoverSnapshots(), 'snapshot recovery');
  })();
  timer.unref();
  writeRunFile(join(runDir, 'sc.pid'), String(process.pid));
  writeRunFile(join(runDir, 'sc.url'), url);
  log.info({ url, home, backend: backend.name, prefix, zone: config.ZONE }, 'storage controller listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    db,
    prefix,
    controller,
    close: () =>
      (closing ??= (async () => {
        clearInterval(timer);
        await app.close();
        await controller.stop();
        db.close();
        rmSync(join(runDir, 'sc.url'), { force: true });
        rmSync(join(runDir, 'sc.pid'), { force: true });
      })()),
  };
}
