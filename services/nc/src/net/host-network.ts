// The node's side of MANAGED networking (Eucalyptus's NC: vnetStartNetwork on the node plus the
// guest's vif on the bridge): the network's bridge, joined to the CC by VXLAN (remote = the CC's
// private address) or an 802.1Q device, or the existing VNET_BRIDGE; and ebtables anti-spoofing on
// the guest's tap, so a guest can send only from its own MAC and private address.
import type { Logger } from 'pino';
import type { MalleeConfig } from '@mallee/config';
import { bridgeOf, deviceNames, execRunner, macForAddress, planLinks, planUnlink, readLinks, runAll, tapName, VXLAN_MTU, type CommandRunner, type NetworkLinkSpec } from '@mallee/vnet';

/** Every instance MAC starts with these two bytes (macForAddress: d0:0d + the private address, as Eucalyptus). */
const INSTANCE_MAC_PREFIX = 'd0:0d:00:00:00:00';
import type { InstanceSpec } from '@mallee/wire';
import type { GuestNic } from '../hypervisor.js';

/** How long a learned SYSTEM-mode address stays without the guest sending from it (refreshed by every frame it sends). */
const LEARN_TIMEOUT_S = 3600;
/** ncDescribeInstances reads the learned addresses at most this often. */
const LEARN_READ_MS = 2000;

export class HostNetwork {
  private readonly run: CommandRunner;
  private readonly prefix: string;
  private serial: Promise<unknown> = Promise.resolve();
  /** SYSTEM mode: the address each guest MAC was last seen sending from, as the kernel's set has it. */
  private learned = new Map<string, string>();
  private learnedAt = 0;

  constructor(
    private readonly config: MalleeConfig,
    private readonly log: Logger,
    run?: CommandRunner,
  ) {
    this.run = run ?? execRunner;
    this.prefix = config.VNET_PREFIX;
  }

  /** One host change at a time: launches in parallel share bridges. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.serial.catch(() => undefined).then(fn);
    this.serial = next;
    return next;
  }

  private linkSpec(spec: InstanceSpec, local?: string): NetworkLinkSpec {
    const n = spec.network!;
    return {
      mode: n.mode,
      encap: n.encap,
      index: spec.vlan ?? 0,
      prefix: this.prefix,
      privInterface: this.config.VNET_PRIVINTERFACE,
      sharedBridge: this.config.VNET_BRIDGE,
      ...(local ? { local } : {}),
      ...(n.tunnelRemote ? { remote: n.tunnelRemote } : {}),
    };
  }

  /** Bridge (and tunnel) up, anti-spoofing for the tap in place; the NIC the driver attaches. Undefined: user-mode networking. */
  prepare(spec: InstanceSpec): Promise<GuestNic | undefined> {
    if (!spec.network || !spec.macAddress) return Promise.resolve(undefined);
    return this.exclusive(async () => {
      const n = spec.network!;
      const local = n.mode === 'MANAGED' && n.encap === 'vxlan' ? await this.addressOf(this.config.VNET_PRIVINTERFACE) : undefined;
      const ls = this.linkSpec(spec, local);
      await runAll(this.run, planLinks(await readLinks(this.run), ls));
      const tap = tapName(this.prefix, spec.instanceId);
      if (n.mode !== 'SYSTEM' && spec.privateIp) await this.antiSpoof(tap, spec.macAddress!, spec.privateIp, n.cidr);
      if (n.mode === 'SYSTEM') await this.ensureLearning();
      const nic: GuestNic = { bridge: bridgeOf(ls), mac: spec.macAddress!, tap };
      if (n.mode === 'MANAGED' && n.encap === 'vxlan') nic.mtu = VXLAN_MTU;
      this.log.info({ instanceId: spec.instanceId, bridge: nic.bridge, tap, vlan: spec.vlan }, 'guest network prepared');
      return nic;
    });
  }

