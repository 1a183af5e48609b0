// The all-in-one cloud in one home: write mallee.conf, start clc/cc/nc, register the cluster and
// the node over the admin wire ops, write credentials; and stop/inspect it again.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, renderConf, type ConfigKey, type MalleeConfig } from '@mallee/config';
import { admin, writeKeyFile, readKeyFile } from '@mallee/wire';
import { adminLink, CliError, type AdminLink } from './admin.js';
import { writeCredentials, type WrittenCredentials } from './credentials.js';
import { answersHttp, logTail, serviceMain, serviceState, startService, stopService } from './daemons.js';
import { waitWithProgress } from './progress.js';
import { ADMIN_ACCOUNT, SERVICES, type Home, type Service } from './home.js';
import { stopSupervisor } from './supervise.js';
import { ensureUserCertificate, ensureWalrusRegistered, writeCloudCertificate } from './walrus.js';

export type Hypervisor = 'simulated' | 'libvirt';
type Say = (line: string) => void;

export interface UpOptions {
  hypervisor?: Hypervisor;
  portBase?: number;
  /** Seconds between controller polls, for a new mallee.conf (tests use a short one). */
  pollInterval?: number;
  say?: Say;
}

/** libvirt is usable when the nc was built with its driver and a libvirtd socket exists. */
export function libvirtUsable(): boolean {
  const driver = serviceMain('nc').replace(/main\.js$/, 'hypervisors/libvirt.js');
  return existsSync(driver) && ['/var/run/libvirt/libvirt-sock', '/run/libvirt/libvirt-sock'].some((s) => existsSync(s));
}

function portOverrides(base: number): Partial<Record<ConfigKey, number>> {
  return { CLC_PORT: base, CC_PORT: base + 1, NC_PORT: base + 2, WALRUS_PORT: base + 3, SC_PORT: base + 4 };
}

/** Write <home>/mallee.conf once; later runs keep the user's edits and pass flags as env overrides. */
function ensureConf(home: Home, opts: UpOptions, say: Say): { config: MalleeConfig; env: NodeJS.ProcessEnv } {
  mkdirSync(home.dir, { recursive: true });
  const flags: Partial<Record<ConfigKey, string | number>> = {
    ...(opts.hypervisor ? { HYPERVISOR: opts.hypervisor } : {}),
    ...(opts.portBase ? portOverrides(opts.portBase) : {}),
  };
  const env: NodeJS.ProcessEnv = {};
  if (!existsSync(home.conf)) {
    const hv = opts.hypervisor ?? (libvirtUsable() ? 'libvirt' : 'simulated');
    const values: Partial<Record<ConfigKey, string | number>> = {
      MALLEE_HOME: home.dir,
      HYPERVISOR: hv,
      ...portOverrides(opts.portBase ?? 8773),
      INSTANCE_PATH: `${home.dir}/instances`,
      // One host, no second NIC: guests get QEMU user-mode networking (see services/cc/README.md
      // "Networking" for MANAGED on an all-in-one).
      VNET_MODE: 'USERMODE',
      ...(opts.pollInterval ? { POLL_INTERVAL: opts.pollInterval } : {}),
    };
    writeFileSync(home.conf, renderConf(values, 'Written by `mallee up`; edit freely (later runs keep this file).\nKeys and defaults: deploy/mallee.conf.example'));
    say(`wrote ${home.conf}`);
  } else {
    for (const [k, v] of Object.entries(flags)) env[`MALLEE_${k}`] = String(v);
  }
  const config = loadConfig({ file: home.conf, env: { ...process.env, ...env }, overrides: { MALLEE_HOME: home.dir } });
  return { config, env: { ...env, MALLEE_HOME: home.dir } };
}

export function nodeName(): string {
  return hostname().toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'node1';
}

async function ensureRunning(home: Home, svc: Service, env: NodeJS.ProcessEnv, say: Say): Promise<string> {
  const st = serviceState(home, svc);
  if (st.running && st.url) {
    for (let i = 0; i < 50; i++) {
      if (await answersHttp(st.url)) {
        say(`${svc}: already running (pid ${st.pid}, ${st.url})`);
        return st.url;
      }
      await sleep(200);
    }
    throw new CliError(`${svc} (pid ${st.pid}) is running but does not answer at ${st.url}: see ${home.logFile(svc)}; \`mallee down --home ${home.dir}\` then \`mallee up\` again`);
  }
  const started = await startService(home, svc, { env });
  say(`${svc}: started (pid ${started.pid}, ${started.url}, log ${home.logFile(svc)})`);
  return started.url;
}

