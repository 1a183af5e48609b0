// The cc's network manager against a recorded host (a fake command runner that keeps links and
// addresses): the 802.1Q path this kernel cannot run, stale networks removed, leases from the clc's
// state. The netns e2e suite (test/e2e/network.test.ts) runs the VXLAN path on real namespaces.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '@mallee/config';
import { openDatabase } from '@mallee/store';
import type { CommandRunner } from '@mallee/vnet';
import { migrations } from '../src/registry.js';
import { NetworkManager, networkMigrations } from '../src/net/manager.js';

/** A pretend host: `ip link add/del/set`, `ip addr add/del`, `ip -j … show` and everything else recorded. */
function fakeHost() {
  const links = new Map<string, { ifname: string; ifindex: number; master?: string; flags: string[]; linkinfo?: { info_kind: string; info_data?: { id: number } } }>();
  const addrs = new Map<string, string[]>();
  let next = 10;
  links.set('eth1', { ifname: 'eth1', ifindex: 2, flags: ['UP'] });
  links.set('eth0', { ifname: 'eth0', ifindex: 3, flags: ['UP'] });
  addrs.set('eth1', ['10.0.0.1/24']);
  addrs.set('eth0', ['192.0.2.1/24']);
  const cmds: string[] = [];
  const run: CommandRunner = async (argv, opts) => {
    const c = argv.join(' ');
    cmds.push(opts?.input ? `${c} <<${opts.input}` : c);
    if (c === 'ip -j -d link show') return JSON.stringify([...links.values()]);
    const show = /^ip -j -4 addr show dev (\S+)$/.exec(c);
    if (show) return links.has(show[1]!) ? JSON.stringify([{ addr_info: (addrs.get(show[1]!) ?? []).map((a) => ({ local: a.split('/')[0], prefixlen: Number(a.split('/')[1]) })) }]) : '[]';
    let m = /^ip link add (?:link \S+ name )?(\S+) type (\S+)(?: id (\d+))?/.exec(c);
    if (m) links.set(m[1]!, { ifname: m[1]!, ifindex: next++, flags: [], linkinfo: { info_kind: m[2]!, ...(m[3] ? { info_data: { id: Number(m[3]) } } : {}) } });
    if ((m = /^ip link add (\S+) type bridge/.exec(c))) links.set(m[1]!, { ifname: m[1]!, ifindex: next++, flags: [], linkinfo: { info_kind: 'bridge' } });
    if ((m = /^ip link set (\S+) master (\S+)$/.exec(c))) links.get(m[1]!)!.master = m[2]!;
    if ((m = /^ip link set (\S+) up$/.exec(c))) links.get(m[1]!)!.flags = ['UP'];
    if ((m = /^ip link del (\S+)$/.exec(c))) links.delete(m[1]!);
    if ((m = /^ip addr add (\S+) dev (\S+)$/.exec(c))) addrs.set(m[2]!, [...(addrs.get(m[2]!) ?? []), m[1]!]);
    if ((m = /^ip addr del (\S+) dev (\S+)$/.exec(c))) addrs.set(m[2]!, (addrs.get(m[2]!) ?? []).filter((a) => a !== m![1]));
    if (c.startsWith('bridge -j fdb show')) return '[]';
    if (c.startsWith('iptables -w -t filter -S')) return '';
    if (argv[0] === 'dnsmasq') return '';
    return '';
  };
  return { run, cmds, links, addrs };
}

const homes: string[] = [];
afterEach(() => {
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});

const freePort = () => new Promise<number>((resolve) => {
  const srv = createServer().listen(0, '127.0.0.1', () => {
    const { port } = srv.address() as { port: number };
    srv.close(() => resolve(port));
  });
});

async function manager(host: ReturnType<typeof fakeHost>, encap: 'vlan' | 'vxlan', live: Set<string> = new Set(), mode: 'MANAGED' | 'MANAGED-NOVLAN' = 'MANAGED') {
  const home = mkdtempSync(join(tmpdir(), 'mallee-ccnet-'));
  homes.push(home);
  const config = loadConfig({ env: {}, overrides: { VNET_MODE: mode, VNET_ENCAP: encap, VNET_PRIVINTERFACE: 'eth1', VNET_PUBINTERFACE: 'eth0', VNET_PUBLICIPS: '192.0.2.10-192.0.2.12', METADATA_PORT: await freePort(), LOG_LEVEL: 'silent' } });
  const db = openDatabase(join(home, 'cc.sqlite'), { migrations: [...migrations, ...networkMigrations] });
  const m = new NetworkManager({ config, home, db, log: pino({ level: 'silent' }), run: host.run, nodeHosts: () => ['10.0.0.2'], liveInstances: () => live });
  return { m, home, db, port: config.METADATA_PORT };
}