  /**
   * At the nc's start, for a guest it adopted: whatever of its network the host lost (a bridge or tunnel deleted, the tap
   * off its bridge, the anti-spoofing chain or its hook gone) is put back; what is there is left exactly as it is, so a
   * plain restart changes nothing under a running guest. Returns what it had to fix.
   */
  restore(spec: InstanceSpec): Promise<string[]> {
    if (!spec.network || !spec.macAddress) return Promise.resolve([]);
    return this.exclusive(async () => {
      const fixed: string[] = [];
      const n = spec.network!;
      const local = n.mode === 'MANAGED' && n.encap === 'vxlan' ? await this.addressOf(this.config.VNET_PRIVINTERFACE) : undefined;
      const ls = this.linkSpec(spec, local);
      const plan = planLinks(await readLinks(this.run), ls);
      if (plan.length) {
        await runAll(this.run, plan);
        fixed.push(...plan.map((c) => c.join(' ')));
      }
      const tap = tapName(this.prefix, spec.instanceId);
      const bridge = bridgeOf(ls);
      // The chain first: a tap goes back on its bridge only once its traffic is filtered again.
      if (n.mode !== 'SYSTEM' && spec.privateIp && !(await this.antiSpoofInPlace(tap, spec.privateIp, n.cidr))) {
        await this.antiSpoof(tap, spec.macAddress!, spec.privateIp, n.cidr);
        fixed.push(`ebtables ${this.chainOf(tap)}`);
      }
      if (n.mode === 'SYSTEM' && !(await this.learningInPlace())) {
        await this.ensureLearning();
        fixed.push(`nft table bridge ${this.learnTable}`);
      }
      const tapLink = (await readLinks(this.run)).get(tap);
      if (tapLink && tapLink.master !== bridge) {
        await this.run(['ip', 'link', 'set', tap, 'master', bridge]);
        fixed.push(`ip link set ${tap} master ${bridge}`);
      }
      if (fixed.length) this.log.warn({ instanceId: spec.instanceId, fixed }, 'an adopted guest\'s network was incomplete on this host; restored it');
      return fixed;
    });
  }

  /** The tap's chain is there, speaks for this address (and, on a shared segment, guards destinations) and is hooked into FORWARD. */
  private async antiSpoofInPlace(tap: string, ip: string, cidr?: string): Promise<boolean> {
    const chain = this.chainOf(tap);
    const rules = await this.run(['ebtables', '-L', chain]).catch(() => undefined);
    if (rules === undefined || !rules.includes(`--ip-src ${ip} `) || !/-j DROP\s*$/.test(rules.trim())) return false;
    if (cidr) {
      const guard = await this.run(['ebtables', '-L', this.guardOf(tap)]).catch(() => undefined);
      if (guard === undefined || !guard.includes(`--ip-dst ! ${cidr}`) || !rules.includes(`-j ${this.guardOf(tap)}`)) return false;
    }
    return (await this.run(['ebtables', '-L', 'FORWARD'])).split('\n').some((l) => l.includes(`-i ${tap} `) && l.includes(`-j ${chain}`));
  }

  /** Remove the guest's anti-spoofing chain, and the network's bridge once no guest is on it. */
  release(spec: InstanceSpec): Promise<void> {
    if (!spec.network) return Promise.resolve();
    return this.exclusive(async () => {
      const tap = tapName(this.prefix, spec.instanceId);
      const chain = this.chainOf(tap);
      while (await this.run(['ebtables', '-D', 'FORWARD', '-i', tap, '-j', chain]).then(() => true, () => false));
      // ebtables-nft deletes only empty chains; the guard only once the tap's chain (its one user) is gone.
      for (const c of [chain, this.guardOf(tap)]) await this.removeChain(c, spec.instanceId);
      if (spec.network!.mode === 'SYSTEM') {
        // The learning table goes with the node's last SYSTEM guest (its tap is gone by now, or about to be).
        const taps = [...(await readLinks(this.run)).keys()].filter((l) => l.startsWith(`${this.prefix}t`) && l !== tap);
        if (taps.length === 0) await this.run(['nft', 'delete', 'table', 'bridge', this.learnTable]).catch(() => undefined);
        this.learned.delete(spec.macAddress ?? '');
        return;
      }
      if (spec.network!.mode !== 'MANAGED') return;
      const links = await readLinks(this.run);
      const bridge = deviceNames(this.prefix, spec.vlan ?? 0).bridge;
      const ports = [...links.values()].filter((l) => l.master === bridge && l.kind !== 'vxlan' && l.kind !== 'vlan' && l.name !== tap);
      if (ports.length === 0) await runAll(this.run, planUnlink(links, { mode: 'MANAGED', prefix: this.prefix, index: spec.vlan ?? 0 }));
    });
  }

