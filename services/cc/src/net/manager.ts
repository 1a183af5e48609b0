// The CC's MANAGED network (Eucalyptus vnetwork.c on the cluster controller): for every live
// network a bridge joined to the nodes by VXLAN (or 802.1Q, or one shared bridge), the CC's gateway
// address on it, dnsmasq with each instance's static lease, the security-group chains, the public
// addresses with their DNAT/SNAT, and the metadata service. The desired state comes from the clc
// (StartNetwork, ConfigureNetwork, AssignAddress, UnassignAddress) and is kept in cc.sqlite, so a
// restarted cc re-applies it at once; applying is idempotent and removes whatever is stale. The
// cc never tears the network down when it stops: guests keep their traffic across a restart.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import type { Db, Migration } from '@mallee/store';
import {
  bridgeOf, deviceNames, execRunner, ipToInt, managedBridgeIndices, parsePublicIps, prefixLength, planLinks, planUnlink, privateDnsDomain, privateHostName, privateNetwork, readLinks, runAll,
  VXLAN_MTU, type AddressPlan, type CommandRunner, type NetworkLinkSpec, type VnetMode,
} from '@mallee/vnet';
import type { cc, InstanceSpec } from '@mallee/wire';
import { Dnsmasq } from './dnsmasq.js';
import { applyRules } from './iptables.js';
import { buildMetadataServer, type MetadataInstance } from './metadata.js';

export const networkMigrations: Migration[] = [
  {
    id: 3,
    name: 'network state',
    // Soft state: the last network state the clc sent, and the spec of each launched instance
    // (what the metadata service and the DHCP leases are made from).
    up: `CREATE TABLE network_state (key TEXT PRIMARY KEY, data TEXT NOT NULL);
      CREATE TABLE instance_meta (instance_id TEXT PRIMARY KEY, private_ip TEXT, data TEXT NOT NULL, recorded_at INTEGER NOT NULL)`,
  },
];

export interface NetworkManagerOptions {
  config: MalleeConfig;
  home: string;
  db: Db;
  log: Logger;
  run?: CommandRunner;
  /** Hosts (addresses or names) of the registered nodes: the VXLAN tunnels' far ends. */
  nodeHosts: () => string[];
  /** Instances the cluster still runs or is launching; metadata of others is dropped. */
  liveInstances: () => Set<string>;
}

interface State {
  networks: cc.NetworkSpec[];
  addresses: cc.AddressMapping[];
  /** Leases the clc knows of (a cc that lost its own launch records still serves them). */
  instances?: cc.NetworkInstance[];
}

/** How long a launched instance's record survives without the cluster reporting it (launches take a moment to show). */
const META_GRACE_MS = 120_000;

export class NetworkManager {
  readonly mode: MalleeConfig['VNET_MODE'];
  /** The host can be configured: a MANAGED mode and VNET_PRIVINTERFACE exists. */
  active = false;
  private readonly run: CommandRunner;
  private readonly plan: AddressPlan;
  private readonly prefix: string;
  private readonly dnsmasq: Dnsmasq;
  private readonly pool: Set<string>;
  private state: State = { networks: [], addresses: [] };
  private tunnelLocal: string | undefined;
  private applying: Promise<void> = Promise.resolve();
  private metadata: FastifyInstance | undefined;
  private readonly log: Logger;

  constructor(private readonly o: NetworkManagerOptions) {
    this.mode = o.config.VNET_MODE;
    this.run = o.run ?? execRunner;
    this.plan = { subnet: o.config.VNET_SUBNET, netmask: o.config.VNET_NETMASK, addrsPerNet: o.config.VNET_ADDRSPERNET };
    this.prefix = o.config.VNET_PREFIX;
    this.pool = new Set(parsePublicIps(o.config.VNET_PUBLICIPS));
    this.log = o.log.child({ component: 'network' });
    this.dnsmasq = new Dnsmasq(join(o.home, 'run', 'dnsmasq'), this.run, this.log);
    const saved = o.db.prepare("SELECT data FROM network_state WHERE key = 'desired'").pluck().get() as string | undefined;
    if (saved) this.state = JSON.parse(saved) as State;
  }

