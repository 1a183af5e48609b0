import { describe, expect, it } from 'vitest';
import {
  bridgeOf, hostAddresses, macForAddress, networkCount, parsePublicIps, planLinks, planUnlink, prefixLength, privateDnsName, privateNetwork, subnetCidr, tapName,
  type LinkInfo, type NetworkLinkSpec,
} from '../src/index.js';

const plan = { subnet: '172.31.0.0', netmask: '255.255.0.0', addrsPerNet: 32 };

describe('address plan (Eucalyptus vnetwork.c layout)', () => {
  it('cuts the subnet into networks: .0 network, .1 the CC gateway, hosts, broadcast', () => {
    expect(prefixLength('255.255.0.0')).toBe(16);
    expect(() => prefixLength('255.0.255.0')).toThrow(/contiguous/);
    expect(networkCount(plan)).toBe(2048);
    const n = privateNetwork(plan, 2);
    expect(n).toMatchObject({ cidr: '172.31.0.64/27', gateway: '172.31.0.65', broadcast: '172.31.0.95', firstHost: '172.31.0.66', lastHost: '172.31.0.94', netmask: '255.255.255.224' });
    expect(hostAddresses(n)).toHaveLength(29);
    expect(subnetCidr({ ...plan, subnet: '172.31.9.9' })).toBe('172.31.0.0/16');
    expect(networkCount({ subnet: '10.0.0.0', netmask: '255.0.0.0', addrsPerNet: 16 })).toBe(4096);
  });

  it('derives MACs and private DNS names from the address, and parses VNET_PUBLICIPS lists and ranges', () => {
    expect(macForAddress('172.31.0.66')).toBe('d0:0d:ac:1f:00:42');
    expect(privateDnsName('172.31.0.66', 'mallee')).toBe('ip-172-31-0-66.mallee.compute.internal');
    expect(parsePublicIps('10.0.0.5 10.0.0.8-10.0.0.10, 10.0.0.5')).toEqual(['10.0.0.5', '10.0.0.8', '10.0.0.9', '10.0.0.10']);
    expect(() => parsePublicIps('10.0.0.9-10.0.0.1')).toThrow(/backwards/);
    expect(() => parsePublicIps('10.0.0.300')).toThrow(/IPv4/);
  });
});

const spec = (over: Partial<NetworkLinkSpec> = {}): NetworkLinkSpec => ({ mode: 'MANAGED', encap: 'vlan', index: 7, prefix: 'mln', privInterface: 'eth1', ...over });
const links = (...l: LinkInfo[]) => new Map(l.map((x) => [x.name, x]));

describe('network links', () => {
  it('802.1Q: a tagged device on the private interface, enslaved to the network\'s bridge (the kernel here has no 8021q: checked as commands)', () => {
    expect(planLinks(links(), spec())).toEqual([
      ['ip', 'link', 'add', 'mlnbr7', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'],
      ['ip', 'link', 'add', 'link', 'eth1', 'name', 'mlnvl7', 'type', 'vlan', 'id', '7'],
      ['ip', 'link', 'set', 'mlnvl7', 'master', 'mlnbr7'],
      ['ip', 'link', 'set', 'mlnvl7', 'up'],
      ['ip', 'link', 'set', 'mlnbr7', 'up'],
    ]);
  });

  it('VXLAN: VNI = network index, to the CC from a node; nothing to do when all is in place; a wrong VNI is replaced', () => {
    const cmds = planLinks(links(), spec({ encap: 'vxlan', local: '10.0.0.2', remote: '10.0.0.1' }));
    expect(cmds[1]).toEqual(['ip', 'link', 'add', 'mlnvx7', 'type', 'vxlan', 'id', '7', 'dstport', '4789', 'dev', 'eth1', 'local', '10.0.0.2', 'remote', '10.0.0.1']);
    const ready = links({ name: 'mlnbr7', kind: 'bridge', up: true }, { name: 'mlnvx7', kind: 'vxlan', id: 7, master: 'mlnbr7', up: true });
    expect(planLinks(ready, spec({ encap: 'vxlan' }))).toEqual([]);
    const wrong = links({ name: 'mlnbr7', kind: 'bridge', up: true }, { name: 'mlnvx7', kind: 'vxlan', id: 9, master: 'mlnbr7', up: true });
    expect(planLinks(wrong, spec({ encap: 'vxlan' }))[0]).toEqual(['ip', 'link', 'del', 'mlnvx7']);
    expect(() => planLinks(links({ name: 'mlnbr7', kind: 'veth', up: true }), spec())).toThrow(/not a bridge/);
    expect(planUnlink(ready, spec())).toEqual([['ip', 'link', 'del', 'mlnvx7'], ['ip', 'link', 'del', 'mlnbr7']]);
  });

  it('MANAGED-NOVLAN and SYSTEM use the existing VNET_BRIDGE and never create one', () => {
    expect(bridgeOf(spec({ mode: 'MANAGED-NOVLAN', sharedBridge: 'br0' }))).toBe('br0');
    expect(planLinks(links({ name: 'br0', kind: 'bridge', up: true }), spec({ mode: 'SYSTEM', sharedBridge: 'br0' }))).toEqual([]);
    expect(() => planLinks(links(), spec({ mode: 'SYSTEM', sharedBridge: 'br0' }))).toThrow(/does not exist/);
    expect(() => bridgeOf(spec({ mode: 'SYSTEM' }))).toThrow(/VNET_BRIDGE/);
    expect(planUnlink(links({ name: 'br0', kind: 'bridge', up: true }), spec({ mode: 'MANAGED-NOVLAN' }))).toEqual([]);
    expect(tapName('mln', 'i-1234abcd')).toBe('mlnt1234abcd');
  });
});
