// The CC's generated iptables rules and metadata tree (the netns e2e suite applies them for real).
import { describe, expect, it } from 'vitest';
import { renderRules } from '../src/net/iptables.js';
import { metadataTree } from '../src/net/metadata.js';

const plan = { subnet: '172.31.0.0', netmask: '255.255.0.0', addrsPerNet: 32 };

describe('security groups as iptables chains', () => {
  const { filter, nat, chains } = renderRules({
    prefix: 'mln', plan, metadataPort: 8779, pubInterface: 'eth0', bridgeOf: (vlan) => `mlnbr${vlan}`, guestPorts: [8776, 8773],
    networks: [
      { vlan: 3, accountId: 'a', groupId: 'sg-b', groupName: 'B', rules: [{ protocol: 'tcp', fromPort: 80, toPort: 80, sourceVlan: 2 }] },
      { vlan: 2, accountId: 'a', groupId: 'sg-a', groupName: 'A', rules: [
        { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '0.0.0.0/0' }, { protocol: 'udp', fromPort: 1000, toPort: 2000, cidr: '10.0.0.0/8' },
        { protocol: 'icmp', fromPort: 8, toPort: -1, cidr: '0.0.0.0/0' }, { protocol: '-1', cidr: '192.0.2.0/24' },
      ] },
    ],
    addresses: [{ publicIp: '198.51.100.10', privateIp: '172.31.0.66' }],
  });

  it('one chain per network: within-group, ingress by protocol/ports/CIDR and by source group\'s network, then DROP', () => {
    expect(chains).toEqual(['mln-IN', 'mln-FWD', 'mln-PRE', 'mln-POST', 'mln-G2', 'mln-G3']);
    const lines = filter.split('\n');
    expect(lines.indexOf('-A mln-FWD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT')).toBeLessThan(lines.indexOf('-A mln-FWD -d 172.31.0.64/27 -j mln-G2'));
    expect(lines).toEqual(expect.arrayContaining([
      '-A mln-G2 -s 172.31.0.64/27 -j ACCEPT',
      '-A mln-G2 -p tcp --dport 22 -j ACCEPT',
      '-A mln-G2 -p udp -s 10.0.0.0/8 --dport 1000:2000 -j ACCEPT',
      '-A mln-G2 -p icmp --icmp-type 8 -j ACCEPT',
      '-A mln-G2 -s 192.0.2.0/24 -j ACCEPT',
      '-A mln-G3 -p tcp -s 172.31.0.64/27 --dport 80 -j ACCEPT',
      '-A mln-FWD -d 172.31.0.0/16 -j DROP',
    ]));
    expect(lines.indexOf('-A mln-G2 -j DROP')).toBe(lines.indexOf('-A mln-G2 -s 192.0.2.0/24 -j ACCEPT') + 1);
  });

  it('the metadata port is open only to each network\'s own guests on its own bridge, at its gateway; guests reach nothing else of the front end but DHCP, DNS, ICMP and the APIs', () => {
    const lines = filter.split('\n').filter((l) => l.startsWith('-A mln-IN '));
    expect(lines).toEqual([
      '-A mln-IN -i mlnbr2 -s 172.31.0.64/27 -d 172.31.0.65/32 -p tcp --dport 8779 -j ACCEPT',
      '-A mln-IN -i mlnbr3 -s 172.31.0.96/27 -d 172.31.0.97/32 -p tcp --dport 8779 -j ACCEPT',
      '-A mln-IN -p tcp --dport 8779 -j REJECT --reject-with tcp-reset',
      '-A mln-IN -s 172.31.0.0/16 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A mln-IN -s 172.31.0.0/16 -p udp -m multiport --dports 53,67 -j ACCEPT',
      '-A mln-IN -s 172.31.0.0/16 -p tcp --dport 53 -j ACCEPT',
      '-A mln-IN -s 172.31.0.0/16 -p icmp -j ACCEPT',
      '-A mln-IN -s 172.31.0.0/16 -p tcp --dport 8773 -j ACCEPT',
      '-A mln-IN -s 172.31.0.0/16 -p tcp --dport 8776 -j ACCEPT',
      '-A mln-IN -s 172.31.0.0/16 -p tcp -j REJECT --reject-with tcp-reset',
      '-A mln-IN -s 172.31.0.0/16 -j REJECT --reject-with icmp-port-unreachable',
    ]);
  });

  it('DNAT/SNAT for public addresses and the metadata address to the gateway', () => {
    expect(nat).toContain('-A mln-PRE -s 172.31.0.64/27 -d 169.254.169.254/32 -p tcp --dport 80 -j DNAT --to-destination 172.31.0.65:8779');
    expect(nat).toContain('-A mln-PRE -d 198.51.100.10/32 -j DNAT --to-destination 172.31.0.66');
    expect(nat).toContain('-A mln-POST -s 172.31.0.66/32 ! -d 172.31.0.0/16 -j SNAT --to-source 198.51.100.10');
    expect(nat).toContain('-A mln-POST -s 172.31.0.0/16 -o eth0 -j MASQUERADE');
  });
});

describe('instance metadata', () => {
  it('serves EC2\'s tree for the instance, with public address and key only when it has them', () => {
    const spec = {
      instanceId: 'i-12345678', reservationId: 'r-1', ownerId: '1', launchIndex: 0, imageId: 'emi-1', imageLocation: 'b/m.xml', kernelId: 'eki-1',
      vmType: { name: 'm1.small', cores: 1, memoryMiB: 256, diskGiB: 5 }, groupNames: ['A', 'web'], privateIp: '172.31.0.66', macAddress: 'd0:0d:ac:1f:00:42',
      keyName: 'k', publicKey: 'ssh-ed25519 AAAA k',
    };
    const tree = metadataTree({ spec, zone: 'z1', region: 'r', publicIp: '198.51.100.10' });
    expect(tree).toMatchObject({ 'instance-id': 'i-12345678', 'local-ipv4': '172.31.0.66', 'public-ipv4': '198.51.100.10', 'security-groups': 'A\nweb', 'kernel-id': 'eki-1', placement: { 'availability-zone': 'z1' } });
    expect(tree['public-keys']).toEqual({ '0=k': { 'openssh-key': 'ssh-ed25519 AAAA k\n' } });
    const bare = metadataTree({ spec: { ...spec, publicKey: undefined, kernelId: undefined }, zone: 'z1', region: 'r' });
    expect(bare['public-ipv4']).toBeUndefined();
    expect(bare['public-keys']).toBeUndefined();
    expect(bare['kernel-id']).toBeUndefined();
  });
});
