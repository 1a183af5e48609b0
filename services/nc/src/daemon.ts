// Starting and stopping the NC: driver, reconciliation, wire server, run files. Used by main.ts,
// the all-in-one launcher and the tests (in-process, port 0).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import { openDatabase } from '@mallee/store';
import { openSecret, readKeyFile, writeRunFile } from '@mallee/wire';
import { loadHypervisor } from './hypervisors/index.js';
import { LaunchRecords, migrations } from './launch-records.js';
import { HostNetwork } from './net/host-network.js';
import { NodeController } from './node-controller.js';
import { NC_CALLER } from './handlers.js';
import { buildServer } from './server.js';

export interface StartOptions {
  home: string;
  config: MalleeConfig;
  /** Overrides NC_PORT (0 = any free port; the real one is in the returned url and run/nc.url). */
  port?: number;
  logger?: Logger;
  /** Defaults: 60 s (Eucalyptus teardown_state_duration, capped by TERMINATED_RETENTION) and 5 s. */
  terminatedRetentionMs?: number;
  monitorIntervalMs?: number;
}

export interface RunningDaemon {
  url: string;
  close(): Promise<void>;
}

export function nodeKeyFile(home: string): string {
  return join(home, 'keys', 'node.key');
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const { home, config } = opts;
  const log = opts.logger ?? pino({ name: 'nc', level: config.LOG_LEVEL });
  const runDir = join(home, 'run');
  mkdirSync(runDir, { recursive: true });

  // The NC listens before the hypervisor is ready: a driver's init can take long (libvirt's KVM probe
  // boots a guest, up to 20 s, once per host), and a daemon that answers can say what it is doing.
  // Until it is ready, /healthz says "starting" with the step and every wire operation is refused with
  // NodeStarting, which the cc shows as the node's NOTREADY detail (so `mallee status` and up show it).
  let starting: string | undefined = 'loading the hypervisor driver';
  const hypervisor = await loadHypervisor({ config, home, log: log.child({ component: 'hypervisor' }), onStep: (step) => (starting = step) });
  const db = openDatabase(join(home, 'nc.sqlite'), { migrations, synchronous: 'NORMAL' });
  const keyFile = nodeKeyFile(home);
  const node = new NodeController({
    hypervisor,
    openSecret: (sealed) => openSecret(readKeyFile(keyFile) ?? '', sealed),
    records: new LaunchRecords(db),
    limits: { maxCores: config.MAX_CORES, maxMemMiB: config.MAX_MEM, maxDiskGiB: config.MAX_DISK },
    log,
    terminatedRetentionMs: opts.terminatedRetentionMs ?? Math.min(60, config.TERMINATED_RETENTION) * 1000,
    monitorIntervalMs: opts.monitorIntervalMs ?? 5000,
    // Bridges and ebtables only where guests are real: the simulated driver has no NICs to attach.
    ...(hypervisor.name === 'simulated' ? {} : { network: new HostNetwork(config, log.child({ component: 'network' })) }),
  });
  const app = buildServer({ logger: log, node, keyFor: (from) => (from === NC_CALLER ? readKeyFile(keyFile) : undefined), starting: () => starting });
  const removeRunFiles = () => {
    rmSync(join(runDir, 'nc.url'), { force: true });
    rmSync(join(runDir, 'nc.pid'), { force: true });
  };
  let url: string;
  try {
    url = await app.listen({ port: opts.port ?? config.NC_PORT, host: config.BIND_ADDRESS });
    writeRunFile(join(runDir, 'nc.pid'), String(process.pid));
    writeRunFile(join(runDir, 'nc.url'), url);
    log.info({ url, home }, 'node controller listening; starting the hypervisor');
    const t0 = Date.now();
    starting = 'initialising the hypervisor';
    await hypervisor.init();
    starting = 'reconciling launch records with the hypervisor';
    await node.start();
    starting = undefined;
    log.info({ url, home, hypervisor: hypervisor.name, startMs: Date.now() - t0 }, 'node controller ready');
  } catch (err) {
    await app.close();
    await node.stop();
    await hypervisor.close();
    db.close();
    removeRunFiles();
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await node.stop();
        await hypervisor.close();
        db.close();
        removeRunFiles();
      })()),
  };
}
