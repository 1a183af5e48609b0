// SYSTEM mode from inside real guests (QEMU/TCG busybox guests) in the seed's topology (helpers/netns.ts with
// mode SYSTEM): the node bridges each guest onto an existing bridge of its own (`<id>sbr`, the site's LAN) and the
// guest takes its address from the site's DHCP server — here a dnsmasq the test itself runs on that segment,
// standing in for the site's (it is not Mallee's: the cc starts no dnsmasq, bridge or rule in SYSTEM mode). The
// address the cloud reports is the one the guest really uses: the node learns it from what the guest's tap sends
// (an nftables set of MAC . source address on the bridge, as Eucalyptus's CC matched MACs in an ARP table). As in
// Eucalyptus's SYSTEM mode there is no security-group enforcement and no elastic IP: the address actions answer
// UnsupportedOperation. One cloud, two guests.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/cloud.js';
import { buildTopology, netnsSuiteCanRun, SITE, type Topology } from './helpers/netns.js';
import { guestAgentScript, guestGet, netnsTools, type NetnsTools } from './helpers/netns-guests.js';

const canRun = netnsSuiteCanRun('network-system.test.ts', ['/usr/sbin/dnsmasq', '/usr/sbin/nft']);

let t: Topology;
let tools: NetnsTools;
const ids: string[] = [];
const MARK = 'mallee-system-test';

const aws = (args: string[]) => tools.aws(args);
const inGuest = (id: string, cmd: string, timeoutMs?: number) => tools.inGuest(id, cmd, timeoutMs);
async function describe1(id: string): Promise<Record<string, unknown> & { PrivateIpAddress?: string; PublicIpAddress?: string }> {
  const d = await aws(['ec2', 'describe-instances', '--instance-ids', id]);
  return (d.Reservations as { Instances: Record<string, unknown>[] }[])[0]!.Instances[0]!;
}
/** The guest's own eth0 address, as it configured it from the DHCP lease. */
const guestAddress = async (id: string) => /inet (\d+\.\d+\.\d+\.\d+)\//.exec(await inGuest(id, 'ip -4 -o addr show eth0'))?.[1];
const awsError = async (args: string[]) => aws(args).then(() => 'no error', (err: unknown) => (err as Error).message);

beforeAll(async () => {
  if (!canRun) return;
  t = await buildTopology({ mode: 'SYSTEM' });
  tools = netnsTools(t);
  tools.startGuestControl();
  await aws(['ec2', 'create-security-group', '--group-name', 'S', '--description', 'no rules at all']);
  writeFileSync(join(t.dir, 'user-data.sh'), guestAgentScript(MARK));
  const r = await eventually('run-instances', () => aws(['ec2', 'run-instances', '--image-id', t.image.emi, '--count', '2', '--security-groups', 'S', '--instance-type', 't1.micro',
    '--user-data', `file://${join(t.dir, 'user-data.sh')}`]), 180_000);
  ids.push(...(r.Instances as { InstanceId: string }[]).map((i) => i.InstanceId));
  for (const id of ids) await eventually(`${id} polling the control server`, async () => (tools.polling(id) ? true : undefined), 300_000);
}, 900_000);

afterAll(async () => {
  const left = await t?.teardown();
  if (left?.length) console.warn(`network-system.test.ts teardown killed: ${left.join('; ')}`);
}, 180_000);

