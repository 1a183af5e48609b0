// More node controllers beside an all-in-one cloud, as an operator adds them on another host: a home
// with its own mallee.conf and port, `mallee register-nodes`, the printed key installed as keys/node.key;
// it fetches images from Walrus like any node.
// Also: editing a host's mallee.conf and restarting its daemons, as an operator would.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, freePortBase, removeGuestsOf, repoRoot, type Cloud } from './cloud.js';

const ncMain = join(repoRoot, 'services/nc/dist/src/main.js');

/** Set KEY="value" in a mallee.conf (replacing the key's line, or appending it). */
export function setConf(file: string, key: string, value: string | number): void {
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
  const line = `${key}="${value}"`;
  const at = lines.findIndex((l) => new RegExp(`^\\s*${key}\\s*=`).test(l));
  if (at >= 0) lines[at] = line;
  else lines.splice(lines.length && lines[lines.length - 1] === '' ? lines.length - 1 : lines.length, 0, line);
  writeFileSync(file, lines.join('\n').replace(/\n?$/, '\n'));
}

const pidIn = (home: string, svc: string): number | undefined => {
  try {
    const n = Number(readFileSync(join(home, 'run', `${svc}.pid`), 'utf8'));
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
};

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Signal a daemon of a home (by its run/<svc>.pid) and wait until its process is gone. */
export async function stopDaemon(home: string, svc: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const pid = pidIn(home, svc);
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, signal);
  await eventually(`${svc} (pid ${pid}) gone`, async () => (alive(pid) ? undefined : true), 30_000);
}

/** Names of the nc services the clc lists, with their states. */
export async function nodeStates(cloud: Cloud): Promise<Map<string, string>> {
  const services = JSON.parse((await cloud.mallee(['describe-services', '-o', 'json'])).stdout) as { type: string; name: string; state: string }[];
  return new Map(services.filter((s) => s.type === 'nc').map((s) => [s.name, s.state]));
}

export async function waitNodesEnabled(cloud: Cloud, count: number, timeoutMs = 120_000): Promise<void> {
  await eventually(`${count} nodes ENABLED`, async () => {
    const states = [...(await nodeStates(cloud)).values()];
    return states.length === count && states.every((s) => s === 'ENABLED') ? true : undefined;
  }, timeoutMs);
}

/** A second node controller on this host: its own home, port and mallee.conf, registered with the cloud's cluster. */
export interface ExtraNode {
  home: string;
  conf: string;
  url: string;
  name: string;
  /** Start the nc daemon (again) and wait until it serves. */
  start(): Promise<void>;
  /** The nc's pid while it runs. */
  pid(): number | undefined;
  /** Stop the daemon (default SIGTERM; SIGKILL for a crash) and wait until it is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stop it, remove the guests its home still has, delete the home. */
  remove(): Promise<void>;
}

export async function addNode(cloud: Cloud, conf: Record<string, string | number>, zone = 'mallee-1a'): Promise<ExtraNode> {
  const home = mkdtempSync(join(cloud.home, 'node2-'));
  const port = (await freePortBase()) + 2;
  const confFile = join(home, 'mallee.conf');
  for (const [k, v] of Object.entries({ HYPERVISOR: 'libvirt', NC_PORT: port, INSTANCE_PATH: join(home, 'instances'), ...conf })) setConf(confFile, k, v);
  const url = `http://127.0.0.1:${port}/`;
  const node: ExtraNode = {
    home,
    conf: confFile,
    url,
    name: '',
    pid: () => {
      const p = pidIn(home, 'nc');
      return p !== undefined && alive(p) ? p : undefined;
    },
    start: async () => {
      mkdirSync(join(home, 'log'), { recursive: true });
      rmSync(join(home, 'run', 'nc.pid'), { force: true });
      const log = openSync(join(home, 'log', 'nc.log'), 'a');
      const child = spawn(process.execPath, [ncMain, '--home', home, '--conf', confFile], { detached: true, stdio: ['ignore', log, log] });
      closeSync(log);
      child.unref();
      await eventually(`the nc in ${home} serving`, async () => {
        if (child.exitCode !== null) throw new Error(`nc exited ${child.exitCode}: ${readFileSync(join(home, 'log', 'nc.log'), 'utf8').slice(-2000)}`);
        if (pidIn(home, 'nc') !== child.pid) return undefined;
        const res = await fetch(new URL('/healthz', url)).catch(() => undefined);
        return res ? true : undefined;
      }, 90_000);
    },
    stop: (signal = 'SIGTERM') => stopDaemon(home, 'nc', signal),
    remove: async () => {
      await node.stop('SIGKILL').catch(() => undefined);
      await removeGuestsOf(home);
      rmSync(home, { recursive: true, force: true });
    },
  };
  await node.start();
  const { stdout } = await cloud.mallee(['register-nodes', '--cluster', zone, url]);
  node.name = /registered node (\S+) at/.exec(stdout)![1]!;
  mkdirSync(join(home, 'keys'), { recursive: true });
  writeFileSync(join(home, 'keys', 'node.key'), stdout.trim().split('\n').pop()! + '\n', { mode: 0o600 });
  return node;
}

/** Which home's node controller runs the instance: its instance directory is there (INSTANCE_PATH of that home). */
export function homeOf(id: string, homes: string[]): string | undefined {
  return homes.find((h) => existsSync(join(h, 'instances', id)));
}