  get managed(): boolean {
    return this.mode === 'MANAGED' || this.mode === 'MANAGED-NOVLAN';
  }

  /** Check the host, restore the last known state and serve metadata. */
  async start(): Promise<void> {
    if (!this.managed) {
      this.log.info({ mode: this.mode }, this.mode === 'SYSTEM' ? 'SYSTEM networking: guests use the existing bridge and its DHCP' : 'user-mode networking: no bridges, groups or public addresses');
      return;
    }
    const priv = this.o.config.VNET_PRIVINTERFACE;
    const links = await readLinks(this.run).catch(() => new Map());
    if (!links.has(priv)) {
      this.log.error({ mode: this.mode, VNET_PRIVINTERFACE: priv }, `${this.mode} networking is off: VNET_PRIVINTERFACE ${priv} does not exist on this host (set it in mallee.conf, or VNET_MODE="USERMODE")`);
      return;
    }
    this.active = true;
    await this.run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    if (this.mode === 'MANAGED-NOVLAN') {
      // Every network is on one segment, so the cc routes between them in and out of the same device: it must not
      // tell a guest (by ICMP redirect, sent before FORWARD filters) to go to another network's guest directly, past the
      // group rules. (The kernel sends a redirect if `all` or the device allows it.)
      const shared = bridgeOf(this.linkSpec(0));
      for (const dev of ['all', shared]) await this.run(['sysctl', '-q', '-w', `net/ipv4/conf/${dev}/send_redirects=0`]);
    }
    this.tunnelLocal = await this.addressOf(priv);
    const port = this.o.config.METADATA_PORT;
    this.metadata = buildMetadataServer({ logger: this.log, instanceFor: (caller, local) => this.instanceFor(caller, local) });
    await this.metadata.listen({ port, host: '0.0.0.0' });
    this.log.info({ mode: this.mode, encap: this.o.config.VNET_ENCAP, tunnelLocal: this.tunnelLocal, metadataPort: port, networks: this.state.networks.length }, 'MANAGED networking: restoring the last known network state');
    await this.apply();
  }

  /** Stops serving metadata; bridges, rules and dnsmasq stay so guests keep their traffic. */
  async stop(): Promise<void> {
    await this.applying.catch(() => undefined);
    await this.metadata?.close();
  }

  /** What the NC needs to attach the guest (and the CC to serve it): recorded before the launch goes out. */
  async prepareLaunch(spec: InstanceSpec): Promise<InstanceSpec> {
    // SYSTEM: the node bridges the guest onto its VNET_BRIDGE; addresses come from the site's DHCP.
    if (this.mode === 'SYSTEM' && spec.macAddress) return { ...spec, network: { mode: 'SYSTEM', encap: this.o.config.VNET_ENCAP } };
    if (!this.active || spec.vlan === undefined || !spec.privateIp || !spec.macAddress) return spec;
    const out: InstanceSpec = {
      ...spec,
      network: {
        mode: this.mode as Exclude<VnetMode, 'SYSTEM'>,
        encap: this.o.config.VNET_ENCAP,
        ...(this.mode === 'MANAGED' && this.o.config.VNET_ENCAP === 'vxlan' && this.tunnelLocal ? { tunnelRemote: this.tunnelLocal } : {}),
        ...(this.mode === 'MANAGED-NOVLAN' ? { cidr: privateNetwork(this.plan, spec.vlan).cidr } : {}),
      },
    };
    this.o.db.prepare('INSERT OR REPLACE INTO instance_meta (instance_id, private_ip, data, recorded_at) VALUES (?, ?, ?, ?)')
      .run(spec.instanceId, spec.privateIp, JSON.stringify(out), Date.now());
    if (!this.state.networks.some((n) => n.vlan === spec.vlan)) {
      // Until the clc's StartNetwork/ConfigureNetwork names its group: up, and closed to everything.
      this.state.networks.push({ vlan: spec.vlan, accountId: spec.ownerId, groupId: '', groupName: spec.groupNames[0] ?? '', rules: [] });
    }
    if (spec.publicIp && !this.state.addresses.some((a) => a.publicIp === spec.publicIp)) {
      this.state.addresses.push({ publicIp: spec.publicIp, privateIp: spec.privateIp, instanceId: spec.instanceId });
    }
    await this.apply();
    return out;
  }