describe.skipIf(!canRun)('SYSTEM: guests on the site\'s bridge with the site\'s DHCP; the cloud reports the address each really has', () => {
  it('each guest is bridged to the existing bridge and leased by the site\'s DHCP; DescribeInstances reports that address, and no public one', async () => {
    const leases = readFileSync(join(t.dir, 'site-dnsmasq.leases'), 'utf8');
    const first = Number(SITE.first.split('.')[3]);
    const last = Number(SITE.last.split('.')[3]);
    for (const id of ids) {
      const ip = await guestAddress(id);
      expect(ip).toMatch(/^192\.168\.77\.\d+$/);
      const n = Number(ip!.split('.')[3]);
      expect(n >= first && n <= last, ip).toBe(true);
      const reported = await eventually(`${id}'s address in DescribeInstances`, async () => (await describe1(id)).PrivateIpAddress, 30_000);
      expect(reported).toBe(ip);
      const d = await describe1(id);
      expect(d.PublicIpAddress).toBeUndefined();
      // The MAC the clc gave it (d0:0d + the id's last 8 hex digits) holds that lease at the site's DHCP.
      const mac = `d0:0d:${id.replace(/^i-/, '').slice(-8).match(/../g)!.join(':')}`;
      expect(leases).toMatch(new RegExp(`^\\d+ ${mac} ${ip!.replace(/\./g, '\\.')} `, 'm'));
      expect((await t.exec(t.ns.node, ['ip', '-o', 'link', 'show', 'master', `${t.id}sbr`])).stdout).toContain(`${t.id}t${id.replace(/^i-/, '').slice(-8)}`);
    }
    expect(await guestAddress(ids[0]!)).not.toBe(await guestAddress(ids[1]!));
    // SYSTEM: a config drive carries the guest's identity (no metadata service of the cc).
    expect((await inGuest(ids[0]!, 'cat /run/instance-id')).trim()).toBe(ids[0]);
    // The front end did nothing to its host: no bridges, chains, NAT or dnsmasq of Mallee's.
    const filter = (await t.exec(t.ns.frontend, ['iptables', '-S'])).stdout;
    const nat = (await t.exec(t.ns.frontend, ['iptables', '-t', 'nat', '-S'])).stdout;
    const links = (await t.exec(t.ns.frontend, ['ip', '-o', 'link', 'show'])).stdout;
    const pids = (await t.exec(t.ns.frontend, ['sh', '-c', `for p in $(ip netns pids ${t.ns.frontend}); do cat /proc/$p/comm; done`], { allowFail: true })).stdout;
    expect(filter).not.toContain(`${t.id}-`);
    expect(nat).not.toContain(`${t.id}-`);
    expect(links).not.toMatch(new RegExp(`${t.id}(br|vx|vl)\\d`));
    expect(pids).not.toContain('dnsmasq');
  }, 180_000);

  it('the reported address follows the guest: it takes another one from the site, the cloud reports the new one', async () => {
    const id = ids[1]!;
    const before = await guestAddress(id);
    // The guest moves to a free address of the site's segment (as after a new lease) and uses it.
    const moved = `192.168.77.${200 + Number(before!.split('.')[3]) % 50}`;
    await inGuest(id, `ip -4 addr flush dev eth0; ip -4 addr add ${moved}/24 dev eth0; ip route add default via ${SITE.router}; ${guestGet(`http://${SITE.router}:1/`, 2)}; true`);
    await eventually(`${id} reported at ${moved}`, async () => ((await describe1(id)).PrivateIpAddress === moved ? true : undefined), 30_000);
    expect(await guestAddress(id)).toBe(moved);
  }, 120_000);

  it('no security-group enforcement, as in Eucalyptus SYSTEM mode: a group with no rules still lets the guests and the internet in', async () => {
    const [a, b] = [await guestAddress(ids[0]!), await guestAddress(ids[1]!)];
    expect(await inGuest(ids[0]!, guestGet(`http://${b}/`))).toContain(`instance ${ids[1]}`);
    expect(await eventually('the page from the internet by the site address', async () => tools.fromInternet(a!), 10_000)).toContain(`instance ${ids[0]}`);
  }, 120_000);

  it('elastic IPs are not offered: AllocateAddress and AssociateAddress answer UnsupportedOperation; there is nothing to describe', async () => {
    expect(await awsError(['ec2', 'allocate-address'])).toMatch(/\(UnsupportedOperation\) when calling the AllocateAddress operation: .*SYSTEM/);
    expect(await awsError(['ec2', 'associate-address', '--instance-id', ids[0]!, '--public-ip', '198.51.100.10'])).toMatch(/\(UnsupportedOperation\) when calling the AssociateAddress operation/);
    expect((await aws(['ec2', 'describe-addresses'])).Addresses).toEqual([]);
  }, 60_000);

  it('terminating the guests removes their taps and the node\'s learning table; the site\'s bridge stays', async () => {
    await aws(['ec2', 'terminate-instances', '--instance-ids', ...ids]);
    let seen = '';
    await eventually('the node clean', async () => {
      const links = (await t.exec(t.ns.node, ['ip', '-o', 'link', 'show'])).stdout;
      const tables = (await t.exec(t.ns.node, ['nft', 'list', 'tables'])).stdout;
      seen = `${links}\n${tables}`;
      return !links.includes(`${t.id}t`) && !tables.includes(`${t.id}_learn`) && links.includes(`${t.id}sbr`) ? true : undefined;
    }, 120_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; left:\n${seen}`);
    });
  }, 180_000);
});