  /**
   * SYSTEM mode: the address the site's DHCP gave a guest, as the guest itself uses it. Eucalyptus's CC matched the
   * instance's MAC against an ARP table; here the node's kernel learns it: an nftables set on the bridge (prerouting,
   * so frames to the node itself count too) records MAC . source address of every ARP and IPv4 frame a guest's tap
   * sends (not DHCP's 0.0.0.0), refreshed by each one. The most recently refreshed address of a MAC is its address.
   * Undefined until the guest has sent from one. (SYSTEM has no anti-spoofing, as in Eucalyptus: a guest can claim
   * another address, and then that is what is reported.)
   */
  async learnedAddress(mac: string): Promise<string | undefined> {
    if (Date.now() - this.learnedAt > LEARN_READ_MS) {
      this.learnedAt = Date.now();
      this.learned = await this.readLearned().catch((err: unknown) => {
        this.log.debug({ err: (err as Error).message }, 'no learned SYSTEM-mode addresses to read');
        return new Map<string, string>();
      });
    }
    return this.learned.get(mac.toLowerCase());
  }

  private get learnTable(): string {
    return `${this.prefix.replace(/[^A-Za-z0-9_]/g, '_')}_learn`;
  }

  private async ensureLearning(): Promise<void> {
    const t = this.learnTable;
    const taps = `"${this.prefix}t*"`;
    // One transaction: the table, set and chain are created if missing and the chain's rules replaced, so it is idempotent.
    await this.run(['nft', '-f', '-'], {
      input: [
        `add table bridge ${t}`,
        `add set bridge ${t} addrs { type ether_addr . ipv4_addr; flags dynamic, timeout; timeout ${LEARN_TIMEOUT_S}s; }`,
        `add chain bridge ${t} learn { type filter hook prerouting priority 0; policy accept; }`,
        `flush chain bridge ${t} learn`,
        `add rule bridge ${t} learn iifname ${taps} ether type arp arp saddr ip != 0.0.0.0 update @addrs { ether saddr . arp saddr ip }`,
        `add rule bridge ${t} learn iifname ${taps} ether type ip ip saddr != 0.0.0.0 update @addrs { ether saddr . ip saddr }`,
        '',
      ].join('\n'),
    });
  }

  private async learningInPlace(): Promise<boolean> {
    const out = await this.run(['nft', 'list', 'chain', 'bridge', this.learnTable, 'learn']).catch(() => '');
    return (out.match(/update @addrs/g) ?? []).length === 2;
  }

  private async readLearned(): Promise<Map<string, string>> {
    const out = JSON.parse(await this.run(['nft', '-j', 'list', 'set', 'bridge', this.learnTable, 'addrs'])) as {
      nftables?: { set?: { elem?: ({ elem?: { val?: { concat?: string[] }; expires?: number } } | { concat?: string[] })[] } }[];
    };
    const best = new Map<string, { ip: string; expires: number }>();
    for (const entry of out.nftables ?? []) {
      for (const e of entry.set?.elem ?? []) {
        const full = 'elem' in e ? e.elem : undefined;
        const pair = full?.val?.concat ?? ('concat' in e ? e.concat : undefined);
        if (!pair || pair.length !== 2) continue;
        const [mac, ip] = [pair[0]!.toLowerCase(), pair[1]!];
        const expires = full?.expires ?? 0;
        const have = best.get(mac);
        if (!have || expires > have.expires) best.set(mac, { ip, expires });
      }
    }
    return new Map([...best].map(([mac, v]) => [mac, v.ip]));
  }

  private chainOf(tap: string): string {
    return `${tap.toUpperCase()}`;
  }