const group = (vlan: number) => ({ vlan, accountId: '1', groupId: `sg-${vlan}`, groupName: `g${vlan}`, rules: [] });

describe('cc network manager', () => {
  it('802.1Q: a tagged device per network on VNET_PRIVINTERFACE, bridged, with the gateway; leases from the clc; stale networks and addresses go', async () => {
    const host = fakeHost();
    const { m, home } = await manager(host, 'vlan');
    await m.start();
    try {
      await m.configure({
        networks: [group(2), group(5)],
        addresses: [{ publicIp: '192.0.2.10', privateIp: '172.31.0.66' }],
        instances: [{ instanceId: 'i-00000001', vlan: 2, privateIp: '172.31.0.66', macAddress: 'd0:0d:ac:1f:00:42' }],
      });
      expect(host.cmds).toEqual(expect.arrayContaining([
        'ip link add link eth1 name mlnvl2 type vlan id 2',
        'ip link set mlnvl2 master mlnbr2',
        'ip addr add 172.31.0.65/27 dev mlnbr2',
        'ip link add link eth1 name mlnvl5 type vlan id 5',
        'ip addr add 172.31.0.161/27 dev mlnbr5',
        'ip addr add 192.0.2.10/32 dev eth0',
      ]));
      expect(host.cmds.some((c) => c.includes('vxlan'))).toBe(false);
      expect(readFileSync(join(home, 'run', 'dnsmasq', 'mlnbr2.hosts'), 'utf8')).toBe('d0:0d:ac:1f:00:42,172.31.0.66,ip-172-31-0-66\n');
      const dnsmasq2 = host.cmds.find((c) => c.startsWith('dnsmasq') && c.includes('--interface=mlnbr2'))!;
      expect(dnsmasq2).toContain('--dhcp-range=set:n2,172.31.0.64,static,255.255.255.224,1h');
      // DNS at the gateway for the zone's private names (every network's instances), never forwarded.
      expect(readFileSync(join(home, 'run', 'dnsmasq', 'names'), 'utf8')).toBe('172.31.0.66 ip-172-31-0-66.mallee.compute.internal ip-172-31-0-66\n');
      expect(dnsmasq2).not.toContain('--port=0');
      for (const a of [`--addn-hosts=${join(home, 'run', 'dnsmasq', 'names')}`, '--local=/mallee.compute.internal/', '--no-hosts', '--dhcp-option=tag:n2,option:dns-server,172.31.0.65', '--dhcp-option=option:domain-name,mallee.compute.internal']) expect(dnsmasq2).toContain(a);
      expect(host.cmds.find((c) => c.startsWith('dnsmasq') && c.includes('--interface=mlnbr5'))).toContain(`--addn-hosts=${join(home, 'run', 'dnsmasq', 'names')}`);
      host.cmds.length = 0;
      // Network 5's last instance went and the address was released: its devices and the /32 go.
      await m.configure({ networks: [group(2)], addresses: [], instances: [] });
      expect(host.cmds).toEqual(expect.arrayContaining(['ip link del mlnvl5', 'ip link del mlnbr5', 'ip addr del 192.0.2.10/32 dev eth0']));
      expect(host.links.has('mlnbr2')).toBe(true);
      const restore = host.cmds.find((c) => c.startsWith('iptables-restore --noflush <<*filter'))!;
      expect(restore).toContain(':mln-G2 - [0:0]');
      expect(restore).not.toContain('mln-G5');
    } finally {
      await m.stop();
    }
  });

  it('metadata callers: a live instance\'s own address at its own network\'s gateway only; no one else, nor after it is gone', async () => {
    const host = fakeHost();
    const live = new Set(['i-0000000a', 'i-0000000b']);
    const { m, port } = await manager(host, 'vxlan', live);
    await m.start();
    try {
      const spec = (id: string, vlan: number, ip: string) => ({
        instanceId: id, reservationId: 'r-1', ownerId: '1', launchIndex: 0, imageId: 'emi-1', imageLocation: '', vmType: { name: 't1.micro', cores: 1, memoryMiB: 256, diskGiB: 1 },
        groupNames: [`g${vlan}`], vlan, privateIp: ip, macAddress: 'd0:0d:ac:1f:00:42', userData: Buffer.from(`data of ${id}`).toString('base64'),
      });
      await m.prepareLaunch(spec('i-0000000a', 2, '172.31.0.66'));
      await m.prepareLaunch(spec('i-0000000b', 5, '172.31.0.162'));
      expect(m.instanceFor('172.31.0.66', '172.31.0.65')?.spec.instanceId).toBe('i-0000000a');
      expect(m.instanceFor('172.31.0.162', '172.31.0.161')?.spec.instanceId).toBe('i-0000000b');
      // The right address at another network's gateway, the front end's own addresses, an address no instance has.
      expect(m.instanceFor('172.31.0.66', '172.31.0.161')).toBeUndefined();
      expect(m.instanceFor('172.31.0.66', '10.0.0.1')).toBeUndefined();
      expect(m.instanceFor('172.31.0.67', '172.31.0.65')).toBeUndefined();
      expect(m.instanceFor('10.0.0.1', '10.0.0.1')).toBeUndefined();
      // Over HTTP from this host (127.0.0.1 is no instance): 404, nobody's data.
      const r = await fetch(`http://127.0.0.1:${port}/latest/user-data`);
      expect(r.status).toBe(404);
      expect(await r.text()).not.toContain('data of');
      // Gone from the cluster: once its launch grace has passed, its address gets nothing.
      live.delete('i-0000000a');
      expect(m.instanceFor('172.31.0.66', '172.31.0.65')?.spec.instanceId).toBe('i-0000000a'); // still launching, as far as the cc can tell
      const now = Date.now();
      vi.useFakeTimers({ now: now + 121_000, toFake: ['Date'] });
      try {
        expect(m.instanceFor('172.31.0.66', '172.31.0.65')).toBeUndefined();
        expect(m.instanceFor('172.31.0.162', '172.31.0.161')?.spec.instanceId).toBe('i-0000000b');
      } finally {
        vi.useRealTimers();
      }
    } finally {
      await m.stop();
    }
  });

  it('MANAGED-NOVLAN: every gateway on the private interface, no redirects, the network\'s range in the launch; a gone network\'s gateway comes off', async () => {
    const host = fakeHost();
    const { m } = await manager(host, 'vxlan', new Set(), 'MANAGED-NOVLAN');
    await m.start();
    try {
      expect(host.cmds).toEqual(expect.arrayContaining(['sysctl -q -w net/ipv4/conf/all/send_redirects=0', 'sysctl -q -w net/ipv4/conf/eth1/send_redirects=0']));
      const launched = await m.prepareLaunch({
        instanceId: 'i-0000000a', reservationId: 'r-1', ownerId: '1', launchIndex: 0, imageId: 'emi-1', imageLocation: '', vmType: { name: 't1.micro', cores: 1, memoryMiB: 256, diskGiB: 1 },
        groupNames: ['g2'], vlan: 2, privateIp: '172.31.0.66', macAddress: 'd0:0d:ac:1f:00:42',
      });
      expect(launched.network).toEqual({ mode: 'MANAGED-NOVLAN', encap: 'vxlan', cidr: '172.31.0.64/27' });
      await m.configure({ networks: [group(2), group(5)], addresses: [], instances: [] });
      expect(host.addrs.get('eth1')).toEqual(['10.0.0.1/24', '172.31.0.65/27', '172.31.0.161/27']);
      expect([...host.links.keys()].filter((l) => l.startsWith('mln'))).toEqual([]);
      // One dnsmasq on the shared interface serves both networks.
      const d = host.cmds.filter((c) => c.startsWith('dnsmasq'));
      expect(d.at(-1)).toContain('--interface=eth1');
      expect(d.at(-1)).toContain('--dhcp-range=set:n5,172.31.0.160,static,255.255.255.224,1h');
      await m.configure({ networks: [group(5)], addresses: [], instances: [] });
      expect(host.addrs.get('eth1')).toEqual(['10.0.0.1/24', '172.31.0.161/27']);
    } finally {
      await m.stop();
    }
  });

  it('does nothing to the host when VNET_PRIVINTERFACE does not exist', async () => {
    const host = fakeHost();
    host.links.delete('eth1');
    const { m } = await manager(host, 'vxlan');
    await m.start();
    await m.configure({ networks: [group(2)], addresses: [], instances: [] });
    expect(m.active).toBe(false);
    expect(host.cmds).toEqual(['ip -j -d link show']);
    await m.stop();
  });
});