async function waitForAdminKey(home: Home): Promise<void> {
  for (let i = 0; i < 100 && !readKeyFile(home.adminKey); i++) await sleep(100);
  if (!readKeyFile(home.adminKey)) throw new CliError(`the clc did not write ${home.adminKey}; see ${home.logFile('clc')}`);
}

/** Register this home's cc with the clc and its nc with the cc, unless already done with these URLs. */
async function registerComponents(link: AdminLink, home: Home, cluster: string, urls: Record<Service, string>, say: Say): Promise<void> {
  const { services } = await link.call(admin.DescribeServices, {});
  const cc = services.find((s) => s.type === 'cc' && s.name === cluster);
  if (!cc || cc.url !== urls.cc || !readKeyFile(home.cloudKey)) {
    if (cc) await link.call(admin.DeregisterCluster, { name: cluster });
    const { key } = await link.call(admin.RegisterCluster, { name: cluster, url: urls.cc });
    writeKeyFile(home.cloudKey, key);
    say(`registered cluster ${cluster} (${urls.cc}); its key is in ${home.cloudKey}`);
  }
  const node = nodeName();
  const nc = services.find((s) => s.type === 'nc' && s.name === node);
  if (!nc || nc.url !== urls.nc || !readKeyFile(home.nodeKey) || !cc || cc.url !== urls.cc) {
    const { key } = await link.call(admin.RegisterNodeAdmin, { cluster, node, url: urls.nc });
    writeKeyFile(home.nodeKey, key);
    say(`registered node ${node} (${urls.nc}) in cluster ${cluster}; its key is in ${home.nodeKey}`);
  }
}

/** Register this home's sc for the zone unless it already is at this URL; writes its key and Walrus credentials. */
async function registerStorage(link: AdminLink, home: Home, zone: string, urls: Record<Service, string>, say: Say): Promise<void> {
  const { services } = await link.call(admin.DescribeServices, {});
  const known = services.find((s) => s.type === 'sc' && s.name === zone);
  if (known && known.url === urls.sc && readKeyFile(home.scKey) && existsSync(home.blockStorage)) return;
  const res = await link.call(admin.RegisterStorageController, { zone, url: urls.sc, walrusUrl: urls.walrus });
  writeBlockStorage(home, res.key, res.storage);
  say(`registered storage controller for ${zone} (${urls.sc}); its keys are in ${home.scKey} and ${home.blockStorage}`);
}

export function writeBlockStorage(home: Home, key: string, storage: admin.BlockStorageCredentials): void {
  writeKeyFile(home.scKey, key);
  mkdirSync(home.keysDir, { recursive: true, mode: 0o700 });
  writeFileSync(home.blockStorage, JSON.stringify(storage, null, 2) + '\n', { mode: 0o600 });
}

