// MANAGED networking proven from inside real guests (QEMU/TCG) in the seed's topology, built in
// network namespaces (helpers/netns.ts): DHCP on the group's private network over VXLAN, elastic IPs
// by DNAT/SNAT on the front end's public side, security groups (CIDR and source group) enforced on
// the CC, the metadata service (the only source of a guest's identity, key and user data in MANAGED
// mode: the node attaches no config drive), a CC restart that keeps guests' traffic, and nothing left
// behind. Driven with awscli, euca2ools and boto3 from the `internet` namespace. Each busybox guest
// runs a small control loop from its user data (it polls helpers/guest-control.mjs in `internet`), so
// the test can run commands inside the guests. One real Debian 12 guest (cloud-init's EC2 datasource)
// boots beside them: it takes its key and user-data script from 169.254.169.254, and ssh with that key
// reaches it through its public address.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, repoRoot } from './helpers/cloud.js';
import { buildTopology, netnsSuiteCanRun, sh, type Topology } from './helpers/netns.js';
import { guestAgentScript, guestGet, netnsTools, type NetnsTools } from './helpers/netns-guests.js';

const canRun = netnsSuiteCanRun('network.test.ts', ['/usr/sbin/dnsmasq']);

let t: Topology;
let tools: NetnsTools;
const inst: Record<'a1' | 'a2' | 'b1', { id: string; privateIp: string; publicIp: string; mac: string }> = {} as never;
let publicKey = '';
let publicKeyB = '';
const USER_DATA_MARK = 'mallee-network-test-user-data';
const USER_DATA_MARK_B = 'mallee-network-test-user-data-of-b';
// The Debian guest: its key pair (made by the clc), the token its user-data script prints, its instance.
const deb = { id: '', keyName: 'netdebian', keyFile: '', publicKey: '', token: randomBytes(6).toString('hex') };

