// Security groups and public addresses as iptables rules on the CC (Eucalyptus vnetwork.c's
// vnetTableRule / vnetAssignAddress): Mallee's own chains, hooked once into FORWARD, PREROUTING and
// POSTROUTING, rewritten whole and atomically per table with `iptables-restore --noflush` (which
// flushes only the chains it declares), so rules of other software are never touched.
//   <P>-FWD   established traffic, then one jump per network:  -d <net> -j <P>-G<n>
//   <P>-G<n>  the group's ingress rules (CIDR or source group's network), within-group, then DROP
//   <P>-IN    the metadata port only from each network's own bridge, source and gateway; reset otherwise;
//             guests reach the front end itself only for DHCP, DNS, ICMP, metadata and the user-facing APIs
//   <P>-PRE   169.254.169.254:80 → the CC's metadata service; each public address → its private one
//   <P>-POST  SNAT each mapped instance to its public address, MASQUERADE the others leaving the cloud
import { privateNetwork, subnetCidr, type AddressPlan, type CommandRunner } from '@mallee/vnet';
import type { cc } from '@mallee/wire';

export const METADATA_ADDRESS = '169.254.169.254';

export interface RulesInput {
  prefix: string;
  plan: AddressPlan;
  networks: readonly cc.NetworkSpec[];
  addresses: readonly cc.AddressMapping[];
  metadataPort: number;
  pubInterface: string;
  /** The bridge each network's guests are on (MANAGED: one per network; MANAGED-NOVLAN: the shared one). */
  bridgeOf: (vlan: number) => string;
  /** TCP ports of this host guests may open besides metadata: the user-facing APIs (EC2 on the clc, S3 on Walrus). */
  guestPorts: readonly number[];
}

export const chainNames = (prefix: string) => ({
  forward: `${prefix}-FWD`,
  input: `${prefix}-IN`,
  pre: `${prefix}-PRE`,
  post: `${prefix}-POST`,
  group: (vlan: number) => `${prefix}-G${vlan}`,
});

function ruleMatch(r: cc.NetworkRule, plan: AddressPlan): string[] | undefined {
  const source = r.cidr ?? (r.sourceVlan !== undefined ? privateNetwork(plan, r.sourceVlan).cidr : undefined);
  if (!source) return undefined;
  const src = source === '0.0.0.0/0' ? [] : ['-s', source];
  switch (r.protocol) {
    case '-1':
      return src;
    case 'tcp':
    case 'udp': {
      const from = r.fromPort ?? 0;
      const to = r.toPort ?? 65535;
      return ['-p', r.protocol, ...src, '--dport', from === to ? String(from) : `${from}:${to}`];
    }
    case 'icmp': {
      const type = r.fromPort ?? -1;
      const code = r.toPort ?? -1;
      if (type === -1) return ['-p', 'icmp', ...src];
      return ['-p', 'icmp', ...src, '--icmp-type', code === -1 ? String(type) : `${type}/${code}`];
    }
    default:
      return ['-p', r.protocol, ...src];
  }
}