  async startNetwork(net: cc.NetworkSpec): Promise<{ vlan: number; gateway: string; cidr: string }> {
    this.state.networks = [...this.state.networks.filter((n) => n.vlan !== net.vlan), net];
    await this.apply();
    const p = privateNetwork(this.plan, net.vlan);
    return { vlan: net.vlan, gateway: p.gateway, cidr: p.cidr };
  }

  async configure(desired: State): Promise<{ networks: number; addresses: number; mode: string }> {
    this.state = { networks: desired.networks, addresses: desired.addresses, instances: desired.instances ?? [] };
    await this.apply();
    return { networks: desired.networks.length, addresses: desired.addresses.length, mode: this.active ? this.mode : `${this.mode} (inactive)` };
  }

  async assign(m: cc.AddressMapping): Promise<void> {
    this.state.addresses = [...this.state.addresses.filter((a) => a.publicIp !== m.publicIp && a.privateIp !== m.privateIp), m];
    await this.apply();
  }

  async unassign(publicIp: string): Promise<void> {
    this.state.addresses = this.state.addresses.filter((a) => a.publicIp !== publicIp);
    await this.apply();
  }

  /** The public address now mapped to this private one. */
  publicIpOf(privateIp: string): string | undefined {
    return this.state.addresses.find((a) => a.privateIp === privateIp)?.publicIp;
  }

  /**
   * The metadata service's caller: the instance with this private address, if it still runs (or is being
   * launched) and the request reached the gateway of its own network (where its 169.254.169.254 is DNATed).
   * A terminated instance's address, another network's gateway, the front end's own or public addresses: nothing.
   */
  instanceFor(caller: string, local: string): MetadataInstance | undefined {
    const row = this.o.db.prepare('SELECT data, recorded_at AS at FROM instance_meta WHERE private_ip = ? ORDER BY recorded_at DESC LIMIT 1').get(caller) as { data: string; at: number } | undefined;
    if (!row) return undefined;
    const spec = JSON.parse(row.data) as InstanceSpec;
    if (!this.o.liveInstances().has(spec.instanceId) && Date.now() - row.at > META_GRACE_MS) return undefined;
    if (spec.vlan === undefined || privateNetwork(this.plan, spec.vlan).gateway !== local) return undefined;
    const ip = caller;
    const pub = this.publicIpOf(ip);
    return { spec, zone: spec.zone ?? this.o.config.ZONE, region: this.o.config.REGION, ...(pub ? { publicIp: pub } : {}) };
  }

  /** Apply the whole state (serialised: one apply at a time, each sees the latest state). */
  apply(): Promise<void> {
    const next = this.applying.catch(() => undefined).then(() => this.applyNow());
    this.applying = next;
    return next;
  }