const aws = (args: string[]) => tools.aws(args);
const euca = (cmd: string, args: string[]) => tools.euca(cmd, args);
const boto3 = (code: string) => tools.boto3(code);
const fromInternet = (ip: string) => tools.fromInternet(ip);
const inGuest = (id: string, cmd: string, timeoutMs?: number) => tools.inGuest(id, cmd, timeoutMs);
const consoleOf = async (id: string) => String((await aws(['ec2', 'get-console-output', '--instance-id', id])).Output ?? '');
/** The first address of an address's /27 network (VNET_ADDRSPERNET 32) and its gateway (+1). */
const net27 = (ip: string) => {
  const o = ip.split('.').map(Number);
  const base = o[3]! & ~31;
  return { base: `${o[0]}.${o[1]}.${o[2]}.${base}`, gateway: `${o[0]}.${o[1]}.${o[2]}.${base + 1}`, at: (n: number) => `${o[0]}.${o[1]}.${o[2]}.${base + n}`, index: ((o[2]! << 8) + o[3]!) >> 5 };
};

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
  await sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'net-test-key-b', '-f', join(t.dir, 'id_test_b')]);
  publicKeyB = readFileSync(join(t.dir, 'id_test_b.pub'), 'utf8').trim();
  await aws(['ec2', 'import-key-pair', '--key-name', 'nettestb', '--public-key-material', publicKeyB]);
  for (const g of ['A', 'B', 'D']) await aws(['ec2', 'create-security-group', '--group-name', g, '--description', `group ${g}`]);
  writeFileSync(join(t.dir, 'user-data.sh'), guestAgentScript(USER_DATA_MARK));
  writeFileSync(join(t.dir, 'user-data-b.sh'), guestAgentScript(USER_DATA_MARK_B));
  const launch = async (group: string, count: number, image = t.image.emi, extra: string[] = ['--instance-type', 't1.micro', '--key-name', 'nettest', '--user-data', `file://${join(t.dir, 'user-data.sh')}`]) => {
    const args = ['ec2', 'run-instances', '--image-id', image, '--count', String(count), '--security-groups', group, ...extra];
    // On a busy machine the node can miss a poll while it builds guests (NOTREADY for a moment): retry as a user would.
    const r = await eventually(`run-instances in ${group}`, () => aws(args), 180_000);
    return (r.Instances as { InstanceId: string }[]).map((i) => i.InstanceId);
  };

  // The Debian guest first (it boots longest): the image is built once per host out here (the namespaces
  // have no route to the mirror) and registered by `mallee test-image --debian` in the front end.
  await sh(['bash', join(repoRoot, 'test/images/build-debian-image.sh')], { timeoutMs: 900_000 });
  await t.mallee(['test-image', '--debian']);
  const debImage = JSON.parse(readFileSync(join(t.feHome, 'test-image-debian.json'), 'utf8')) as { emi: string };
  const key = await aws(['ec2', 'create-key-pair', '--key-name', deb.keyName]);
  deb.keyFile = join(t.dir, `${deb.keyName}.pem`);
  writeFileSync(deb.keyFile, String(key.KeyMaterial), { mode: 0o600 });
  deb.publicKey = (await sh(['ssh-keygen', '-y', '-f', deb.keyFile])).stdout.trim();
  await aws(['ec2', 'authorize-security-group-ingress', '--group-name', 'D', '--protocol', 'tcp', '--port', '22', '--cidr', '0.0.0.0/0']);
  // The script asks the metadata service itself (python3 is cloud-init's; minbase has no curl or wget).
  writeFileSync(join(t.dir, 'user-data-debian.sh'), [
    '#!/bin/sh',
    `md=$(python3 -c 'import urllib.request as u; print(u.urlopen("http://169.254.169.254/latest/meta-data/instance-id", timeout=10).read().decode())')`,
    `echo "mallee: user-data ran token ${deb.token} as $(id -un) metadata instance-id $md"`,
    '',
  ].join('\n'));
  [deb.id] = (await launch('D', 1, debImage.emi, ['--instance-type', 'm1.small', '--key-name', deb.keyName, '--user-data', `file://${join(t.dir, 'user-data-debian.sh')}`])) as [string];

  const [a1, a2] = await launch('A', 2);
  const [b1] = await launch('B', 1, t.image.emi, ['--instance-type', 't1.micro', '--key-name', 'nettestb', '--user-data', `file://${join(t.dir, 'user-data-b.sh')}`]);
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
    const console = await consoleOf(inst.b1.id);
    expect(console).toContain(`mallee: eth0 ${inst.b1.privateIp}`);
    // No config drive in MANAGED mode: identity, key and user data came from the metadata service.
    expect(console).not.toContain('mallee: config drive');
    expect(console).toContain(`mallee: metadata service instance-id ${inst.b1.id}`);
    expect(console).toContain('mallee: public key nettestb');
    expect(console).toContain('mallee: user-data #!/bin/sh');
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
      // The key as imported (the clc names it after the key pair instead of its comment): each its own.
      const [mine, theirs] = k === 'a1' ? [publicKey, publicKeyB] : [publicKeyB, publicKey];
      expect(out).toContain(mine.split(' ').slice(0, 2).join(' '));
      expect(out).not.toContain(theirs.split(' ')[1]);
      expect(out).toContain(k === 'a1' ? '\nA\n' : '\nB\n');
      expect(out).toContain(k === 'a1' ? `# ${USER_DATA_MARK}\n` : `# ${USER_DATA_MARK_B}\n`);
      expect(out).not.toContain(k === 'a1' ? USER_DATA_MARK_B : `# ${USER_DATA_MARK}\n`);
    }
    const listing = await inGuest(inst.a2.id, guestGet(`${md}/meta-data/`));
    for (const key of ['ami-id', 'instance-id', 'instance-type', 'local-ipv4', 'public-ipv4', 'placement/', 'public-keys/', 'block-device-mapping/', 'security-groups']) expect(listing).toContain(key);
    expect(await inGuest(inst.a2.id, guestGet(`${md}/meta-data/placement/availability-zone`))).toBe('mallee-1a');
  }, 180_000);

  it('private DNS names: the metadata\'s hostname and local-hostname are DescribeInstances\' PrivateDnsName; the gateway\'s DNS (from DHCP) resolves every instance\'s, of its group and others', async () => {
    const name = async (k: 'a1' | 'a2' | 'b1') => {
      const d = await describe1(inst[k].id);
      expect(d.PrivateDnsName).toBe(`ip-${inst[k].privateIp.replace(/\./g, '-')}.mallee.compute.internal`);
      return d.PrivateDnsName!;
    };
    const [a1, a2, b1] = [await name('a1'), await name('a2'), await name('b1')];
    const md = 'http://169.254.169.254/latest/meta-data';
    expect(await inGuest(inst.a1.id, [guestGet(`${md}/hostname`), 'echo', guestGet(`${md}/local-hostname`)].join('\n'))).toBe(`${a1}\n${a1}`);
    const A = net27(inst.a1.privateIp);
    // DHCP named the network's gateway as the resolver; busybox nslookup asks it.
    expect(await inGuest(inst.a1.id, 'cat /etc/resolv.conf')).toBe(`nameserver ${A.gateway}\n`);
    const resolved = async (id: string, host: string) => {
      const out = await inGuest(id, `nslookup -type=a ${host} 2>&1; true`);
      return [...out.matchAll(/^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$/gm)].map((m) => m[1]);
    };
    expect(await resolved(inst.a1.id, a1)).toEqual([inst.a1.privateIp]);
    expect(await resolved(inst.a1.id, a2)).toEqual([inst.a2.privateIp]);
    expect(await resolved(inst.a1.id, b1)).toEqual([inst.b1.privateIp]);
    expect(await resolved(inst.b1.id, a1)).toEqual([inst.a1.privateIp]);
    // A name of the domain no instance has: nothing (answered locally, not a pattern and not forwarded).
    const nobody = `ip-${A.at(29).replace(/\./g, '-')}.mallee.compute.internal`;
    expect(await resolved(inst.a1.id, nobody)).toEqual([]);
  }, 180_000);

  it('the Debian guest: cloud-init takes its instance-id, key and user-data script from 169.254.169.254; ssh with that key gets in', async () => {
    const text = await eventually(`the Debian guest ${deb.id} booted`, async () => {
      const c = await consoleOf(deb.id);
      return c.includes(`mallee: debian boot done ${deb.id}`) ? c : undefined;
    }, 600_000);
    const d = await describe1(deb.id);
    // cloud-init's EC2 datasource (no config drive here), its own instance-id, and the name the metadata gave it.
    expect(text).toMatch(/mallee: cloud-init datasource DataSourceEc2/);
    expect(text).toMatch(new RegExp(`mallee: debian 12\\.\\d+ kernel \\S+ instance ${deb.id} hostname ip-${d.PrivateIpAddress!.replace(/\./g, '-')}`));
    expect(text).toContain(`mallee: user-data ran token ${deb.token} as root metadata instance-id ${deb.id}`);
    expect(text).toContain(`mallee: authorized key for debian: ${deb.keyName}`);
    const blob = Buffer.from(deb.publicKey.split(/\s+/)[1]!, 'base64');
    expect(text).toContain(createHash('sha256').update(blob).digest('hex').match(/../g)!.join(':'));
    // The key works: from the internet, through the guest's public address (group D allows tcp/22).
    const ssh = await eventually('ssh into the Debian guest', async () => {
      const r = await t.exec(t.ns.internet, ['ssh', '-i', deb.keyFile, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=20',
        `debian@${d.PublicIpAddress}`, 'cat /var/lib/cloud/data/instance-id; hostname; grep -c . ~/.ssh/authorized_keys'], { allowFail: true, timeoutMs: 90_000 });
      return r.code === 0 ? r.stdout : undefined;
    }, 180_000);
    const [sshId, sshHost, sshKeys] = ssh.split('\n');
    expect(sshId).toBe(deb.id);
    expect(sshHost).toMatch(new RegExp(`^ip-${d.PrivateIpAddress!.replace(/\./g, '-')}\\b`));
    expect(sshKeys).toBe('1');
  }, 800_000);

  it('security: the metadata service answers only an instance itself, on its own network; any other caller gets an error, nobody\'s data', async () => {
    const ids = [inst.a1.id, inst.a2.id, inst.b1.id, deb.id];
    const noData = (out: string) => ids.every((id) => !out.includes(id)) && !out.includes(USER_DATA_MARK) && !out.includes(publicKey.split(' ')[1]!);
    const A = net27(inst.a1.privateIp);
    const B = net27(inst.b1.privateIp);
    const curl = async (ns: string, url: string, extra: string[] = []) => {
      const r = await t.exec(ns, ['curl', '-s', '-m', '3', '-o', '-', '-w', '\n%{http_code}', ...extra, url], { allowFail: true });
      return { code: r.code, out: r.stdout };
    };
    // The internet: the front end's public address, and (routed through the front end) a network's gateway.
    for (const dst of ['172.31.0.0/16', '169.254.169.254/32']) await t.exec(t.ns.internet, ['ip', 'route', 'add', dst, 'via', '198.51.100.1']);
    try {
      for (const url of [`http://198.51.100.1:8779/latest/meta-data/instance-id`, `http://${A.gateway}:8779/latest/user-data`, 'http://169.254.169.254/latest/meta-data/instance-id']) {
        const r = await curl(t.ns.internet, url);
        expect(r.code, `${url} from the internet: ${r.out}`).not.toBe(0);
        expect(noData(r.out)).toBe(true);
      }
    } finally {
      for (const dst of ['172.31.0.0/16', '169.254.169.254/32']) await t.exec(t.ns.internet, ['ip', 'route', 'del', dst, 'via', '198.51.100.1'], { allowFail: true });
    }
    // The front end itself: loopback, a gateway, the private link.
    for (const url of [`http://127.0.0.1:8779/latest/meta-data/instance-id`, `http://${A.gateway}:8779/latest/user-data`, `http://10.99.0.1:8779/latest/meta-data/public-keys/0/openssh-key`]) {
      const r = await curl(t.ns.frontend, url);
      expect(r.code, `${url} from the front end: ${r.out}`).not.toBe(0);
      expect(noData(r.out)).toBe(true);
    }
    // On A's own network (the node's end of its bridge), from an address no instance has: through the filter, and a 404.
    const stranger = A.at(29);
    expect([inst.a1.privateIp, inst.a2.privateIp]).not.toContain(stranger);
    const br = `${t.id}br${A.index}`;
    await t.exec(t.ns.node, ['ip', 'addr', 'add', `${stranger}/27`, 'dev', br]);
    try {
      await t.exec(t.ns.node, ['ip', 'route', 'add', '169.254.169.254/32', 'via', A.gateway, 'dev', br]);
      for (const path of ['meta-data/instance-id', 'user-data', 'meta-data/public-keys/0/openssh-key']) {
        const r = await curl(t.ns.node, `http://169.254.169.254/latest/${path}`, ['--interface', stranger]);
        expect(r.out.trim().split('\n').pop(), `${path} from ${stranger}: ${r.out}`).toBe('404');
        expect(noData(r.out)).toBe(true);
      }
    } finally {
      await t.exec(t.ns.node, ['ip', 'route', 'del', '169.254.169.254/32', 'via', A.gateway, 'dev', br], { allowFail: true });
      await t.exec(t.ns.node, ['ip', 'addr', 'del', `${stranger}/27`, 'dev', br], { allowFail: true });
    }
    // A guest at another network's gateway, or the front end's other addresses, gets nothing; at its own, its own.
    for (const url of [`http://${B.gateway}:8779/latest/meta-data/instance-id`, 'http://10.99.0.1:8779/latest/meta-data/instance-id', 'http://198.51.100.1:8779/latest/meta-data/instance-id']) {
      expect(await inGuest(inst.a1.id, guestGet(url))).toContain('FAILED');
    }
    expect(await inGuest(inst.a1.id, guestGet(`http://${A.gateway}:8779/latest/meta-data/instance-id`))).toBe(inst.a1.id);
    expect(await inGuest(inst.a2.id, guestGet('http://169.254.169.254/latest/meta-data/instance-id'))).toBe(inst.a2.id);
  }, 180_000);

  it('guests reach the front end itself only for DHCP, metadata and the user-facing APIs: its cc port is closed to them', async () => {
    const A = net27(inst.a1.privateIp);
    // busybox wget -S: the server's status line when something answers, "Connection refused" when reset.
    const probe = (url: string) => inGuest(inst.a1.id, `timeout 4 wget -S -O /dev/null ${url} 2>&1; true`);
    for (const url of [`http://${A.gateway}:8774/`, 'http://10.99.0.1:8774/', 'http://198.51.100.1:8774/']) {
      const out = await probe(url);
      expect(out, url).toMatch(/refused/i);
      expect(out, url).not.toMatch(/HTTP\/1\.[01] \d{3}/);
    }
    // The EC2 API on the front end's public address stays reachable from guests, as on EC2.
    expect(await probe('http://198.51.100.1:8773/')).toMatch(/HTTP\/1\.[01] \d{3}/);
    // From outside the guests' networks nothing changed: the node still reaches Walrus and the cc.
    const fromNode = await t.exec(t.ns.node, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '3', 'http://10.99.0.1:8774/'], { allowFail: true });
    expect(fromNode.stdout).toMatch(/^\d{3}$/);
  }, 120_000);

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
    await aws(['ec2', 'terminate-instances', '--instance-ids', inst.a1.id, inst.a2.id, inst.b1.id, deb.id]);
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
