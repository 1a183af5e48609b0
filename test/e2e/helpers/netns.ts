// The seed's two-host topology in network namespaces, every name prefixed with a per-run id and
// everything removed again in teardown:
//   <id>-frontend  clc, walrus, cc (and with `sc: true` the sc with its own tgtd); public veth <id>pub0 198.51.100.1 → <id>-internet, private veth <id>prv0 10.99.0.1 → <id>-node1
//   <id>-node1     nc and its own libvirtd/virtlogd (only the private link, 10.99.0.2)
//   <id>-internet  the clients (awscli, euca2ools, boto3, curl) and the guests' control server, 198.51.100.2
// With `node2: true` (live migration, issue 7) a second node host:
//   <id>-node2     another nc with its own libvirtd (10.99.0.3); the front end's private side is then a bridge
//                  <id>prv0 (10.99.0.1) with a veth port to each node, so the nodes share the private link as
//                  hosts on one switch do. Each node's libvirtd gets its own host UUID and listens on TCP at its
//                  private address without authentication (auth_tcp = "none": the test topology's stand-in for
//                  the TLS a real deployment configures), so one node's libvirtd can migrate a guest to the other's.
// With `install: true` each host is first installed by deploy/install.sh into a root of its own (--root
// <dir>/hosts/<host>, its role, no apt, no build; as an operator installs a front end and a node): its
// daemons run from that root's /opt/mallee, its home is that root's /var/lib/mallee (mallee.conf a link to
// its /etc/mallee/mallee.conf, which the topology then edits as an operator does), and `mallee` is the
// front end's installed command.
// The node's guests must have their taps in <id>-node1, next to its bridges; libvirtd creates taps in
// its own network namespace, so the node runs its own libvirtd there, in a private mount namespace
// (its own /run/libvirt, /var/lib/libvirt, /etc/libvirt, /var/log/libvirt, /var/cache/libvirt), and
// the nc talks to it through a socket in the node's home — as a real node host runs its own libvirtd.
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { malleeBin, parseEucarc, repoRoot, sleep } from './cloud.js';

const execFileP = promisify(execFile);

/**
 * Whether this host can run a suite of the netns topology: root, libvirtd, and `programs` (full paths); when not,
 * says so (as `<file> skipped: needs …`) and the suite skips.
 */
export function netnsSuiteCanRun(file: string, programs: string[]): boolean {
  const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock') || existsSync('/usr/sbin/libvirtd');
  const ok = libvirtHere && process.getuid?.() === 0 && programs.every((p) => existsSync(p));
  if (!ok) console.warn(`${file} skipped: needs root, libvirtd, ${programs.map((p) => p.split('/').pop()).join(', ')} (test/run-all.sh installs them)`);
  return ok;
}

export async function sh(argv: string[], opts: { input?: string; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const p = execFileP(argv[0]!, argv.slice(1), { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20, ...(opts.env ? { env: opts.env } : {}) });
    if (opts.input !== undefined) p.child.stdin?.end(opts.input);
    const r = await p;
    return { stdout: String(r.stdout), stderr: String(r.stderr), code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string; message: string };
    if (opts.allowFail) return { stdout: String(e.stdout ?? ''), stderr: String(e.stderr ?? e.message), code: typeof e.code === 'number' ? e.code : 1 };
    throw new Error(`${argv.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/**
 * Kills (SIGKILL) whatever still runs in network namespace `name`, then deletes it. Returns what was running
 * there (pid and command line), for the caller to report.
 */
export async function deleteNetns(name: string): Promise<string[]> {
  const left: string[] = [];
  const r = await sh(['ip', 'netns', 'pids', name], { allowFail: true });
  for (const pid of r.stdout.split('\n').map(Number).filter((p) => p > 0)) {
    left.push(`process ${pid} in ${name}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 80)}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await sh(['ip', 'netns', 'del', name], { allowFail: true });
  return left;
}