  private async applyNow(): Promise<void> {
    this.o.db.prepare("INSERT OR REPLACE INTO network_state (key, data) VALUES ('desired', ?)").run(JSON.stringify(this.state));
    if (!this.active) return;
    const started = Date.now();
    const cfg = this.o.config;
    this.pruneMeta();
    const links = await readLinks(this.run);
    const bridges = new Map<string, number[]>();
    const nodes = await this.nodeAddresses();
    for (const n of this.state.networks) {
      const spec = this.linkSpec(n.vlan);
      await runAll(this.run, planLinks(links, spec));
      const bridge = bridgeOf(spec);
      bridges.set(bridge, [...(bridges.get(bridge) ?? []), n.vlan]);
      const net = privateNetwork(this.plan, n.vlan);
      await this.ensureAddress(bridge, `${net.gateway}/${net.prefix}`);
      if (this.mode === 'MANAGED' && cfg.VNET_ENCAP === 'vxlan') await this.ensureFdb(deviceNames(this.prefix, n.vlan).vxlan, nodes);
    }
    const wanted = new Set(this.state.networks.map((n) => n.vlan));
    if (this.mode === 'MANAGED') {
      for (const idx of managedBridgeIndices(links, this.prefix).filter((i) => !wanted.has(i))) {
        await runAll(this.run, planUnlink(links, { mode: 'MANAGED', prefix: this.prefix, index: idx }));
        this.log.info({ vlan: idx }, 'removed the bridge of a network no instance uses any more');
      }
    } else {
      // One shared bridge: the gateway addresses of networks no instance uses any more come off it.
      const shared = bridgeOf(this.linkSpec(0));
      for (const idx of await this.gatewaysOn(shared)) {
        if (wanted.has(idx)) continue;
        const net = privateNetwork(this.plan, idx);
        await this.run(['ip', 'addr', 'del', `${net.gateway}/${net.prefix}`, 'dev', shared]);
        this.log.info({ vlan: idx, bridge: shared }, 'removed the gateway of a network no instance uses any more');
      }
    }
    const metas = this.o.db.prepare('SELECT data FROM instance_meta').pluck().all() as string[];
    const leases = new Map<string, { vlan: number; ip: string; mac: string }>();
    for (const i of this.state.instances ?? []) leases.set(i.instanceId, { vlan: i.vlan, ip: i.privateIp, mac: i.macAddress });
    for (const s of metas.map((m) => JSON.parse(m) as InstanceSpec)) {
      if (s.vlan !== undefined && s.privateIp && s.macAddress) leases.set(s.instanceId, { vlan: s.vlan, ip: s.privateIp, mac: s.macAddress });
    }
    const now = await readLinks(this.run);
    const domain = privateDnsDomain(cfg.REGION);
    // Every instance of the zone by name, at every network's dnsmasq (a guest resolves other groups' instances too).
    const namesChanged = this.dnsmasq.writeNames([...leases.values()].map((l) => ({ ip: l.ip, name: privateHostName(l.ip) })), domain);
    for (const [bridge, vlans] of bridges) {
      const ifindex = now.get(bridge)?.ifindex;
      await this.dnsmasq.ensure({
        bridge,
        ...(ifindex !== undefined ? { ifindex } : {}),
        networks: vlans.map((v) => privateNetwork(this.plan, v)),
        hosts: [...leases.values()].filter((l) => vlans.includes(l.vlan)).map((l) => ({ mac: l.mac, ip: l.ip, hostname: privateHostName(l.ip) })),
        ...(this.mode === 'MANAGED' && cfg.VNET_ENCAP === 'vxlan' ? { mtu: VXLAN_MTU } : {}),
        ...(cfg.VNET_DNS ? { dns: cfg.VNET_DNS } : {}),
        domain,
      }, namesChanged);
    }
    await this.dnsmasq.retain(new Set(bridges.keys()));
    await applyRules(this.run, {
      prefix: this.prefix, plan: this.plan, networks: this.state.networks, addresses: this.state.addresses,
      metadataPort: cfg.METADATA_PORT, pubInterface: cfg.VNET_PUBINTERFACE, bridgeOf: (vlan) => bridgeOf(this.linkSpec(vlan)),
      guestPorts: [cfg.CLC_PORT, cfg.WALRUS_PORT],
    });
    await this.syncPublicAddresses();
    this.log.debug({ ms: Date.now() - started, networks: this.state.networks.length, addresses: this.state.addresses.length }, 'network state applied');
  }

  private linkSpec(vlan: number): NetworkLinkSpec {
    const cfg = this.o.config;
    return {
      mode: this.mode as VnetMode,
      encap: cfg.VNET_ENCAP,
      index: vlan,
      prefix: this.prefix,
      privInterface: cfg.VNET_PRIVINTERFACE,
      // MANAGED-NOVLAN: the gateways sit on VNET_BRIDGE, or on the private interface itself.
      sharedBridge: cfg.VNET_BRIDGE || cfg.VNET_PRIVINTERFACE,
      ...(this.tunnelLocal ? { local: this.tunnelLocal } : {}),
    };
  }

