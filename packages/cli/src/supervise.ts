// `mallee supervise --role frontend|node|all`: the plain supervisor for hosts without systemd. Starts
// the role's daemons, restarts one that exits with a growing back-off (1 s, 2 s, 4 s … 60 s; reset once
// it has run for 30 s), and stops them all, newest first, on SIGTERM/SIGINT. clc and Walrus run as
// --user when started as root (like the systemd units); the others need root.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { CliError } from './admin.js';
import { answersHttp, logTail, serviceMain, serviceState } from './daemons.js';
import type { Home, Service } from './home.js';
import type { CommandKit } from './property.js';

export type Role = 'frontend' | 'node' | 'all';
/** In start order; a daemon that is not built here (the sc, until it exists) is left out. */
export const ROLE_SERVICES: Record<Role, readonly string[]> = {
  frontend: ['clc', 'walrus', 'sc', 'cc'],
  node: ['nc'],
  all: ['clc', 'walrus', 'sc', 'cc', 'nc'],
};
/** These need no privileges and run as --user when the supervisor is root. */
const UNPRIVILEGED = new Set(['clc', 'walrus']);
const MAX_BACKOFF_MS = 60_000;
const STABLE_MS = 30_000;

const supervisorPidFile = (home: Home) => join(home.runDir, 'supervise.pid');
const supervisorLog = (home: Home) => join(home.logDir, 'supervise.log');
const svcMain = (svc: string) => serviceMain(svc as Service);

