// Starting, probing and stopping the daemons of a home as separate processes (their own process
// groups, logs in <home>/log/<svc>.log), through the run files each daemon writes.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Home, Service } from './home.js';

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));

/** The daemon's entry script; MALLEE_<SVC>_MAIN points at another build (development, stand-ins). */
export function serviceMain(svc: Service): string {
  return process.env[`MALLEE_${svc.toUpperCase()}_MAIN`] || `${repoRoot}services/${svc}/dist/src/main.js`;
}

function readRunFile(file: string): string | undefined {
  try {
    const text = readFileSync(file, 'utf8').trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

/** True when pid is alive and is that service's daemon (not a recycled pid). */
export function isServiceProcess(pid: number, svc: Service): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(`services/${svc}/`) || cmdline.includes(serviceMain(svc));
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

export interface ServiceState {
  svc: Service;
  pid?: number;
  url?: string;
  /** The pid file names a live process of this service. */
  running: boolean;
}

export function serviceState(home: Home, svc: Service): ServiceState {
  const pidText = readRunFile(home.pidFile(svc));
  const pid = pidText && /^\d+$/.test(pidText) ? Number(pidText) : undefined;
  const url = readRunFile(home.urlFile(svc));
  return { svc, ...(pid ? { pid } : {}), ...(url ? { url } : {}), running: pid !== undefined && isServiceProcess(pid, svc) };
}

/** Any HTTP answer from the daemon's /healthz counts: it is listening and serving. */
export async function answersHttp(url: string, timeoutMs = 2000): Promise<boolean> {
  try {
    const res = await fetch(new URL('/healthz', url), { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

export function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface StartedService {
  svc: Service;
  pid: number;
  url: string;
}

/** Start one daemon and wait until it serves HTTP (its run files name it and /healthz answers). */
export async function startService(home: Home, svc: Service, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<StartedService> {
  const main = serviceMain(svc);
  if (!existsSync(main)) throw new Error(`${main} is missing: build first (npm run build)`);
  mkdirSync(home.logDir, { recursive: true });
  mkdirSync(home.runDir, { recursive: true });
  rmSync(home.pidFile(svc), { force: true });
  rmSync(home.urlFile(svc), { force: true });
  const log = openSync(home.logFile(svc), 'a');
  const child = spawn(process.execPath, [main, '--home', home.dir, '--conf', home.conf], {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, ...opts.env },
  });
  closeSync(log);
  child.unref();
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  child.once('error', (err) => (exited = err.message));
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${svc} failed to start (${exited}); last lines of ${home.logFile(svc)}:\n${logTail(home.logFile(svc))}`);
    const st = serviceState(home, svc);
    if (st.pid === child.pid && st.url && (await answersHttp(st.url))) return { svc, pid: child.pid!, url: st.url };
    await sleep(100);
  }
  if (child.pid) process.kill(child.pid, 'SIGKILL');
  throw new Error(`${svc} did not come up within ${(opts.timeoutMs ?? 30_000) / 1000}s; last lines of ${home.logFile(svc)}:\n${logTail(home.logFile(svc))}`);
}

/** SIGTERM the daemon, SIGKILL it if it has not gone after timeoutMs; removes its run files. */
export async function stopService(home: Home, svc: Service, timeoutMs = 15_000): Promise<'stopped' | 'killed' | 'not running'> {
  const st = serviceState(home, svc);
  const cleanup = () => {
    rmSync(home.pidFile(svc), { force: true });
    rmSync(home.urlFile(svc), { force: true });
  };
  if (!st.running || !st.pid) {
    cleanup();
    return 'not running';
  }
  process.kill(st.pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isServiceProcess(st.pid, svc)) {
      cleanup();
      return 'stopped';
    }
    await sleep(100);
  }
  process.kill(st.pid, 'SIGKILL');
  cleanup();
  return 'killed';
}
