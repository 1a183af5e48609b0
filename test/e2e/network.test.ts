// MANAGED networking proven from inside real guests (QEMU/TCG) in the seed's topology, built in
// network namespaces (helpers/netns.ts): DHCP on the group's private network over VXLAN, elastic IPs
// by DNAT/SNAT on the front end's public side, security groups (CIDR and source group) enforced on
// the CC, the metadata service, a CC restart that keeps guests' traffic, and nothing left behind.
// Driven with awscli, euca2ools and boto3 from the `internet` namespace. Each guest runs a small
// control loop from its user data (it polls helpers/guest-control.mjs in `internet`), so the test
// can run commands inside the guests.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/cloud.js';
import { buildTopology, sh, type Topology } from './helpers/netns.js';
import { guestAgentScript, guestGet, netnsTools, type NetnsTools } from './helpers/netns-guests.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock') || existsSync('/usr/sbin/libvirtd');
const root = process.getuid?.() === 0;
const canRun = libvirtHere && root && existsSync('/usr/sbin/dnsmasq');
if (!canRun) console.warn('network.test.ts skipped: needs root, libvirtd, dnsmasq (test/run-all.sh installs them)');

let t: Topology;
let tools: NetnsTools;
const inst: Record<'a1' | 'a2' | 'b1', { id: string; privateIp: string; publicIp: string; mac: string }> = {} as never;
let publicKey = '';
const USER_DATA_MARK = 'mallee-network-test-user-data';

const aws = (args: string[]) => tools.aws(args);
const euca = (cmd: string, args: string[]) => tools.euca(cmd, args);
const boto3 = (code: string) => tools.boto3(code);
const fromInternet = (ip: string) => tools.fromInternet(ip);
const inGuest = (id: string, cmd: string, timeoutMs?: number) => tools.inGuest(id, cmd, timeoutMs);

interface Described { InstanceId: string; State: { Name: string }; PrivateIpAddress?: string; PublicIpAddress?: string; PrivateDnsName?: string; NetworkInterfaces?: unknown }
async function describe1(id: string): Promise<Described & Record<string, unknown>> {
  const d = await aws(['ec2', 'describe-instances', '--instance-ids', id]);
  return (d.Reservations as { Instances: (Described & Record<string, unknown>)[] }[])[0]!.Instances[0]!;
}

beforeAll(async () => {
  if (!canRun) return;
  t = await buildTopology();
  tools = netnsTools(t);
  tools.startGuestControl();

  await sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'net-test-key', '-f', join(t.dir, 'id_test')]);
  publicKey = readFileSync(join(t.dir, 'id_test.pub'), 'utf8').trim();
  await aws(['ec2', 'import-key-pair', '--key-name', 'nettest', '--public-key-material', publicKey]);
  for (const g of ['A', 'B']) await aws(['ec2', 'create-security-group', '--group-name', g, '--description', `group ${g}`]);
  writeFileSync(join(t.dir, 'user-data.sh'), guestAgentScript(USER_DATA_MARK));
  const launch = async (group: string, count: number) => {
    const args = ['ec2', 'run-instances', '--image-id', t.image.emi, '--instance-type', 't1.micro', '--count', String(count), '--security-groups', group,
      '--key-name', 'nettest', '--user-data', `file://${join(t.dir, 'user-data.sh')}`];
    // On a busy machine the node can miss a poll while it builds guests (NOTREADY for a moment): retry as a user would.
    const r = await eventually(`run-instances in ${group}`, () => aws(args), 180_000);
    return (r.Instances as { InstanceId: string }[]).map((i) => i.InstanceId);
  };
  const [a1, a2] = await launch('A', 2);
  const [b1] = await launch('B', 1);
  for (const [k, id] of [['a1', a1], ['a2', a2], ['b1', b1]] as const) {
    // Running, and its control loop has asked for work (so DHCP, SNAT and the route out work).
    await eventually(`${id} polling the control server`, async () => (tools.polling(id!) ? true : undefined), 240_000);
    const d = await describe1(id!);
    inst[k] = { id: id!, privateIp: d.PrivateIpAddress ?? '', publicIp: d.PublicIpAddress ?? '', mac: '' };
  }
}, 900_000);

afterAll(async () => {
  const left = await t?.teardown();
  if (left?.length) console.warn(`network.test.ts teardown killed: ${left.join('; ')}`);
}, 180_000);