/**
 * deploy/install.sh of `tree` into a host's root (--root, a role, no apt, no build): a fresh install, or an upgrade
 * of one. An existing unprivileged account stands in for the "mallee" user (a --root install creates none).
 */
export function installHost(tree: string, root: string, role: 'frontend' | 'node'): Promise<{ stdout: string; stderr: string; code: number }> {
  return sh(['bash', join(tree, 'deploy/install.sh'), '--root', root, '--role', role, '--user', 'daemon', '--no-apt', '--no-build'], { timeoutMs: 300_000, allowFail: true });
}

export const ADDR = {
  frontendPublic: '198.51.100.1',
  internet: '198.51.100.2',
  publicIps: '198.51.100.10-198.51.100.20',
  frontendPrivate: '10.99.0.1',
  node: '10.99.0.2',
  node2: '10.99.0.3',
  controlPort: 8080,
} as const;

const PORTS = { clc: 8773, cc: 8774, nc: 8775, walrus: 8776, sc: 8777, metadata: 8779 };

export type Svc = 'clc' | 'walrus' | 'sc' | 'cc' | 'nc';
/** A daemon of the topology: the services, and with `node2: true` the second node's nc. */
export type Daemon = Svc | 'nc2';

export interface StartOptions {
  /** The tree whose built daemons run (default this checkout): a rolling upgrade starts each daemon from another. */
  tree?: string;
  /** Extra environment for the daemon (MALLEE_WIRE_VERSION, …). */
  env?: Record<string, string>;
}

export interface Topology {
  id: string;
  ns: { frontend: string; node: string; internet: string };
  dir: string;
  feHome: string;
  nodeHome: string;
  libvirtUri: string;
  /** With `install: true`: each host's root (its /opt/mallee, /etc/mallee, /var/lib/mallee; else empty strings). */
  roots: { frontend: string; node1: string; node2: string };
  /** With `node2: true`: the second node's namespace, home and libvirtd (else empty strings). */
  node2: { ns: string; home: string; libvirtUri: string };
  /** eucarc variables for clients in the internet namespace (EC2_URL on the front end's public address). */
  env: Record<string, string>;
  ec2Url: string;
  region: string;
  image: { emi: string; eki: string; eri: string };
  /** Run argv inside a namespace (env: the whole environment of the command). */
  exec(ns: string, argv: string[], opts?: { input?: string; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv }): Promise<{ stdout: string; stderr: string; code: number }>;
  mallee(args: string[]): Promise<string>;
  /** Starts a daemon (its pid); resolves once it wrote its run/<svc>.url. */
  startDaemon(svc: Daemon, opts?: StartOptions): Promise<number>;
  stopDaemon(svc: Daemon, signal?: NodeJS.Signals): Promise<void>;
  /** The pid of a daemon this topology started, while it runs. */
  pidOf(svc: Daemon): number | undefined;
  /** tgtd's management port in the front end (`sc: true`), for `tgtadm -C`. */
  tgtControlPort: number;
  logs(): string;
  teardown(): Promise<string[]>;
}

