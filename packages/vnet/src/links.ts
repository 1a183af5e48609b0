// The host side of a private network, the same on the CC and on every NC: a bridge per network,
// joined to the other hosts by a VXLAN device (VNI = network index), an 802.1Q VLAN device on the
// private interface (tag = network index), or — MANAGED-NOVLAN and SYSTEM — one existing bridge.
// `planLinks` turns what is there and what is wanted into `ip` commands, so reconciling is
// idempotent and the commands can be checked without the kernel feature.
import type { CommandRunner } from './run.js';

export type VnetMode = 'MANAGED' | 'MANAGED-NOVLAN' | 'SYSTEM';
export type Encap = 'vlan' | 'vxlan';

/** The IANA VXLAN port. */
export const VXLAN_PORT = 4789;
/** VXLAN over IPv4 costs 50 bytes: guests on a VXLAN network are told this MTU by DHCP. */
export const VXLAN_MTU = 1450;

/** Device names (at most 15 characters): `<prefix>br<n>`, `<prefix>vx<n>`, `<prefix>vl<n>`. */
export const deviceNames = (prefix: string, index: number) => ({
  bridge: `${prefix}br${index}`,
  vxlan: `${prefix}vx${index}`,
  vlan: `${prefix}vl${index}`,
});

/** The tap device of an instance's NIC: `<prefix>t` + the id's last 8 hex digits. */
export function tapName(prefix: string, instanceId: string): string {
  return `${prefix}t${instanceId.replace(/^i-/, '').slice(-8)}`;
}

/** A link as `ip -j -d link show` reports it, reduced to what reconciling needs. */
export interface LinkInfo {
  name: string;
  ifindex?: number;
  kind?: string;
  master?: string;
  up: boolean;
  /** VXLAN VNI or VLAN tag. */
  id?: number;
}

export async function readLinks(run: CommandRunner): Promise<Map<string, LinkInfo>> {
  const out = await run(['ip', '-j', '-d', 'link', 'show']);
  const links = JSON.parse(out || '[]') as { ifname: string; ifindex?: number; master?: string; flags?: string[]; linkinfo?: { info_kind?: string; info_data?: { id?: number } } }[];
  return new Map(
    links.map((l) => [
      l.ifname,
      {
        name: l.ifname,
        ...(l.ifindex !== undefined ? { ifindex: l.ifindex } : {}),
        ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}),
        ...(l.master ? { master: l.master } : {}),
        up: (l.flags ?? []).includes('UP'),
        ...(l.linkinfo?.info_data?.id !== undefined ? { id: l.linkinfo.info_data.id } : {}),
      },
    ]),
  );
}

export interface NetworkLinkSpec {
  mode: VnetMode;
  encap: Encap;
  index: number;
  prefix: string;
  /** VNET_PRIVINTERFACE: carries the tagged or tunnelled traffic. */
  privInterface: string;
  /** MANAGED-NOVLAN / SYSTEM: the one existing bridge every network uses. */
  sharedBridge?: string;
  /** VXLAN: this host's address on the private interface (the tunnel's source). */
  local?: string;
  /** VXLAN on an NC: the CC's private address; on the CC there is no single remote (see fdb). */
  remote?: string;
}

/** The bridge a network's guests (and the CC's gateway) sit on. */
export function bridgeOf(spec: Pick<NetworkLinkSpec, 'mode' | 'prefix' | 'index' | 'sharedBridge'>): string {
  if (spec.mode !== 'MANAGED') {
    if (!spec.sharedBridge) throw new Error(`${spec.mode} needs VNET_BRIDGE (the existing bridge guests are attached to)`);
    return spec.sharedBridge;
  }
  return deviceNames(spec.prefix, spec.index).bridge;
}

/** Commands that bring the network's bridge (and its VLAN or VXLAN port) up; [] when all is in place. */
export function planLinks(current: Map<string, LinkInfo>, spec: NetworkLinkSpec): string[][] {
  const cmds: string[][] = [];
  const bridge = bridgeOf(spec);
  if (spec.mode !== 'MANAGED') {
    if (!current.has(bridge)) throw new Error(`bridge ${bridge} (VNET_BRIDGE) does not exist on this host; ${spec.mode} attaches guests to an existing bridge`);
    if (!current.get(bridge)!.up) cmds.push(['ip', 'link', 'set', bridge, 'up']);
    return cmds;
  }
  const names = deviceNames(spec.prefix, spec.index);
  const port = spec.encap === 'vxlan' ? names.vxlan : names.vlan;
  const br = current.get(bridge);
  if (br && br.kind !== 'bridge') throw new Error(`${bridge} exists and is not a bridge`);
  if (!br) cmds.push(['ip', 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  const have = current.get(port);
  const wrongPort = have && (have.kind !== spec.encap || (have.id !== undefined && have.id !== spec.index));
  if (wrongPort) cmds.push(['ip', 'link', 'del', port]);
  if (!have || wrongPort) {
    if (spec.encap === 'vxlan') {
      cmds.push([
        'ip', 'link', 'add', port, 'type', 'vxlan', 'id', String(spec.index), 'dstport', String(VXLAN_PORT), 'dev', spec.privInterface,
        ...(spec.local ? ['local', spec.local] : []),
        ...(spec.remote ? ['remote', spec.remote] : []),
      ]);
    } else {
      cmds.push(['ip', 'link', 'add', 'link', spec.privInterface, 'name', port, 'type', 'vlan', 'id', String(spec.index)]);
    }
  }
  if (!have || wrongPort || have.master !== bridge) cmds.push(['ip', 'link', 'set', port, 'master', bridge]);
  if (!have || wrongPort || !have.up) cmds.push(['ip', 'link', 'set', port, 'up']);
  if (!br || !br.up) cmds.push(['ip', 'link', 'set', bridge, 'up']);
  return cmds;
}

/** Commands that remove a MANAGED network's bridge and port (nothing for a shared bridge). */
export function planUnlink(current: Map<string, LinkInfo>, spec: Pick<NetworkLinkSpec, 'mode' | 'prefix' | 'index'>): string[][] {
  if (spec.mode !== 'MANAGED') return [];
  const names = deviceNames(spec.prefix, spec.index);
  return [names.vxlan, names.vlan, names.bridge].filter((n) => current.has(n)).map((n) => ['ip', 'link', 'del', n]);
}

/** Network indices of the MANAGED bridges with this prefix that exist on the host. */
export function managedBridgeIndices(current: Map<string, LinkInfo>, prefix: string): number[] {
  const re = new RegExp(`^${prefix.replace(/[^a-zA-Z0-9]/g, '\\$&')}br(\\d+)$`);
  const out: number[] = [];
  for (const name of current.keys()) {
    const m = re.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

export async function runAll(run: CommandRunner, cmds: readonly string[][]): Promise<void> {
  for (const c of cmds) await run(c);
}
