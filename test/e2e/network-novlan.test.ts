// MANAGED-NOVLAN from inside real guests (QEMU/TCG busybox guests) in the seed's topology (helpers/netns.ts
// with mode MANAGED-NOVLAN): each group still has its own private network (addresses, gateway, DHCP, rules), but
// there is no tagging — every network shares one segment (the node's existing bridge, whose port is the private
// link; the front end's gateways sit on its private interface). As in Eucalyptus's vnetwork.c, the groups are then
// kept apart by the CC's iptables only, on the traffic it routes between the networks; Mallee adds two things the
// shared segment needs for that to hold: the CC sends no ICMP redirects (which would send a guest straight to another
// network's guest, past the rules) and the node lets a guest send unicast frames only to its own network's
// instances or non-instances (the CC), so an on-link route to another group's network gets nowhere.
// Elastic IPs and the metadata service work as in MANAGED. One cloud, three guests.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/cloud.js';
import { buildTopology, netnsSuiteCanRun, type Topology } from './helpers/netns.js';
import { guestAgentScript, guestGet, netnsTools, type NetnsTools } from './helpers/netns-guests.js';

const canRun = netnsSuiteCanRun('network-novlan.test.ts', ['/usr/sbin/dnsmasq']);

let t: Topology;
let tools: NetnsTools;
const inst: Record<'a1' | 'a2' | 'b1', { id: string; privateIp: string }> = {} as never;
const MARK = 'mallee-novlan-test';

const aws = (args: string[]) => tools.aws(args);
const inGuest = (id: string, cmd: string, timeoutMs?: number) => tools.inGuest(id, cmd, timeoutMs);
const page = (ip: string) => guestGet(`http://${ip}/`);
/** An address's /27 (VNET_ADDRSPERNET 32): its network and gateway. */
const net27 = (ip: string) => {
  const o = ip.split('.').map(Number);
  const base = o[3]! & ~31;
  return { cidr: `${o[0]}.${o[1]}.${o[2]}.${base}/27`, gateway: `${o[0]}.${o[1]}.${o[2]}.${base + 1}` };
};

async function describe1(id: string): Promise<Record<string, unknown> & { PrivateIpAddress?: string; PublicIpAddress?: string; PrivateDnsName?: string }> {
  const d = await aws(['ec2', 'describe-instances', '--instance-ids', id]);
  return (d.Reservations as { Instances: Record<string, unknown>[] }[])[0]!.Instances[0]!;
}

beforeAll(async () => {
  if (!canRun) return;
  t = await buildTopology({ mode: 'MANAGED-NOVLAN' });
  tools = netnsTools(t);
  tools.startGuestControl();
  for (const g of ['A', 'B']) await aws(['ec2', 'create-security-group', '--group-name', g, '--description', `group ${g}`]);
  writeFileSync(join(t.dir, 'user-data.sh'), guestAgentScript(MARK));
  const launch = async (group: string, count: number) => {
    const args = ['ec2', 'run-instances', '--image-id', t.image.emi, '--count', String(count), '--security-groups', group, '--instance-type', 't1.micro', '--user-data', `file://${join(t.dir, 'user-data.sh')}`];
    const r = await eventually(`run-instances in ${group}`, () => aws(args), 180_000);
    return (r.Instances as { InstanceId: string }[]).map((i) => i.InstanceId);
  };
  const [a1, a2] = await launch('A', 2);
  const [b1] = await launch('B', 1);
  for (const [k, id] of [['a1', a1], ['a2', a2], ['b1', b1]] as const) {
    await eventually(`${id} polling the control server`, async () => (tools.polling(id!) ? true : undefined), 300_000);
    const d = await describe1(id!);
    inst[k] = { id: id!, privateIp: d.PrivateIpAddress ?? '' };
  }
}, 900_000);

afterAll(async () => {
  const left = await t?.teardown();
  if (left?.length) console.warn(`network-novlan.test.ts teardown killed: ${left.join('; ')}`);
}, 180_000);