function conf(values: Record<string, string | number>): string {
  return Object.entries(values).map(([k, v]) => `${k}="${v}"`).join('\n') + '\n';
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface TopologyOptions {
  encap?: 'vxlan' | 'vlan';
  /** an sc in the front end, with its own tgtd there (iSCSI portal 10.99.0.1) */
  sc?: boolean;
  /**
   * VNET_MODE (default MANAGED). MANAGED-NOVLAN: the node's private link is a port of an existing bridge
   * `<id>nbr` (its VNET_BRIDGE, which carries the node's address), the front end's gateways sit on its private
   * veth itself, every network shares that one segment. SYSTEM: guests on the node's site bridge (SITE below).
   */
  mode?: 'MANAGED' | 'MANAGED-NOVLAN' | 'SYSTEM';
  /** a second node host, <id>-node2 (see the header; MANAGED only) */
  node2?: boolean;
  /** each host installed by deploy/install.sh into its own root first (see the header) */
  install?: boolean;
}

/**
 * SYSTEM mode's site network, on the node: the existing bridge `<id>sbr` guests are bridged to, with the node's
 * address on it, and a DHCP server of the test's own (dnsmasq, standing in for the site's) handing out a range of it.
 * The node routes the segment (the front end and the internet have routes to it), so guests are reachable by
 * their own addresses and reach the internet's control server without NAT, as on a site's routed LAN.
 */
export const SITE = { cidr: '192.168.77.0/24', router: '192.168.77.1', first: '192.168.77.100', last: '192.168.77.150' } as const;

export async function buildTopology(opts: TopologyOptions = {}): Promise<Topology> {
  const id = `m${randomBytes(2).toString('hex')}`;
  const ns: { frontend: string; node: string; internet: string; node2?: string } = { frontend: `${id}-frontend`, node: `${id}-node1`, internet: `${id}-internet` };
  if (opts.node2) ns.node2 = `${id}-node2`;
  const dir = mkdtempSync(join(tmpdir(), `mallee-net-${id}-`));
  chmodSync(dir, 0o711); // libvirt's QEMU user reaches the node's instance files through it
  /** An installed host's root (`install: true`): its /opt/mallee, /etc/mallee and /var/lib/mallee. */
  const hostRoot = (host: 'frontend' | 'node1' | 'node2') => join(dir, 'hosts', host);
  const homeOf = (host: 'frontend' | 'node1' | 'node2') => (opts.install ? join(hostRoot(host), 'var/lib/mallee') : join(dir, host));
  if (opts.install) {
    const hosts: ['frontend' | 'node1' | 'node2', 'frontend' | 'node'][] = [['frontend', 'frontend'], ['node1', 'node'], ...(opts.node2 ? [['node2', 'node'] satisfies ['node2', 'node']] : [])];
    for (const [host, role] of hosts) {
      mkdirSync(hostRoot(host), { recursive: true, mode: 0o755 });
      const r = await installHost(repoRoot, hostRoot(host), role);
      if (r.code !== 0) {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`deploy/install.sh --role ${role} for ${host} failed:\n${r.stdout}\n${r.stderr}`);
      }
    }
  }
  const feHome = homeOf('frontend');
  const nodeHome = homeOf('node1');
  const node2Home = opts.node2 ? homeOf('node2') : '';
  /** The tree a host's daemons run from: its installed /opt/mallee, or this checkout. */
  const treeOf = (host: 'frontend' | 'node1' | 'node2') => (opts.install ? join(hostRoot(host), 'opt/mallee') : repoRoot);
  const cli = join(treeOf('frontend'), 'packages/cli/dist/src/main.js');
  const lv = join(nodeHome, 'libvirt-host');
  const lv2 = opts.node2 ? join(node2Home, 'libvirt-host') : '';
  for (const d of [feHome, nodeHome, ...['run', 'lib', 'etc', 'log', 'cache', 'sock'].flatMap((s) => [join(lv, s), ...(lv2 ? [join(lv2, s)] : [])])]) mkdirSync(d, { recursive: true });
  const libvirtUri = `qemu:///system?socket=${join(lv, 'sock', 'libvirt-sock')}`;
  const libvirtUri2 = lv2 ? `qemu:///system?socket=${join(lv2, 'sock', 'libvirt-sock')}` : '';
  /** Where each daemon runs: its home, its namespace, its service directory. */
  const placeOf = (svc: Daemon) => (svc === 'nc2' ? { home: node2Home, where: ns.node2!, service: 'nc', log: 'nc', tree: treeOf('node2') }
    : svc === 'nc' ? { home: nodeHome, where: ns.node, service: 'nc', log: 'nc', tree: treeOf('node1') } : { home: feHome, where: ns.frontend, service: svc, log: svc, tree: treeOf('frontend') });
  const pids = new Map<string, number>();
  // The front end's own tgtd (a real front end host has one): a management port no other tgtd on this machine uses.
  let tgtControlPort = 0;
  if (opts.sc) {
    for (let p = 100 + (parseInt(id.slice(1), 16) % 9000); !tgtControlPort; p++) if (!existsSync(`/var/run/tgtd/socket.${p}`)) tgtControlPort = p;
  }
  const exec: Topology['exec'] = (name, argv, o = {}) => sh(['ip', 'netns', 'exec', name, ...argv], o);

  const topo: Topology = {
    id, ns, dir, feHome, nodeHome, libvirtUri,
    roots: opts.install ? { frontend: hostRoot('frontend'), node1: hostRoot('node1'), node2: opts.node2 ? hostRoot('node2') : '' } : { frontend: '', node1: '', node2: '' },
    node2: { ns: ns.node2 ?? '', home: node2Home, libvirtUri: libvirtUri2 }, env: {}, ec2Url: '', region: 'mallee', image: { emi: '', eki: '', eri: '' }, tgtControlPort,
    exec,
    mallee: async (args) => (await exec(ns.frontend, [process.execPath, opts.install ? cli : malleeBin, ...args, '--home', feHome], { timeoutMs: 300_000 })).stdout,
    startDaemon: async (svc, o = {}) => {
      const { home, where, service, tree } = placeOf(svc);
      rmSync(join(home, 'run', `${service}.url`), { force: true });
      mkdirSync(join(home, 'log'), { recursive: true });
      const log = openSync(join(home, 'log', `${service}.log`), 'a');
      const main = join(o.tree ?? tree, `services/${service}/dist/src/main.js`);
      const child = spawn('ip', ['netns', 'exec', where, process.execPath, main, '--home', home, '--conf', join(home, 'mallee.conf')], {
        detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...o.env },
      });
      closeSync(log);
      child.unref();
      pids.set(svc, child.pid!);
      for (let i = 0; i < 300; i++) {
        if (existsSync(join(home, 'run', `${service}.url`))) return child.pid!;
        if (!alive(child.pid!)) break;
        await sleep(100);
      }
      throw new Error(`${svc} did not start in ${where}:\n${readFileSync(join(home, 'log', `${service}.log`), 'utf8').slice(-3000)}`);
    },
    stopDaemon: async (svc, signal = 'SIGTERM') => {
      const pid = pids.get(svc);
      if (!pid || !alive(pid)) return;
      process.kill(pid, signal);
      for (let i = 0; i < 150 && alive(pid); i++) await sleep(100);
      if (alive(pid)) process.kill(pid, 'SIGKILL');
      pids.delete(svc);
    },
    pidOf: (svc) => {
      const pid = pids.get(svc);
      return pid && alive(pid) ? pid : undefined;
    },
    logs: () =>
      [['clc', feHome], ['walrus', feHome], ...(opts.sc ? [['sc', feHome]] : []), ['cc', feHome], ['nc', nodeHome], ...(opts.node2 ? [['nc', node2Home, 'node2 ']] : [])]
        .map(([s, h, label = '']) => {
          try {
            return `--- ${label}${s}.log\n${readFileSync(join(h!, 'log', `${s}.log`), 'utf8').split('\n').slice(-25).join('\n')}`;
          } catch {
            return `--- ${label}${s}.log missing`;
          }
        })
        .join('\n'),
    teardown: async () => {
      const leftovers: string[] = [];
      // Guests first (they are the node libvirtd's only domains), then the daemons we started.
      for (const uri of [libvirtUri, ...(libvirtUri2 ? [libvirtUri2] : [])]) {
        const doms = await sh(['virsh', '-c', uri, 'list', '--all', '--name'], { allowFail: true, timeoutMs: 20_000 });
        for (const d of doms.stdout.split('\n').map((l) => l.trim()).filter(Boolean)) {
          await sh(['virsh', '-c', uri, 'destroy', d], { allowFail: true, timeoutMs: 30_000 });
          await sh(['virsh', '-c', uri, 'undefine', d], { allowFail: true, timeoutMs: 30_000 });
        }
      }
      for (const svc of ['nc2', 'nc', 'cc', 'sc', 'walrus', 'clc'] as const) await topo.stopDaemon(svc);
      // The cc leaves its network (dnsmasq included) up when it stops, on purpose; the test ends it.
      const dnsmasqDir = join(feHome, 'run', 'dnsmasq');
      const dnsmasqs = existsSync(dnsmasqDir) ? readdirSync(dnsmasqDir).filter((f) => f.endsWith('.pid')).map((f) => join(dnsmasqDir, f)) : [];
      const ours = [...['libvirtd.pid', 'virtlogd.pid'].flatMap((f) => [join(lv, f), ...(lv2 ? [join(lv2, f)] : [])]), join(dir, 'tgtd.pid'), join(dir, 'site-dnsmasq.pid'), ...dnsmasqs].map(readPid).filter((p): p is number => !!p && alive(p));
      // tgtd runs as two processes (the pid file names one).
      const fePids = (await sh(['ip', 'netns', 'pids', ns.frontend], { allowFail: true })).stdout.split('\n').map(Number).filter((p) => p > 0);
      for (const pid of fePids) if (!ours.includes(pid) && readComm(pid) === 'tgtd') ours.push(pid);
      for (const pid of ours) process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 30 && ours.some(alive); i++) await sleep(100);
      for (const pid of ours.filter(alive)) process.kill(pid, 'SIGKILL');
      // Whatever still runs inside our namespaces (dnsmasq, a QEMU, a client) was started by this run.
      for (const n of Object.values(ns)) leftovers.push(...(await deleteNetns(n!)));
      if (tgtControlPort) for (const f of [`socket.${tgtControlPort}`, `socket.${tgtControlPort}.lock`]) rmSync(join('/var/run/tgtd', f), { force: true });
      if (!process.env.MALLEE_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
      return leftovers;
    },
  };

  try {
    // --- namespaces and links ---
    for (const n of Object.values(ns)) {
      await sh(['ip', 'netns', 'add', n]);
      await exec(n, ['ip', 'link', 'set', 'lo', 'up']);
    }
    await sh(['ip', 'link', 'add', `${id}pub0`, 'netns', ns.frontend, 'type', 'veth', 'peer', 'name', `${id}pub1`, 'netns', ns.internet]);
    const up = async (n: string, dev: string, cidr: string) => {
      await exec(n, ['ip', 'addr', 'add', cidr, 'dev', dev]);
      await exec(n, ['ip', 'link', 'set', dev, 'up']);
    };
    if (opts.node2) {
      // One private segment for the front end and both nodes: a bridge in the front end with a port per node.
      await exec(ns.frontend, ['ip', 'link', 'add', `${id}prv0`, 'type', 'bridge']);
      await sh(['ip', 'link', 'add', `${id}f1`, 'netns', ns.frontend, 'type', 'veth', 'peer', 'name', `${id}prv1`, 'netns', ns.node]);
      await sh(['ip', 'link', 'add', `${id}f2`, 'netns', ns.frontend, 'type', 'veth', 'peer', 'name', `${id}prv2`, 'netns', ns.node2!]);
      for (const port of [`${id}f1`, `${id}f2`]) {
        await exec(ns.frontend, ['ip', 'link', 'set', port, 'master', `${id}prv0`]);
        await exec(ns.frontend, ['ip', 'link', 'set', port, 'up']);
      }
      await up(ns.node2!, `${id}prv2`, `${ADDR.node2}/24`);
    } else {
      await sh(['ip', 'link', 'add', `${id}prv0`, 'netns', ns.frontend, 'type', 'veth', 'peer', 'name', `${id}prv1`, 'netns', ns.node]);
    }
    await up(ns.frontend, `${id}pub0`, `${ADDR.frontendPublic}/24`);
    await up(ns.internet, `${id}pub1`, `${ADDR.internet}/24`);
    await up(ns.frontend, `${id}prv0`, `${ADDR.frontendPrivate}/24`);
    const mode = opts.mode ?? 'MANAGED';
    if (mode === 'MANAGED-NOVLAN') {
      // The node host's existing bridge, as a site sets one up: the private link is its port, the address is on it.
      await exec(ns.node, ['ip', 'link', 'add', `${id}nbr`, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
      await exec(ns.node, ['ip', 'link', 'set', `${id}prv1`, 'master', `${id}nbr`]);
      await exec(ns.node, ['ip', 'link', 'set', `${id}prv1`, 'up']);
      await up(ns.node, `${id}nbr`, `${ADDR.node}/24`);
    } else {
      await up(ns.node, `${id}prv1`, `${ADDR.node}/24`);
    }
    if (mode === 'SYSTEM') {
      await exec(ns.node, ['ip', 'link', 'add', `${id}sbr`, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
      await up(ns.node, `${id}sbr`, `${SITE.router}/24`);
      await exec(ns.node, ['ip', 'route', 'add', 'default', 'via', ADDR.frontendPrivate]);
      for (const n of [ns.node, ns.frontend]) await exec(n, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      await exec(ns.frontend, ['ip', 'route', 'add', SITE.cidr, 'via', ADDR.node]);
      await exec(ns.internet, ['ip', 'route', 'add', SITE.cidr, 'via', ADDR.frontendPublic]);
      await exec(ns.node, ['dnsmasq', '--conf-file=/dev/null', `--pid-file=${join(dir, 'site-dnsmasq.pid')}`, `--interface=${id}sbr`, '--bind-interfaces', '--except-interface=lo',
        // --no-ping: dnsmasq would ping an address before offering it, longer than the test image's DHCP client waits on a loaded host.
        '--port=0', '--no-ping', `--dhcp-range=${SITE.first},${SITE.last},255.255.255.0,1h`, `--dhcp-option=option:router,${SITE.router}`, `--dhcp-leasefile=${join(dir, 'site-dnsmasq.leases')}`]);
    }

    // --- each node's own libvirtd (see the header) ---
    const startLibvirtd = async (where: string, lvDir: string, listen?: string) => {
      cpSync('/etc/libvirt', join(lvDir, 'etc'), { recursive: true });
      rmSync(join(lvDir, 'etc', 'qemu', 'networks', 'autostart'), { recursive: true, force: true });
      const tcp = listen
        ? `host_uuid = "${randomUUID()}"\nlisten_tls = 0\nlisten_tcp = 1\nlisten_addr = "${listen}"\nauth_tcp = "none"\n`
        : '';
      writeFileSync(join(lvDir, 'libvirtd.conf'), `unix_sock_dir = "${join(lvDir, 'sock')}"\nunix_sock_rw_perms = "0770"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n${tcp}`);
      const mounts = [['run', '/run/libvirt'], ['lib', '/var/lib/libvirt'], ['etc', '/etc/libvirt'], ['log', '/var/log/libvirt'], ['cache', '/var/cache/libvirt']]
        .map(([src, dst]) => `mkdir -p ${dst} && mount --bind ${join(lvDir, src!)} ${dst}`).join(' && ');
      // This machine's /dev/kvm cannot run guests (the nc uses TCG): hidden from the node's libvirtd, which
      // would otherwise spend minutes probing QEMU's KVM capabilities on its first start.
      const noKvm = existsSync('/dev/kvm') ? ' && mount --bind /dev/null /dev/kvm' : '';
      await exec(where, ['sh', '-c', `${mounts}${noKvm} && virtlogd -d -p ${join(lvDir, 'virtlogd.pid')} && libvirtd -d ${listen ? '-l ' : ''}-p ${join(lvDir, 'libvirtd.pid')} -f ${join(lvDir, 'libvirtd.conf')}`]);
      for (let i = 0; i < 100 && !existsSync(join(lvDir, 'sock', 'libvirt-sock')); i++) await sleep(100);
      if (!existsSync(join(lvDir, 'sock', 'libvirt-sock'))) throw new Error(`the libvirtd of ${where} did not start (see ${join(lvDir, 'log')})`);
    };
    await startLibvirtd(ns.node, lv, opts.node2 ? ADDR.node : undefined);
    if (opts.node2) await startLibvirtd(ns.node2!, lv2, ADDR.node2);
    // A new libvirtd probes QEMU's capabilities at its first domain start (~40 s on a loaded host): have it do that
    // now, while the daemons start and the image is registered, rather than in the first RunInstances.
    const probed = Promise.all([libvirtUri, ...(libvirtUri2 ? [libvirtUri2] : [])].map((uri) => sh(['virsh', '-c', uri, 'domcapabilities', '--virttype', 'qemu'], { allowFail: true, timeoutMs: 300_000 })));

    // --- the front end's tgtd (its iSCSI portal on the private link, 10.99.0.1:3260, only in this namespace) ---
    if (opts.sc) {
      await exec(ns.frontend, ['tgtd', '-C', String(tgtControlPort), '-p', join(dir, 'tgtd.pid')]);
      for (let i = 0; i < 100 && (await sh(['tgtadm', '-C', String(tgtControlPort), '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { allowFail: true })).code !== 0; i++) await sleep(100);
    }

    // --- the daemons ---
    const net = {
      VNET_MODE: mode, VNET_ENCAP: opts.encap ?? 'vxlan', VNET_PREFIX: id, VNET_SUBNET: '172.31.0.0', VNET_NETMASK: '255.255.0.0', VNET_ADDRSPERNET: 32,
      POLL_INTERVAL: 1, REGION: 'mallee', ZONE: 'mallee-1a', LOG_LEVEL: 'info',
    };
    writeFileSync(join(feHome, 'mallee.conf'), conf({
      ...net, MALLEE_HOME: feHome, BIND_ADDRESS: '0.0.0.0', CLC_PORT: PORTS.clc, CC_PORT: PORTS.cc, WALRUS_PORT: PORTS.walrus, METADATA_PORT: PORTS.metadata,
      VNET_PUBINTERFACE: `${id}pub0`, VNET_PRIVINTERFACE: `${id}prv0`, VNET_PUBLICIPS: ADDR.publicIps,
      SC_PORT: PORTS.sc, SC_ISCSI_ADDRESS: ADDR.frontendPrivate, SC_TGT_CONTROL_PORT: tgtControlPort,
    }));
    writeFileSync(join(nodeHome, 'mallee.conf'), conf({
      ...net, MALLEE_HOME: nodeHome, BIND_ADDRESS: ADDR.node, NC_PORT: PORTS.nc, HYPERVISOR: 'qemu', LIBVIRT_URI: libvirtUri,
      INSTANCE_PATH: join(nodeHome, 'instances'), MAX_CORES: 8,
      ...(mode === 'MANAGED-NOVLAN' ? { VNET_PRIVINTERFACE: `${id}nbr`, VNET_BRIDGE: `${id}nbr` } : { VNET_PRIVINTERFACE: `${id}prv1` }),
      ...(mode === 'SYSTEM' ? { VNET_BRIDGE: `${id}sbr` } : {}),
    }));
    if (opts.node2) {
      mkdirSync(node2Home, { recursive: true });
      writeFileSync(join(node2Home, 'mallee.conf'), conf({
        ...net, MALLEE_HOME: node2Home, BIND_ADDRESS: ADDR.node2, NC_PORT: PORTS.nc, HYPERVISOR: 'qemu', LIBVIRT_URI: libvirtUri2,
        INSTANCE_PATH: join(node2Home, 'instances'), VNET_PRIVINTERFACE: `${id}prv2`, MAX_CORES: 8,
      }));
    }
    await topo.startDaemon('clc');
    await topo.startDaemon('walrus');
    await topo.startDaemon('cc');
    await topo.startDaemon('nc');
    if (opts.node2) await topo.startDaemon('nc2');
    const key = (out: string) => {
      const k = out.split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f]{64}$/.test(l)).pop();
      if (!k) throw new Error(`no key in: ${out}`);
      return k;
    };
    const writeKey = (file: string, k: string) => {
      mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
      writeFileSync(file, k + '\n', { mode: 0o600 });
    };
    for (let i = 0; i < 50 && !existsSync(join(feHome, 'keys', 'admin.key')); i++) await sleep(100);
    writeKey(join(feHome, 'keys', 'cloud.key'), key(await topo.mallee(['register-cluster', 'mallee-1a', `http://${ADDR.frontendPrivate}:${PORTS.cc}`])));
    writeKey(join(nodeHome, 'keys', 'node.key'), key(await topo.mallee(['register-nodes', '--cluster', 'mallee-1a', '--name', 'node1', `http://${ADDR.node}:${PORTS.nc}`])));
    if (opts.node2) writeKey(join(node2Home, 'keys', 'node.key'), key(await topo.mallee(['register-nodes', '--cluster', 'mallee-1a', '--name', 'node2', `http://${ADDR.node2}:${PORTS.nc}`])));
    // Walrus on the front end's private address: the node downloads images from it (presigned URLs).
    writeKey(join(feHome, 'keys', 'walrus.key'), key(await topo.mallee(['register-walrus', `http://${ADDR.frontendPrivate}:${PORTS.walrus}`])));
    if (opts.sc) {
      // Registered before it starts (it needs its key to recover), as an installed front end does it.
      await topo.mallee(['register-sc', 'mallee-1a', `http://${ADDR.frontendPrivate}:${PORTS.sc}`, '--sc-home', feHome]);
      await topo.startDaemon('sc');
    }
    for (let i = 0; ; i++) {
      const out = await topo.mallee(['describe-services', '--output', 'json']);
      const services = JSON.parse(out) as { type: string; state: string }[];
      if (services.filter((s) => s.type === 'nc').length === (opts.node2 ? 2 : 1) && services.some((s) => s.type === 'walrus') && (!opts.sc || services.some((s) => s.type === 'sc')) && services.every((s) => s.state === 'ENABLED')) break;
      if (i > 120) throw new Error(`the cloud did not come up: ${out}`);
      await sleep(250);
    }
    // The test image, bundled into Walrus and registered; the node fetches it from Walrus at launch. Built
    // first out here, where apt reaches the package mirror (a fresh host lacks the builder's packages; the
    // namespaces have no route out), so `mallee test-image` finds it up to date.
    // The set is cached in the checkout's test-output/images (the builder's own default) and linked into the home.
    const images = join(repoRoot, 'test-output', 'images');
    await sh(['bash', join(repoRoot, 'test/images/build-test-image.sh'), images], { timeoutMs: 600_000 });
    await sh(['cp', '-al', images, join(feHome, 'test-image')]);
    await topo.mallee(['test-image']);
    topo.image = JSON.parse(readFileSync(join(feHome, 'test-image.json'), 'utf8')) as Topology['image'];
    await topo.mallee(['credentials']);
    const env = parseEucarc(join(feHome, 'eucarc'));
    const ec2Url = `http://${ADDR.frontendPublic}:${PORTS.clc}/services/compute`;
    topo.env = { ...env, EC2_URL: ec2Url, AWS_ENDPOINT_URL_EC2: ec2Url, S3_URL: `http://${ADDR.frontendPublic}:${PORTS.walrus}` };
    topo.ec2Url = ec2Url;
    await probed;
    topo.region = env.AWS_DEFAULT_REGION ?? 'mallee';
    return topo;
  } catch (err) {
    const logs = topo.logs();
    await topo.teardown();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}