/** tgtd is a host daemon (no systemd here): start it when it is installed and not answering. */
function ensureTgtd(say: Say): void {
  const show = spawnSync('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdio: 'ignore' });
  if (show.error) {
    say('sc: tgtadm is not installed (Debian package tgt): volumes can be created but not attached');
    return;
  }
  if (show.status === 0) return;
  const started = spawnSync('tgtd', [], { stdio: 'ignore' });
  say(started.status === 0 ? 'tgtd: started' : `tgtd: could not be started (${started.error?.message ?? `exit ${started.status}`})`);
  for (let i = 0; i < 50 && spawnSync('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdio: 'ignore' }).status !== 0; i++) spawnSync('sleep', ['0.1']);
}

/** A component still starting (the nc's KVM probe) gets this long; one that is just down, the poll-based window. */
const STARTING_WINDOW_MS = 180_000;

async function waitEnabled(link: AdminLink, home: Home, started: Service[], windowMs: number, say: Say): Promise<void> {
  await waitWithProgress<true>('waiting for every component to be ENABLED', async () => {
    for (const svc of started) {
      if (!serviceState(home, svc).running) return { state: `${svc} exited`, fatal: `${svc} exited; last lines of ${home.logFile(svc)}:\n${logTail(home.logFile(svc))}` };
    }
    const { services } = await link.call(admin.DescribeServices, {});
    const bad = services.filter((s) => s.state !== 'ENABLED');
    if (services.some((s) => s.type === 'nc') && bad.length === 0) return { value: true, state: 'all ENABLED' };
    const state = bad.map((s) => `${s.type} ${s.name}: ${s.state}${s.detail ? ` (${s.detail})` : ''}`).join('; ') || 'no node reported yet';
    return { state, starting: bad.some((s) => s.detail?.includes('NodeStarting')) };
  }, { timeoutMs: windowMs, startingTimeoutMs: STARTING_WINDOW_MS, intervalMs: 250 }).catch((err: unknown) => {
    throw new CliError(`the cloud is not healthy: ${(err as Error).message.replace(/^waiting for every component to be ENABLED: /, '')}. See the logs in ${home.logDir}`);
  });
  say('all components ENABLED');
}

export async function writeAccountCredentials(home: Home, link: AdminLink, config: MalleeConfig, account: string, outDir: string): Promise<WrittenCredentials> {
  const creds = await link.call(admin.GetCredentials, { accountName: account });
  // The home's own copy (the clc made it) serves its admin; any other directory gets one of its own.
  const certFile = outDir === home.dir && existsSync(home.cloudCert) ? home.cloudCert : join(outDir, 'cloud-cert.pem');
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  if (creds.cloudCertificate) writeCloudCertificate(certFile, creds.cloudCertificate);
  const user = await ensureUserCertificate(link, account, creds.userName, outDir);
  const walrus = serviceState(home, 'walrus').running ? serviceState(home, 'walrus').url : undefined;
  return writeCredentials(outDir, creds, {
    ec2Url: `${link.url.replace(/\/$/, '')}/services/compute`,
    s3Url: walrus ?? `${link.url.replace(/\/$/, '')}/services/Walrus`,
    region: config.REGION,
    certFile,
    userCertFile: user.certFile,
    userKeyFile: user.keyFile,
  });
}

export interface UpResult {
  config: MalleeConfig;
  urls: Record<Service, string>;
  credentials: WrittenCredentials;
}

export async function up(home: Home, opts: UpOptions = {}): Promise<UpResult> {
  const say = opts.say ?? (() => {});
  const { config, env } = ensureConf(home, opts, say);
  const hv = config.HYPERVISOR === 'simulated' ? 'simulated' : 'libvirt';
  say(
    hv === 'simulated'
      ? `hypervisor: simulated (no real guests${libvirtUsable() ? '' : '; libvirt needs libvirtd running and the nc built with its driver'})`
      : `hypervisor: ${config.HYPERVISOR} (real guests through libvirtd; \`--hypervisor simulated\` in a new home for none)`,
  );
  const urls = {} as Record<Service, string>;
  for (const svc of SERVICES) {
    if (svc === 'sc') {
      if (!existsSync(serviceMain('sc'))) continue;
      ensureTgtd(say);
      // EBS is a part of the all-in-one that may be missing (no tgt here): the cloud comes up without it.
      urls.sc = await ensureRunning(home, svc, env, say).catch((err: unknown) => {
        say(`sc: not started, EBS volumes are unavailable: ${(err as Error).message}`);
        return '';
      });
      continue;
    }
    if (svc === 'walrus') {
      if (!existsSync(serviceMain('walrus'))) continue;
      // S3 is a convenience of the all-in-one here: the EC2 cloud comes up without it.
      urls.walrus = await ensureRunning(home, svc, env, say).catch((err: unknown) => {
        say(`walrus: not started, S3 is unavailable: ${(err as Error).message}`);
        return '';
      });
      continue;
    }
    urls[svc] = await ensureRunning(home, svc, env, say);
  }
  await waitForAdminKey(home);
  const link = adminLink(home);
  await registerComponents(link, home, config.ZONE, urls, say);
  if (urls.walrus) await ensureWalrusRegistered(link, home, urls.walrus, say);
  if (urls.sc && urls.walrus) await registerStorage(link, home, config.ZONE, urls, say);
  await waitEnabled(link, home, SERVICES.filter((svc) => urls[svc]), (config.POLL_INTERVAL * 3 + 15) * 1000, say);
  const credentials = await writeAccountCredentials(home, link, config, ADMIN_ACCOUNT, home.dir);
  return { config, urls, credentials };
}

export async function down(home: Home, say: Say = () => {}): Promise<void> {
  await stopSupervisor(home, say); // else it would start them again
  for (const svc of [...SERVICES].reverse()) say(`${svc}: ${await stopService(home, svc)}`);
}

export function configOf(home: Home): MalleeConfig {
  return loadConfig({ file: home.conf, overrides: { MALLEE_HOME: home.dir } });
}