export function supervisorPid(home: Home): number | undefined {
  try {
    const pid = Number(readFileSync(supervisorPidFile(home), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('supervise') ? pid : undefined;
  } catch {
    return undefined;
  }
}

interface Account { uid: number; gid: number; name: string }

function accountOf(name: string | undefined): Account | undefined {
  if (!name || process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[0] === name);
  if (!line) throw new CliError(`no user named ${name}: create it (deploy/install.sh does) or leave out --user`);
  const f = line.split(':');
  return { name, uid: Number(f[2]), gid: Number(f[3]) };
}

class Supervisor {
  private readonly children = new Map<string, ChildProcess>();
  private readonly failures = new Map<string, number>();
  private stopping = false;

  constructor(private readonly home: Home, private readonly conf: string, private readonly services: string[], private readonly account: Account | undefined, private readonly log: (line: string) => void) {}

  start(svc: string): void {
    if (this.stopping) return;
    mkdirSync(this.home.logDir, { recursive: true });
    const out = openSync(join(this.home.logDir, `${svc}.log`), 'a');
    const asUser = this.account && UNPRIVILEGED.has(svc) ? this.account : undefined;
    const child = spawn(process.execPath, [svcMain(svc), '--home', this.home.dir, '--conf', this.conf], {
      stdio: ['ignore', out, out],
      env: { ...process.env, MALLEE_HOME: this.home.dir },
      ...(asUser ? { uid: asUser.uid, gid: asUser.gid } : {}),
    });
    closeSync(out);
    const started = Date.now();
    this.children.set(svc, child);
    this.log(`${svc}: started (pid ${child.pid}${asUser ? `, as ${asUser.name}` : ''})`);
    child.once('exit', (code, signal) => {
      this.children.delete(svc);
      if (this.stopping) return;
      const ranMs = Date.now() - started;
      const failures = ranMs >= STABLE_MS ? 1 : (this.failures.get(svc) ?? 0) + 1;
      this.failures.set(svc, failures);
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (failures - 1));
      this.log(`${svc}: exited (${signal ?? `code ${code}`}) after ${(ranMs / 1000).toFixed(1)} s; restarting in ${delay / 1000} s (see ${join(this.home.logDir, `${svc}.log`)})`);
      setTimeout(() => this.start(svc), delay).unref();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const svc of [...this.services].reverse()) {
      const child = this.children.get(svc);
      if (!child || child.exitCode !== null) continue;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(timer);
      this.log(`${svc}: stopped`);
    }
  }
}

/** Runs the supervisor in this process until SIGTERM/SIGINT. */
export async function supervise(home: Home, opts: { role: Role; conf?: string; user?: string; say: (line: string) => void }): Promise<void> {
  const conf = opts.conf ?? home.conf;
  if (!existsSync(conf)) throw new CliError(`no ${conf}: install writes /etc/mallee/mallee.conf (and <home>/mallee.conf links to it), or give --conf`);
  const other = supervisorPid(home);
  if (other && other !== process.pid) throw new CliError(`a supervisor (pid ${other}) already runs for ${home.dir}: \`mallee supervise --stop --home ${home.dir}\` first`);
  const services = ROLE_SERVICES[opts.role].filter((svc) => existsSync(svcMain(svc)));
  const outside = services.map((svc) => serviceState(home, svc as Service)).filter((s) => s.running);
  if (outside.length) throw new CliError(`${outside.map((s) => `${s.svc} (pid ${s.pid})`).join(', ')} already running in ${home.dir} outside a supervisor: \`mallee down --home ${home.dir}\` first`);
  const account = accountOf(opts.user);
  mkdirSync(home.runDir, { recursive: true });
  writeFileSync(supervisorPidFile(home), `${process.pid}\n`);
  const log = (line: string) => opts.say(`${new Date().toISOString()} ${line}`);
  const sup = new Supervisor(home, conf, services, account, log);
  log(`supervising ${services.join(', ')} in ${home.dir} (role ${opts.role}, conf ${conf})`);
  for (const svc of services) {
    sup.start(svc);
    // In order, each serving before the next starts (Walrus and the cc find the clc up).
    for (let i = 0; i < 100 && !(serviceState(home, svc as Service).url && (await answersHttp(serviceState(home, svc as Service).url!))); i++) await sleep(100);
  }
  await new Promise<void>((resolve) => {
    const keepAlive = setInterval(() => {}, 1 << 30);
    const stop = (signal: string) => {
      log(`${signal}: stopping ${services.join(', ')}`);
      void sup.stop().then(() => {
        clearInterval(keepAlive);
        rmSync(supervisorPidFile(home), { force: true });
        log('supervisor stopped');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** Starts the supervisor in the background and waits until its daemons serve. */
export async function superviseDetached(home: Home, args: string[], services: readonly string[], say: (line: string) => void): Promise<number> {
  mkdirSync(home.logDir, { recursive: true });
  const out = openSync(supervisorLog(home), 'a');
  const child = spawn(process.execPath, [process.argv[1]!, 'supervise', ...args], { detached: true, stdio: ['ignore', out, out], env: process.env });
  closeSync(out);
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));
  const wanted = services.filter((svc) => existsSync(svcMain(svc)));
  for (let i = 0; i < 600; i++) {
    if (exited) throw new CliError(`the supervisor exited at once; last lines of ${supervisorLog(home)}:\n${logTail(supervisorLog(home))}`);
    const up = await Promise.all(wanted.map(async (svc) => {
      const st = serviceState(home, svc as Service);
      return st.running && st.url !== undefined && (await answersHttp(st.url));
    }));
    if (supervisorPid(home) === child.pid && up.every(Boolean)) {
      say(`supervisor running (pid ${child.pid}): ${wanted.join(', ')} up; log ${supervisorLog(home)}`);
      return child.pid!;
    }
    await sleep(100);
  }
  throw new CliError(`the daemons did not all come up within 60 s; see ${supervisorLog(home)} and ${home.logDir}`);
}

/** SIGTERM the home's supervisor (it stops its daemons) and wait for it to go. */
export async function stopSupervisor(home: Home, say: (line: string) => void = () => {}): Promise<boolean> {
  const pid = supervisorPid(home);
  if (!pid) return false;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 600 && supervisorPid(home) === pid; i++) await sleep(100);
  if (supervisorPid(home) === pid) throw new CliError(`the supervisor (pid ${pid}) did not stop within 60 s; see ${supervisorLog(home)}`);
  say(`supervisor (pid ${pid}) stopped with its daemons`);
  return true;
}

export function superviseCommand(program: Command, kit: CommandKit): void {
  program
    .command('supervise')
    .description("run this host's daemons under a supervisor that restarts them (for hosts without systemd)")
    .option('--role <role>', 'frontend (clc, walrus, sc, cc), node (nc) or all', 'all')
    .option('--conf <file>', 'mallee.conf (default <home>/mallee.conf)')
    .option('--user <name>', 'run clc and walrus as this user when started as root (install.sh creates "mallee")')
    .option('--detach', 'run the supervisor in the background and return once the daemons serve')
    .option('--stop', "stop the home's supervisor and its daemons")
    .addOption(kit.homeOption())
    .addHelpText('after', '\nExample (what install.sh prints on a host without systemd):\n  mallee supervise --role frontend --user mallee --home /var/lib/mallee --conf /etc/mallee/mallee.conf --detach')
    .action(async (opts: { home: string; role: string; conf?: string; user?: string; detach?: boolean; stop?: boolean }) => {
      const home = kit.homeOf(opts);
      if (!(opts.role in ROLE_SERVICES)) throw new CliError(`--role must be frontend, node or all, not ${opts.role}`, 2);
      const role = opts.role as Role;
      if (opts.stop) {
        if (!(await stopSupervisor(home, kit.say))) kit.say(`no supervisor runs for ${home.dir}`);
        return;
      }
      if (opts.detach) {
        const args = ['--role', role, '--home', home.dir, ...(opts.conf ? ['--conf', opts.conf] : []), ...(opts.user ? ['--user', opts.user] : [])];
        if (supervisorPid(home)) throw new CliError(`a supervisor (pid ${supervisorPid(home)}) already runs for ${home.dir}`);
        await superviseDetached(home, args, ROLE_SERVICES[role], kit.say);
        return;
      }
      await supervise(home, { role, ...(opts.conf ? { conf: opts.conf } : {}), ...(opts.user ? { user: opts.user } : {}), say: kit.say });
    });
}