  /**
   * Flush and delete one ebtables chain, until it is gone: a delete that fails while the chain is still there is
   * tried again, and said in the log if it never succeeds (a chain that does not exist is done).
   */
  private async removeChain(chain: string, instanceId: string): Promise<void> {
    let last: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * attempt));
      if ((await this.run(['ebtables', '-L', chain]).catch(() => undefined)) === undefined) return;
      try {
        await this.run(['ebtables', '-F', chain]);
        await this.run(['ebtables', '-X', chain]);
        return;
      } catch (err) {
        last = err;
      }
    }
    this.log.warn({ err: last, instanceId, chain }, 'could not delete the guest\'s ebtables chain');
  }

  /** The destination guard of a guest on a shared segment (MANAGED-NOVLAN). */
  private guardOf(tap: string): string {
    return `${tap.toUpperCase()}-D`;
  }

  /**
   * MANAGED-NOVLAN: every network shares one segment, so without a guard a guest reaches another group's guests
   * directly (an on-link route and ARP) and the CC's group rules never see it. From the tap, unicast frames may go
   * to the instances of its own network (their MACs are d0:0d + the address, so one masked match) or to anything
   * that is not an instance (the CC's gateway, the node); frames to any other instance's MAC, and IPv4 sent to a
   * broadcast or multicast MAC for an address outside its own network, are dropped. Traffic between groups thus
   * always crosses the CC, where the group rules (and nothing else) decide.
   */
  private async destinationGuard(tap: string, cidr: string): Promise<string> {
    const guard = this.guardOf(tap);
    const [network, prefix] = cidr.split('/') as [string, string];
    const hostBits = 32 - Number(prefix);
    const mask = ['ff', 'ff', ...[24, 16, 8, 0].map((shift) => ((((0xffffffff << hostBits) >>> 0) >>> shift) & 255).toString(16).padStart(2, '0'))].join(':');
    const rules = [
      ['-d', `${macForAddress(network)}/${mask}`, '-j', 'RETURN'],
      ['-d', `${INSTANCE_MAC_PREFIX}/ff:ff:00:00:00:00`, '-j', 'DROP'],
      ['-p', 'IPv4', '-d', 'Multicast', '--ip-dst', '255.255.255.255', '-j', 'RETURN'],
      ['-p', 'IPv4', '-d', 'Multicast', '--ip-dst', '224.0.0.0/4', '-j', 'RETURN'],
      ['-p', 'IPv4', '-d', 'Multicast', '--ip-dst', '!', cidr, '-j', 'DROP'],
    ];
    const listed = await this.run(['ebtables', '-L', guard]).catch(() => undefined);
    if (listed === undefined) await this.run(['ebtables', '-N', guard]);
    else await this.run(['ebtables', '-F', guard]);
    for (const r of rules) await this.run(['ebtables', '-A', guard, ...r]);
    return guard;
  }

  /** ebtables: from the tap only its own MAC, IPv4 from its own address (or DHCP's 0.0.0.0), ARP for its own address. */
  private async antiSpoof(tap: string, mac: string, ip: string, cidr?: string): Promise<void> {
    const chain = this.chainOf(tap);
    const listed = await this.run(['ebtables', '-L', chain]).catch(() => undefined);
    if (listed === undefined) await this.run(['ebtables', '-N', chain]);
    else {
      // Rebuilt in place, closed meanwhile: a guard DROP first, then the old rules out and the new ones in
      // behind it, then the guard out. (A flush would let everything through until the last DROP is back,
      // and ebtables-nft keeps no DROP policy on a user chain.)
      await this.run(['ebtables', '-I', chain, '1', '-j', 'DROP']);
      const old = Number(/entries: (\d+)/.exec(listed)?.[1] ?? 0);
      for (let i = 0; i < old; i++) await this.run(['ebtables', '-D', chain, '2']);
    }
    const guard = cidr ? await this.destinationGuard(tap, cidr) : undefined;
    const rules = [
      ['-s', '!', mac, '-j', 'DROP'],
      ...(guard ? [['-j', guard]] : []),
      ['-p', 'IPv4', '--ip-src', ip, '-j', 'RETURN'],
      ['-p', 'IPv4', '--ip-src', '0.0.0.0', '--ip-proto', 'udp', '--ip-dport', '67', '-j', 'RETURN'],
      ['-p', 'ARP', '--arp-ip-src', ip, '--arp-mac-src', mac, '-j', 'RETURN'],
      ['-p', 'ARP', '--arp-ip-src', '0.0.0.0', '--arp-mac-src', mac, '-j', 'RETURN'],
      // Everything else from the tap (another address, IPv6, other protocols) stops here.
      ['-j', 'DROP'],
    ];
    for (const r of rules) await this.run(['ebtables', '-A', chain, ...r]);
    if (listed !== undefined) await this.run(['ebtables', '-D', chain, '1']);
    const hooked = (await this.run(['ebtables', '-L', 'FORWARD'])).split('\n').some((l) => l.includes(`-i ${tap} `) && l.includes(`-j ${chain}`));
    if (!hooked) await this.run(['ebtables', '-A', 'FORWARD', '-i', tap, '-j', chain]);
  }

  private async addressOf(dev: string): Promise<string | undefined> {
    const out = JSON.parse(await this.run(['ip', '-j', '-4', 'addr', 'show', 'dev', dev])) as { addr_info?: { local: string }[] }[];
    return out[0]?.addr_info?.[0]?.local;
  }
}