/** The iptables-restore input for the filter and nat tables. */
export function renderRules(i: RulesInput): { filter: string; nat: string; chains: string[] } {
  const c = chainNames(i.prefix);
  const subnet = subnetCidr(i.plan);
  const filter: string[] = ['*filter', `:${c.input} - [0:0]`, `:${c.forward} - [0:0]`];
  const body: string[] = [`-A ${c.forward} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`];
  const chains = [c.input, c.forward, c.pre, c.post];
  // The metadata service answers by source address: only what a network's own guests send to its gateway (the
  // DNAT of 169.254.169.254) reaches it. From elsewhere (the public side, the node link, the front end itself,
  // another network's bridge) a connection is reset, whatever source address it claims.
  const input: string[] = [];
  for (const n of [...i.networks].sort((a, b) => a.vlan - b.vlan)) {
    const net = privateNetwork(i.plan, n.vlan);
    input.push(`-A ${c.input} -i ${i.bridgeOf(n.vlan)} -s ${net.cidr} -d ${net.gateway}/32 -p tcp --dport ${i.metadataPort} -j ACCEPT`);
  }
  input.push(`-A ${c.input} -p tcp --dport ${i.metadataPort} -j REJECT --reject-with tcp-reset`);
  // The front end's own services are not the guests' business (the cc's and sc's wire ports, tgtd's iSCSI portal,
  // sshd, …): from the managed subnet (a guest's own address: the node's ebtables see to it) only DHCP, DNS, ICMP
  // and the APIs a user reaches from the internet as well. DHCP's first packets (from 0.0.0.0) are not in the subnet.
  input.push(`-A ${c.input} -s ${subnet} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  input.push(`-A ${c.input} -s ${subnet} -p udp -m multiport --dports 53,67 -j ACCEPT`);
  input.push(`-A ${c.input} -s ${subnet} -p tcp --dport 53 -j ACCEPT`);
  input.push(`-A ${c.input} -s ${subnet} -p icmp -j ACCEPT`);
  for (const port of [...new Set(i.guestPorts)].sort((a, b) => a - b)) input.push(`-A ${c.input} -s ${subnet} -p tcp --dport ${port} -j ACCEPT`);
  input.push(`-A ${c.input} -s ${subnet} -p tcp -j REJECT --reject-with tcp-reset`);
  input.push(`-A ${c.input} -s ${subnet} -j REJECT --reject-with icmp-port-unreachable`);
  for (const n of [...i.networks].sort((a, b) => a.vlan - b.vlan)) {
    const net = privateNetwork(i.plan, n.vlan);
    const g = c.group(n.vlan);
    chains.push(g);
    filter.push(`:${g} - [0:0]`);
    body.push(`-A ${c.forward} -d ${net.cidr} -j ${g}`);
    // Within a group everything is allowed (Eucalyptus); traffic between the group's guests crosses
    // the CC only when it is bridged through it (guests on different nodes).
    body.push(`-A ${g} -s ${net.cidr} -j ACCEPT`);
    for (const r of n.rules) {
      const m = ruleMatch(r, i.plan);
      if (m) body.push(`-A ${g} ${m.join(' ')} -j ACCEPT`);
    }
    body.push(`-A ${g} -j DROP`);
  }
  // Addresses of the managed subnet that belong to no live network: nothing gets there.
  body.push(`-A ${c.forward} -d ${subnet} -j DROP`);
  // Guests may go out (EC2-Classic has no egress rules), even on hosts whose FORWARD policy is DROP.
  body.push(`-A ${c.forward} -s ${subnet} -j ACCEPT`);
  filter.push(...input, ...body, 'COMMIT', '');

  const nat: string[] = ['*nat', `:${c.pre} - [0:0]`, `:${c.post} - [0:0]`];
  for (const n of [...i.networks].sort((a, b) => a.vlan - b.vlan)) {
    const net = privateNetwork(i.plan, n.vlan);
    nat.push(`-A ${c.pre} -s ${net.cidr} -d ${METADATA_ADDRESS}/32 -p tcp --dport 80 -j DNAT --to-destination ${net.gateway}:${i.metadataPort}`);
  }
  const mapped = [...i.addresses].sort((a, b) => a.publicIp.localeCompare(b.publicIp));
  for (const a of mapped) nat.push(`-A ${c.pre} -d ${a.publicIp}/32 -j DNAT --to-destination ${a.privateIp}`);
  for (const a of mapped) nat.push(`-A ${c.post} -s ${a.privateIp}/32 ! -d ${subnet} -j SNAT --to-source ${a.publicIp}`);
  nat.push(`-A ${c.post} -s ${subnet} -o ${i.pubInterface} -j MASQUERADE`);
  nat.push('COMMIT', '');
  return { filter: filter.join('\n'), nat: nat.join('\n'), chains };
}

const HOOKS = (prefix: string) => {
  const c = chainNames(prefix);
  return [
    { table: 'filter', chain: 'INPUT', target: c.input },
    { table: 'filter', chain: 'FORWARD', target: c.forward },
    { table: 'nat', chain: 'PREROUTING', target: c.pre },
    { table: 'nat', chain: 'POSTROUTING', target: c.post },
  ];
};

/** Writes the rules, hooks Mallee's chains in (once) and deletes group chains no network uses any more. */
export async function applyRules(run: CommandRunner, i: RulesInput): Promise<void> {
  const { filter, nat, chains } = renderRules(i);
  await run(['iptables-restore', '--noflush'], { input: filter });
  await run(['iptables-restore', '--noflush'], { input: nat });
  for (const h of HOOKS(i.prefix)) {
    const present = await run(['iptables', '-w', '-t', h.table, '-C', h.chain, '-j', h.target]).then(() => true, () => false);
    if (!present) await run(['iptables', '-w', '-t', h.table, '-I', h.chain, '1', '-j', h.target]);
  }
  const existing = (await run(['iptables', '-w', '-t', 'filter', '-S'])).split('\n')
    .map((l) => /^-N (\S+)$/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n.startsWith(`${i.prefix}-G`));
  for (const stale of existing.filter((n) => !chains.includes(n))) {
    await run(['iptables', '-w', '-t', 'filter', '-F', stale]);
    await run(['iptables', '-w', '-t', 'filter', '-X', stale]);
  }
}

/** Removes every Mallee chain of this prefix and its hooks (the CC's teardown). */
export async function removeRules(run: CommandRunner, prefix: string): Promise<void> {
  for (const h of HOOKS(prefix)) {
    while (await run(['iptables', '-w', '-t', h.table, '-D', h.chain, '-j', h.target]).then(() => true, () => false));
  }
  for (const table of ['filter', 'nat']) {
    const chains = (await run(['iptables', '-w', '-t', table, '-S']).catch(() => '')).split('\n')
      .map((l) => /^-N (\S+)$/.exec(l)?.[1]).filter((n): n is string => n !== undefined && n.startsWith(`${prefix}-`));
    for (const ch of chains) await run(['iptables', '-w', '-t', table, '-F', ch]);
    for (const ch of chains) await run(['iptables', '-w', '-t', table, '-X', ch]);
  }
}
