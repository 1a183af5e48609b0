// DHCP and DNS for the private networks: one dnsmasq per bridge (so one per network in MANAGED, one for
// the shared bridge in MANAGED-NOVLAN), static leases only — each instance's MAC gets its address, as
// Eucalyptus's vnetwork.c writes dhcpd.conf. Each also answers DNS at its gateways for every instance's
// private DNS name in the zone (one names file all of them read, so a guest resolves another group's
// instances too, as on EC2); other names go to VNET_DNS (else the front end's resolv.conf). dnsmasq runs
// detached with a pid file, so a cc restart does not interrupt DHCP; changed hosts or names are re-read
// on SIGHUP, changed ranges restart it.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CommandRunner, PrivateNetwork } from '@mallee/vnet';

export interface DhcpHost {
  mac: string;
  ip: string;
  hostname: string;
}

/** A private DNS name and its address (the names file: `ip fqdn short`). */
export interface DnsName {
  ip: string;
  name: string;
}

export interface DhcpServer {
  /** The bridge it serves. */
  bridge: string;
  /** The bridge's ifindex: a bridge deleted and made again needs a dnsmasq bound to the new one. */
  ifindex?: number;
  networks: PrivateNetwork[];
  hosts: DhcpHost[];
  mtu?: number;
  /** The upstream resolver for names outside the cloud's domain (VNET_DNS); else the host's resolv.conf. */
  dns?: string;
  /** The private DNS names' domain (`<region>.compute.internal`): answered from the names file only, never forwarded. */
  domain: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dnsmasq');
  } catch {
    return false;
  }
}

export class Dnsmasq {
  constructor(
    private readonly dir: string,
    private readonly run: CommandRunner,
    private readonly log: Logger,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /** The names file every dnsmasq of this cc reads (addn-hosts). */
  get namesFile(): string {
    return join(this.dir, 'names');
  }

  /** Write the zone's private DNS names; true when they changed (the running dnsmasqs must re-read them). */
  writeNames(names: readonly DnsName[], domain: string): boolean {
    const text = [...names].sort((a, b) => a.ip.localeCompare(b.ip, 'en', { numeric: true }))
      .map((n) => `${n.ip} ${n.name}.${domain} ${n.name}`).join('\n') + '\n';
    if (existsSync(this.namesFile) && readFileSync(this.namesFile, 'utf8') === text) return false;
    writeFileSync(`${this.namesFile}.tmp`, text);
    renameSync(`${this.namesFile}.tmp`, this.namesFile);
    return true;
  }

  private files(bridge: string) {
    return {
      pid: join(this.dir, `${bridge}.pid`),
      hosts: join(this.dir, `${bridge}.hosts`),
      args: join(this.dir, `${bridge}.args`),
      leases: join(this.dir, `${bridge}.leases`),
      log: join(this.dir, `${bridge}.log`),
    };
  }

  private pidOf(bridge: string): number | undefined {
    try {
      const pid = Number(readFileSync(this.files(bridge).pid, 'utf8').trim());
      return pid > 0 && alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  args(s: DhcpServer): string[] {
    const f = this.files(s.bridge);
    return [
      'dnsmasq',
      '--conf-file=/dev/null',
      `--pid-file=${f.pid}`,
      `--interface=${s.bridge}`,
      '--bind-interfaces',
      '--except-interface=lo',
      // DNS at the gateways: the cloud's private names from the names file (never /etc/hosts of the front end), the
      // domain never forwarded, the rest to VNET_DNS or the host's resolvers.
      '--no-hosts',
      `--addn-hosts=${this.namesFile}`,
      `--local=/${s.domain}/`,
      '--domain-needed',
      '--bogus-priv',
      ...(s.dns ? ['--no-resolv', `--server=${s.dns}`] : []),
      '--dhcp-authoritative',
      `--dhcp-hostsfile=${f.hosts}`,
      `--dhcp-leasefile=${f.leases}`,
      `--log-facility=${f.log}`,
      '--log-dhcp',
      ...s.networks.flatMap((n) => [
        `--dhcp-range=set:n${n.index},${n.network},static,${n.netmask},1h`,
        `--dhcp-option=tag:n${n.index},option:router,${n.gateway}`,
        `--dhcp-option=tag:n${n.index},option:dns-server,${n.gateway}`,
      ]),
      ...(s.mtu ? [`--dhcp-option=option:mtu,${s.mtu}`] : []),
      `--dhcp-option=option:domain-name,${s.domain}`,
      `--dhcp-option=option:domain-search,${s.domain}`,
    ];
  }

  /** Make the bridge's dnsmasq serve exactly these networks and hosts. */
  async ensure(s: DhcpServer, namesChanged = false): Promise<void> {
    const f = this.files(s.bridge);
    const hosts = [...s.hosts].sort((a, b) => a.ip.localeCompare(b.ip)).map((h) => `${h.mac},${h.ip},${h.hostname}`).join('\n') + '\n';
    const hostsChanged = !existsSync(f.hosts) || readFileSync(f.hosts, 'utf8') !== hosts;
    if (hostsChanged) writeFileSync(f.hosts, hosts);
    const args = this.args(s);
    const argsHash = createHash('sha256').update(`${args.join('\0')}\0${s.ifindex ?? ''}`).digest('hex');
    const running = this.pidOf(s.bridge);
    const sameArgs = existsSync(f.args) && readFileSync(f.args, 'utf8') === argsHash;
    if (running && sameArgs) {
      if (hostsChanged || namesChanged) process.kill(running, 'SIGHUP');
      return;
    }
    if (running) await this.stopPid(running);
    writeFileSync(f.args, argsHash);
    await this.run(args);
    this.log.info({ bridge: s.bridge, networks: s.networks.map((n) => n.cidr), hosts: s.hosts.length }, 'dnsmasq serving DHCP');
  }

  /** Stop the dnsmasq of every bridge not in `keep`; returns the bridges stopped. */
  async retain(keep: ReadonlySet<string>): Promise<string[]> {
    const stopped: string[] = [];
    for (const name of readdirSync(this.dir)) {
      const bridge = /^(.+)\.pid$/.exec(name)?.[1];
      if (!bridge || keep.has(bridge)) continue;
      await this.stop(bridge);
      stopped.push(bridge);
    }
    return stopped;
  }

  async stop(bridge: string): Promise<void> {
    const pid = this.pidOf(bridge);
    if (pid) await this.stopPid(pid);
    const f = this.files(bridge);
    for (const file of [f.pid, f.hosts, f.args, f.leases]) rmSync(file, { force: true });
  }

  private async stopPid(pid: number): Promise<void> {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