describe.skipIf(!canRun)('MANAGED networking in the seed topology (frontend, node1, internet namespaces)', () => {
  it('each guest gets its private address by DHCP on its group\'s network, with the MAC and names DescribeInstances shows', async () => {
    const a1 = await describe1(inst.a1.id);
    expect(a1.PrivateIpAddress).toMatch(/^172\.31\.\d+\.\d+$/);
    expect(a1.PrivateDnsName).toBe(`ip-${a1.PrivateIpAddress!.replace(/\./g, '-')}.mallee.compute.internal`);
    expect(a1.PublicIpAddress).toMatch(/^198\.51\.100\.(1\d|20)$/); // auto-assigned from VNET_PUBLICIPS
    const eth0 = await inGuest(inst.a1.id, 'ip -4 -o addr show eth0; cat /sys/class/net/eth0/address; ip route');
    expect(eth0).toContain(`inet ${inst.a1.privateIp}/27`);
    const mac = `d0:0d:${inst.a1.privateIp.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
    expect(eth0).toContain(mac);
    expect(eth0).toMatch(/default via 172\.31\.\d+\.\d+/);
    // Same group, same network; the other group has its own.
    const net = (ip: string) => ip.split('.').slice(0, 3).join('.') + '.' + (Number(ip.split('.')[3]) & ~31);
    expect(net(inst.a2.privateIp)).toBe(net(inst.a1.privateIp));
    expect(net(inst.b1.privateIp)).not.toBe(net(inst.a1.privateIp));
    const console = String((await aws(['ec2', 'get-console-output', '--instance-id', inst.b1.id])).Output ?? '');
    expect(console).toContain(`mallee: eth0 ${inst.b1.privateIp}`);
  }, 120_000);

  it('a guest reads its own instance-id, public key, addresses and user data from 169.254.169.254', async () => {
    const md = 'http://169.254.169.254/latest';
    for (const k of ['a1', 'b1'] as const) {
      const out = await inGuest(inst[k].id, [
        guestGet(`${md}/meta-data/instance-id`), 'echo', guestGet(`${md}/meta-data/local-ipv4`), 'echo', guestGet(`${md}/meta-data/public-ipv4`), 'echo',
        guestGet(`${md}/meta-data/public-keys/0/openssh-key`), guestGet(`${md}/meta-data/security-groups`), 'echo', guestGet(`${md}/user-data`),
      ].join('\n'));
      const lines = out.split('\n');
      expect(lines[0]).toBe(inst[k].id);
      expect(lines[1]).toBe(inst[k].privateIp);
      expect(lines[2]).toBe(inst[k].publicIp);
      // The key as imported (the clc names it after the key pair instead of its comment).
      expect(out).toContain(publicKey.split(' ').slice(0, 2).join(' '));
      expect(out).toContain(k === 'a1' ? '\nA\n' : '\nB\n');
      expect(out).toContain(USER_DATA_MARK);
    }
    const listing = await inGuest(inst.a2.id, guestGet(`${md}/meta-data/`));
    for (const key of ['ami-id', 'instance-id', 'instance-type', 'local-ipv4', 'public-ipv4', 'placement/', 'public-keys/', 'block-device-mapping/', 'security-groups']) expect(listing).toContain(key);
    expect(await inGuest(inst.a2.id, guestGet(`${md}/meta-data/placement/availability-zone`))).toBe('mallee-1a');
  }, 180_000);

  it('ebtables on the node: a guest cannot speak for another guest\'s address', async () => {
    const gw = (await inGuest(inst.a1.id, "ip route | awk '/^default/ {print $3}'")).trim();
    expect(gw).toMatch(/^172\.31\./);
    const arping = (source: string) => inGuest(inst.a1.id, `arping -c 2 -w 3 -I eth0 -s ${source} ${gw}; true`);
    expect(await arping(inst.a1.privateIp)).toMatch(/Received [12] resp/);
    // A1 takes A2's address as its own too: what it sends with it never gets past the node's bridge.
    const spoofed = await inGuest(inst.a1.id, `ip addr add ${inst.a2.privateIp}/32 dev eth0; arping -c 2 -w 3 -I eth0 -s ${inst.a2.privateIp} ${gw}; ip addr del ${inst.a2.privateIp}/32 dev eth0; true`);
    expect(spoofed).toMatch(/Received 0 resp/);
    expect(await arping(inst.a1.privateIp)).toMatch(/Received [12] resp/);
  }, 120_000);

  let eip = '';
  it('euca2ools: an elastic IP reaches the guest\'s HTTP page from the internet only while the group allows tcp/80 from 0.0.0.0/0; revoked, it stops within 5 s', async () => {
    eip = /ADDRESS\s+(\S+)/.exec(await euca('euca-allocate-address', []))?.[1] ?? '';
    expect(eip).toMatch(/^198\.51\.100\./);
    await euca('euca-associate-address', ['-i', inst.a1.id, eip]);
    await eventually('the EIP on the instance', async () => ((await describe1(inst.a1.id)).PublicIpAddress === eip ? true : undefined), 30_000);
    // The group allows nothing yet: closed from the internet, on the EIP and the old address alike.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await fromInternet(eip)).toBeUndefined();
    await euca('euca-authorize', ['-P', 'tcp', '-p', '80', '-s', '0.0.0.0/0', 'A']);
    const page = await eventually('the page through the EIP', async () => fromInternet(eip), 10_000);
    expect(page).toContain(`instance ${inst.a1.id}`);
    await aws(['ec2', 'revoke-security-group-ingress', '--group-name', 'A', '--protocol', 'tcp', '--port', '80', '--cidr', '0.0.0.0/0']);
    const revokedAt = Date.now();
    await eventually('the page unreachable after revoke', async () => ((await fromInternet(eip)) === undefined ? true : undefined), 10_000);
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    const addrs = await euca('euca-describe-addresses', []);
    expect(addrs).toContain(eip);
    expect(addrs).toContain(inst.a1.id);
  }, 180_000);

  it('two groups are isolated until B authorizes --source-group A; guests of one group reach each other', async () => {
    const page = (ip: string) => guestGet(`http://${ip}/`);
    expect(await inGuest(inst.a1.id, page(inst.a2.privateIp))).toContain(`instance ${inst.a2.id}`);
    expect(await inGuest(inst.a1.id, page(inst.b1.privateIp))).toContain('FAILED');
    expect(await inGuest(inst.b1.id, page(inst.a1.privateIp))).toContain('FAILED');
    await boto3(`ec2.authorize_security_group_ingress(GroupName='B', IpPermissions=[{'IpProtocol': 'tcp', 'FromPort': 80, 'ToPort': 80, 'UserIdGroupPairs': [{'GroupName': 'A'}]}])`);
    await eventually('A1 reaching B1 after authorize --source-group A', async () => ((await inGuest(inst.a1.id, page(inst.b1.privateIp))).includes(`instance ${inst.b1.id}`) ? true : undefined), 30_000);
    expect(await inGuest(inst.a2.id, page(inst.b1.privateIp))).toContain(`instance ${inst.b1.id}`);
    // One way only: B's guests still cannot open connections to A's.
    expect(await inGuest(inst.b1.id, page(inst.a1.privateIp))).toContain('FAILED');
  }, 240_000);

  it('boto3: re-associating the EIP to another instance moves the service; the first gets a fresh public address', async () => {
    await aws(['ec2', 'authorize-security-group-ingress', '--group-name', 'A', '--protocol', 'tcp', '--port', '80', '--cidr', '0.0.0.0/0']);
    expect(await eventually('A1 through the EIP', async () => fromInternet(eip), 10_000)).toContain(`instance ${inst.a1.id}`);
    await boto3(`ec2.associate_address(InstanceId='${inst.a2.id}', PublicIp='${eip}')`);
    await eventually('A2 through the same EIP', async () => ((await fromInternet(eip))?.includes(`instance ${inst.a2.id}`) ? true : undefined), 10_000);
    const addrs = JSON.parse(await boto3(`print(json.dumps(ec2.describe_addresses(PublicIps=['${eip}'])['Addresses']))`)) as { InstanceId?: string; PrivateIpAddress?: string }[];
    expect(addrs[0]?.InstanceId).toBe(inst.a2.id);
    expect(addrs[0]?.PrivateIpAddress).toBe(inst.a2.privateIp);
    const a1 = await describe1(inst.a1.id);
    expect(a1.PublicIpAddress).toMatch(/^198\.51\.100\./);
    expect(a1.PublicIpAddress).not.toBe(eip);
    // The guest itself sees the move in its metadata.
    expect(await inGuest(inst.a2.id, guestGet('http://169.254.169.254/latest/meta-data/public-ipv4'))).toBe(eip);
  }, 120_000);

  it('a CC restart keeps guests\' traffic flowing and rebuilds a front end that lost its bridges and rules', async () => {
    await t.stopDaemon('cc', 'SIGKILL');
    // Down: the kernel keeps forwarding; the page stays reachable.
    expect(await fromInternet(eip)).toContain(`instance ${inst.a2.id}`);
    // Now the front end loses its network state (as after a host reboot): our chains and the bridges.
    for (const table of ['filter', 'nat']) {
      const chains = (await t.exec(t.ns.frontend, ['iptables', '-t', table, '-S'])).stdout.split('\n').map((l) => /^-N (\S+)/.exec(l)?.[1]).filter((c): c is string => !!c && c.startsWith(`${t.id}-`));
      for (const c of chains) await t.exec(t.ns.frontend, ['iptables', '-t', table, '-F', c]);
    }
    const links = JSON.parse((await t.exec(t.ns.frontend, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    for (const l of links.filter((x) => x.ifname.startsWith(`${t.id}br`) || x.ifname.startsWith(`${t.id}vx`))) await t.exec(t.ns.frontend, ['ip', 'link', 'del', l.ifname]);
    expect(await fromInternet(eip)).toBeUndefined();
    const restarted = Date.now();
    await t.startDaemon('cc');
    await eventually('the page back after the cc restart', async () => fromInternet(eip), 30_000);
    expect(Date.now() - restarted).toBeLessThan(30_000);
    // Group-to-group routing through the rebuilt bridges and chains (B lets A in on tcp/80).
    expect(await inGuest(inst.a1.id, guestGet(`http://${inst.b1.privateIp}/`))).toContain(`instance ${inst.b1.id}`);
  }, 180_000);

  it('terminating every instance leaves no rules, bridges, tunnels, leases or dnsmasq behind; addresses go back', async () => {
    await aws(['ec2', 'terminate-instances', '--instance-ids', inst.a1.id, inst.a2.id, inst.b1.id]);
    const fe = async () => {
      const filter = (await t.exec(t.ns.frontend, ['iptables', '-S'])).stdout;
      const nat = (await t.exec(t.ns.frontend, ['iptables', '-t', 'nat', '-S'])).stdout;
      const links = (await t.exec(t.ns.frontend, ['ip', '-o', 'link', 'show'])).stdout;
      const addrs = (await t.exec(t.ns.frontend, ['ip', '-o', '-4', 'addr', 'show', 'dev', `${t.id}pub0`])).stdout;
      const pids = (await t.exec(t.ns.frontend, ['sh', '-c', 'for p in $(ip netns pids ' + t.ns.frontend + '); do cat /proc/$p/comm; done'], { allowFail: true })).stdout;
      return { filter, nat, links, addrs, pids };
    };
    await eventually('the front end clean', async () => {
      const s = await fe();
      const clean = !s.filter.includes(`-N ${t.id}-G`) && !/DNAT|SNAT/.test(s.nat) && !s.links.includes(`${t.id}br`) && !s.links.includes(`${t.id}vx`)
        && !/198\.51\.100\.(1\d|20)\/32/.test(s.addrs) && !s.pids.includes('dnsmasq');
      return clean ? true : undefined;
    }, 120_000);
    let node = '';
    await eventually('the node clean', async () => {
      const links = (await t.exec(t.ns.node, ['ip', '-o', 'link', 'show'])).stdout;
      const eb = (await t.exec(t.ns.node, ['ebtables', '-L'])).stdout;
      node = `${links}\n${eb}`;
      return !links.includes(`${t.id}br`) && !links.includes(`${t.id}vx`) && !links.includes(`${t.id}t`) && !eb.includes(t.id.toUpperCase()) ? true : undefined;
    }, 60_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; the node has:\n${node}\n${t.logs()}`);
    });
    const addrs = JSON.parse(await boto3(`print(json.dumps(ec2.describe_addresses()['Addresses']))`)) as { PublicIp: string; InstanceId?: string }[];
    expect(addrs.map((a) => a.PublicIp)).toEqual([eip]);
    expect(addrs[0]!.InstanceId ?? '').toBe('');
    await euca('euca-release-address', [eip]);
    expect(JSON.parse(await boto3(`print(json.dumps(ec2.describe_addresses()['Addresses']))`))).toEqual([]);
  }, 240_000);

  it('teardown removes the namespaces and every process of this run', async () => {
    const left = await t.teardown();
    // The guests' control server is the only process the test itself left in its namespaces.
    expect(left.filter((l) => !l.includes('guest-control.mjs'))).toEqual([]);
    const names = (await sh(['ip', 'netns', 'list'])).stdout;
    expect(names).not.toContain(t.id);
    expect((await sh(['ip', '-o', 'link', 'show'])).stdout).not.toContain(t.id);
    expect(readdirSync('/tmp').filter((d) => d.includes(t.id) && !process.env.MALLEE_E2E_KEEP)).toEqual([]);
  }, 120_000);
});