describe.skipIf(!canRun)('MANAGED-NOVLAN: per-group networks on one untagged segment, kept apart on the CC', () => {
  it('each guest gets its group\'s address by DHCP; all networks share the node\'s bridge and the front end\'s private interface, nothing is tunnelled', async () => {
    const A = net27(inst.a1.privateIp);
    const B = net27(inst.b1.privateIp);
    expect(net27(inst.a2.privateIp).cidr).toBe(A.cidr);
    expect(B.cidr).not.toBe(A.cidr);
    for (const k of ['a1', 'b1'] as const) {
      const out = await inGuest(inst[k].id, 'ip -4 -o addr show eth0; ip route');
      expect(out).toContain(`inet ${inst[k].privateIp}/27`);
      expect(out).toContain(`default via ${net27(inst[k].privateIp).gateway}`);
    }
    const feAddrs = (await t.exec(t.ns.frontend, ['ip', '-o', '-4', 'addr', 'show', 'dev', `${t.id}prv0`])).stdout;
    expect(feAddrs).toContain(`${A.gateway}/27`);
    expect(feAddrs).toContain(`${B.gateway}/27`);
    const nodeLinks = (await t.exec(t.ns.node, ['ip', '-o', 'link', 'show', 'master', `${t.id}nbr`])).stdout;
    expect(nodeLinks).toContain(`${t.id}prv1`);
    expect((nodeLinks.match(new RegExp(`${t.id}t[0-9a-f]{8}`, 'g')) ?? []).length).toBe(3);
    for (const ns of [t.ns.frontend, t.ns.node]) {
      const links = (await t.exec(ns, ['ip', '-o', 'link', 'show'])).stdout;
      expect(links).not.toMatch(new RegExp(`${t.id}(br|vx|vl)\\d`));
    }
    // The front end routes between the networks in and out of one interface, and says nothing about it.
    expect((await t.exec(t.ns.frontend, ['sysctl', '-n', 'net.ipv4.conf.all.send_redirects'])).stdout.trim()).toBe('0');
    expect((await t.exec(t.ns.frontend, ['sysctl', '-n', `net.ipv4.conf.${t.id}prv0.send_redirects`])).stdout.trim()).toBe('0');
    // Metadata as in MANAGED (no config drive): its own.
    expect(await inGuest(inst.b1.id, guestGet('http://169.254.169.254/latest/meta-data/instance-id'))).toBe(inst.b1.id);
  }, 120_000);

  it('groups: same group reaches each other; A and B cannot, not even over an on-link route on the shared segment, until B authorizes --source-group A', async () => {
    expect(await inGuest(inst.a1.id, page(inst.a2.privateIp))).toContain(`instance ${inst.a2.id}`);
    expect(await inGuest(inst.a1.id, page(inst.b1.privateIp))).toContain('FAILED');
    expect(await inGuest(inst.b1.id, page(inst.a1.privateIp))).toContain('FAILED');
    // A1 tries the segment directly: B's network on-link, ARP for B1. The node drops B1's answer (a unicast frame to an
    // instance of another network) and anything A1 would send to B1's MAC.
    const B = net27(inst.b1.privateIp);
    const direct = await inGuest(inst.a1.id, [
      `ip route add ${B.cidr} dev eth0`,
      `arping -c 2 -w 3 -I eth0 ${inst.b1.privateIp}`,
      page(inst.b1.privateIp),
      `ip route del ${B.cidr} dev eth0`,
      'true',
    ].join('\n'));
    expect(direct).toMatch(/Received 0 resp/);
    expect(direct).toContain('FAILED');
    expect(direct).not.toContain(`instance ${inst.b1.id}`);
    // It was the node's destination guard that stopped it (B1's tap: its drop rule counted the answers).
    const tapB = `${t.id}t${inst.b1.id.replace(/^i-/, '').slice(-8)}`.toUpperCase();
    const counted = (await t.exec(t.ns.node, ['ebtables', '-L', `${tapB}-D`, '--Lc'])).stdout;
    const drops = /-d d0:0d:00:00:00:00\/ff:ff:00:00:00:00 -j DROP\s*, pcnt = (\d+)/.exec(counted);
    expect(Number(drops?.[1] ?? 0), counted).toBeGreaterThan(0);
    // Through the CC, once B lets A in (tcp/80 from group A); one way only.
    await aws(['ec2', 'authorize-security-group-ingress', '--group-name', 'B', '--protocol', 'tcp', '--port', '80', '--source-group', 'A']);
    await eventually('A1 reaching B1 after authorize --source-group A', async () => ((await inGuest(inst.a1.id, page(inst.b1.privateIp))).includes(`instance ${inst.b1.id}`) ? true : undefined), 30_000);
    expect(await inGuest(inst.a2.id, page(inst.b1.privateIp))).toContain(`instance ${inst.b1.id}`);
    expect(await inGuest(inst.b1.id, page(inst.a1.privateIp))).toContain('FAILED');
    // The allowed path is the routed one: the guest was never redirected to B1 directly.
    expect(await inGuest(inst.a1.id, `ip route get ${inst.b1.privateIp}`)).toContain(`via ${net27(inst.a1.privateIp).gateway}`);
  }, 240_000);

  it('private DNS: the gateway resolves the other group\'s instance', async () => {
    const d = await describe1(inst.b1.id);
    const out = await inGuest(inst.a1.id, `nslookup -type=a ${d.PrivateDnsName} 2>&1; true`);
    expect([...out.matchAll(/^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$/gm)].map((m) => m[1])).toEqual([inst.b1.privateIp]);
  }, 60_000);

  let eip = '';
  it('an elastic IP reaches the guest\'s page from the internet only while the group allows tcp/80; revoked, it stops within 5 s', async () => {
    eip = String((await aws(['ec2', 'allocate-address'])).PublicIp);
    await aws(['ec2', 'associate-address', '--instance-id', inst.a1.id, '--public-ip', eip]);
    await eventually('the EIP on the instance', async () => ((await describe1(inst.a1.id)).PublicIpAddress === eip ? true : undefined), 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await tools.fromInternet(eip)).toBeUndefined();
    await aws(['ec2', 'authorize-security-group-ingress', '--group-name', 'A', '--protocol', 'tcp', '--port', '80', '--cidr', '0.0.0.0/0']);
    expect(await eventually('the page through the EIP', async () => tools.fromInternet(eip), 10_000)).toContain(`instance ${inst.a1.id}`);
    await aws(['ec2', 'revoke-security-group-ingress', '--group-name', 'A', '--protocol', 'tcp', '--port', '80', '--cidr', '0.0.0.0/0']);
    const revokedAt = Date.now();
    await eventually('the page unreachable after revoke', async () => ((await tools.fromInternet(eip)) === undefined ? true : undefined), 10_000);
    expect(Date.now() - revokedAt).toBeLessThan(5000);
  }, 120_000);

  it('terminating every instance leaves no rules, gateways, anti-spoofing chains or dnsmasq behind; the node\'s bridge stays', async () => {
    await aws(['ec2', 'terminate-instances', '--instance-ids', inst.a1.id, inst.a2.id, inst.b1.id]);
    let seen = '';
    await eventually('the front end and the node clean', async () => {
      const filter = (await t.exec(t.ns.frontend, ['iptables', '-S'])).stdout;
      const nat = (await t.exec(t.ns.frontend, ['iptables', '-t', 'nat', '-S'])).stdout;
      const addrs = (await t.exec(t.ns.frontend, ['ip', '-o', '-4', 'addr', 'show'])).stdout;
      const pids = (await t.exec(t.ns.frontend, ['sh', '-c', `for p in $(ip netns pids ${t.ns.frontend}); do cat /proc/$p/comm; done`], { allowFail: true })).stdout;
      const eb = (await t.exec(t.ns.node, ['ebtables', '-L'])).stdout;
      const nodeLinks = (await t.exec(t.ns.node, ['ip', '-o', 'link', 'show'])).stdout;
      seen = `${filter}\n${nat}\n${addrs}\n${pids}\n${eb}\n${nodeLinks}`;
      const clean = !filter.includes(`-N ${t.id}-G`) && !/DNAT|SNAT/.test(nat) && !/172\.31\.\d+\.\d+\//.test(addrs) && !/198\.51\.100\.(1\d|20)\/32/.test(addrs)
        && !pids.includes('dnsmasq') && !eb.includes(t.id.toUpperCase()) && !nodeLinks.includes(`${t.id}t`) && nodeLinks.includes(`${t.id}nbr`);
      return clean ? true : undefined;
    }, 120_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; left:\n${seen}\n${t.logs()}`);
    });
    await aws(['ec2', 'release-address', '--public-ip', eip]);
  }, 180_000);
});