  /** Network indices whose gateway address (with the network's prefix) sits on this device. */
  private async gatewaysOn(dev: string): Promise<number[]> {
    const out = JSON.parse(await this.run(['ip', '-j', '-4', 'addr', 'show', 'dev', dev])) as { addr_info?: { local: string; prefixlen: number }[] }[];
    const base = (ipToInt(this.plan.subnet) & ipToInt(this.plan.netmask)) >>> 0;
    const size = 2 ** (32 - prefixLength(this.plan.netmask));
    const found: number[] = [];
    for (const a of out[0]?.addr_info ?? []) {
      const off = ipToInt(a.local) - base;
      if (off < 0 || off >= size || off % this.plan.addrsPerNet !== 1) continue;
      const idx = (off - 1) / this.plan.addrsPerNet;
      if (a.prefixlen === privateNetwork(this.plan, idx).prefix) found.push(idx);
    }
    return found;
  }

  private async addressOf(dev: string): Promise<string | undefined> {
    const out = JSON.parse(await this.run(['ip', '-j', '-4', 'addr', 'show', 'dev', dev])) as { addr_info?: { local: string }[] }[];
    return out[0]?.addr_info?.[0]?.local;
  }

  private async ensureAddress(dev: string, cidr: string): Promise<void> {
    const out = JSON.parse(await this.run(['ip', '-j', '-4', 'addr', 'show', 'dev', dev])) as { addr_info?: { local: string; prefixlen: number }[] }[];
    const have = (out[0]?.addr_info ?? []).some((a) => `${a.local}/${a.prefixlen}` === cidr);
    if (!have) await this.run(['ip', 'addr', 'add', cidr, 'dev', dev]);
  }

  /** The VXLAN device floods to every node (head-end replication: one all-zero fdb entry per node). */
  private async ensureFdb(dev: string, nodes: string[]): Promise<void> {
    const out = JSON.parse(await this.run(['bridge', '-j', 'fdb', 'show', 'dev', dev])) as { mac: string; dst?: string }[];
    const have = new Set(out.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst!));
    for (const ip of nodes) if (!have.has(ip)) await this.run(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', dev, 'dst', ip]);
    for (const ip of have) if (!nodes.includes(ip)) await this.run(['bridge', 'fdb', 'del', '00:00:00:00:00:00', 'dev', dev, 'dst', ip]);
  }

  private async nodeAddresses(): Promise<string[]> {
    const out = new Set<string>();
    for (const host of this.o.nodeHosts()) {
      if (isIP(host) === 4) out.add(host);
      else if (host) await lookup(host, { family: 4 }).then((r) => out.add(r.address), (err: unknown) => this.log.warn({ host, err: (err as Error).message }, 'cannot resolve a node\'s host for its tunnel'));
    }
    if (this.tunnelLocal) out.delete(this.tunnelLocal);
    return [...out].sort();
  }

  /** The public addresses mapped now sit on VNET_PUBINTERFACE (/32), the pool's others do not. */
  private async syncPublicAddresses(): Promise<void> {
    const dev = this.o.config.VNET_PUBINTERFACE;
    const out = JSON.parse(await this.run(['ip', '-j', '-4', 'addr', 'show', 'dev', dev]).catch(() => '[]')) as { addr_info?: { local: string; prefixlen: number }[] }[];
    if (out.length === 0) {
      if (this.state.addresses.length) this.log.error({ VNET_PUBINTERFACE: dev }, 'VNET_PUBINTERFACE does not exist: public addresses cannot be reached');
      return;
    }
    const have = new Set((out[0]?.addr_info ?? []).filter((a) => a.prefixlen === 32 && this.pool.has(a.local)).map((a) => a.local));
    const wanted = new Set(this.state.addresses.map((a) => a.publicIp));
    for (const ip of wanted) if (!have.has(ip)) await this.run(['ip', 'addr', 'add', `${ip}/32`, 'dev', dev]);
    for (const ip of have) if (!wanted.has(ip)) await this.run(['ip', 'addr', 'del', `${ip}/32`, 'dev', dev]);
  }

  private pruneMeta(): void {
    const live = this.o.liveInstances();
    const rows = this.o.db.prepare('SELECT instance_id, recorded_at FROM instance_meta').all() as { instance_id: string; recorded_at: number }[];
    const del = this.o.db.prepare('DELETE FROM instance_meta WHERE instance_id = ?');
    for (const r of rows) if (!live.has(r.instance_id) && Date.now() - r.recorded_at > META_GRACE_MS) del.run(r.instance_id);
  }
}
