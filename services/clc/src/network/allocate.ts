// Handing out what MANAGED networking needs at launch, inside RunInstances' transaction: the group's
// network (created on first use), a free private address and its MAC per instance, and — unless
// disabled — a public address from the pool (released again when the instance goes).
import { randomBytes } from 'node:crypto';
import type { Db } from '@mallee/store';
import { Ec2Error } from '@mallee/aws-protocol';
import { hostAddresses, macForAddress, MIN_NETWORK_INDEX, privateDnsName, privateNetwork } from '@mallee/vnet';
import type { NetworkPlan } from './plan.js';

/** States in which an instance still holds its private address. */
const HOLDING = "('pending', 'running', 'shutting-down', 'stopping', 'stopped')";

export const newAllocationId = () => `eipalloc-${randomBytes(4).toString('hex')}`;
export const newAssociationId = () => `eipassoc-${randomBytes(4).toString('hex')}`;

/** The group's network index, allocating the lowest free one on first use. */
export function networkOf(db: Db, plan: NetworkPlan, group: { groupId: string; accountId: string }): number {
  const known = db.prepare('SELECT vlan FROM networks WHERE group_id = ?').pluck().get(group.groupId) as number | undefined;
  if (known !== undefined) return known;
  // Networks of deleted groups that no instance uses any more are free again.
  db.prepare(`DELETE FROM networks WHERE group_id NOT IN (SELECT group_id FROM security_groups)
    AND vlan NOT IN (SELECT vlan FROM instances WHERE vlan IS NOT NULL AND state IN ${HOLDING})`).run();
  const used = new Set(db.prepare('SELECT vlan FROM networks').pluck().all() as number[]);
  for (let i = MIN_NETWORK_INDEX; i < plan.networks; i++) {
    if (used.has(i)) continue;
    db.prepare('INSERT INTO networks (group_id, account_id, vlan, created_at) VALUES (?, ?, ?, ?)').run(group.groupId, group.accountId, i, new Date().toISOString());
    return i;
  }
  throw new Ec2Error('InsufficientAddressCapacity', `All ${plan.networks - MIN_NETWORK_INDEX} private networks of ${plan.subnet}/${plan.netmask} are in use (one per security group); raise VNET_NETMASK's size or lower VNET_ADDRSPERNET`);
}

/** A SYSTEM-mode MAC: d0:0d and the last four bytes of the instance id. */
export function macForInstance(instanceId: string): string {
  const hex = instanceId.replace(/^i-/, '').slice(-8).padStart(8, '0');
  return ['d0', '0d', ...hex.match(/../g)!].join(':');
}

/** Free public addresses of the pool, in pool order. */
export function freePublicIps(db: Db, plan: NetworkPlan): string[] {
  const taken = new Set(db.prepare('SELECT public_ip FROM addresses').pluck().all() as string[]);
  return plan.publicIps.filter((ip) => !taken.has(ip));
}

export interface LaunchAddressing {
  /** AddressingType=private (euca-run-instances --addressing private): no public address. */
  privateOnly: boolean;
}

/**
 * Gives each new instance of a reservation its network, private address, MAC and (maybe) a public
 * address. Fails with InsufficientFreeAddressesInSubnet when the group's network is full.
 */
export function assignLaunchAddresses(db: Db, plan: NetworkPlan, accountId: string, group: { groupId: string; accountId: string }, instanceIds: string[], opts: LaunchAddressing): void {
  if (plan.mode === 'SYSTEM') {
    // SYSTEM: the site's DHCP hands out addresses; the instance only needs its MAC (from its id).
    const set = db.prepare('UPDATE instances SET mac_address = ? WHERE instance_id = ?');
    for (const id of instanceIds) set.run(macForInstance(id), id);
    return;
  }
  if (!plan.managed) return;
  const vlan = networkOf(db, plan, group);
  const net = privateNetwork(plan, vlan);
  const used = new Set(db.prepare(`SELECT private_ip FROM instances WHERE vlan = ? AND private_ip IS NOT NULL AND state IN ${HOLDING}`).pluck().all(vlan) as string[]);
  const free = hostAddresses(net).filter((ip) => !used.has(ip));
  if (free.length < instanceIds.length) {
    throw new Ec2Error('InsufficientFreeAddressesInSubnet', `The network of this security group (${net.cidr}) has ${free.length} free addresses, ${instanceIds.length} needed (VNET_ADDRSPERNET=${plan.addrsPerNet})`);
  }
  const set = db.prepare('UPDATE instances SET vlan = ?, private_ip = ?, mac_address = ?, private_dns_name = ? WHERE instance_id = ?');
  const publicIps = opts.privateOnly || !plan.autoAssign ? [] : freePublicIps(db, plan);
  const now = new Date().toISOString();
  instanceIds.forEach((id, i) => {
    const ip = free[i]!;
    set.run(vlan, ip, macForAddress(ip), privateDnsName(ip, plan.region), id);
    const pub = publicIps[i];
    // A pool that runs dry leaves the rest private, as Eucalyptus does (no launch fails for it).
    if (pub) associate(db, { publicIp: pub, allocationId: newAllocationId(), accountId, auto: true, instanceId: id, now });
  });
}

function associate(db: Db, a: { publicIp: string; allocationId: string; accountId: string; auto: boolean; instanceId: string; now: string }): void {
  db.prepare(`INSERT INTO addresses (public_ip, allocation_id, account_id, auto_assigned, instance_id, association_id, allocated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)`).run(a.publicIp, a.allocationId, a.accountId, a.auto ? 1 : 0, a.instanceId, newAssociationId(), a.now);
  db.prepare('UPDATE instances SET public_ip = ? WHERE instance_id = ?').run(a.publicIp, a.instanceId);
}

/**
 * Addresses of instances that are going or gone: auto-assigned ones return to the pool, elastic
 * ones stay with the account, disassociated (EC2 and Eucalyptus do the same at termination).
 * Returns how many changed.
 */
export function releaseAddressesOfGoneInstances(db: Db): number {
  const gone = `SELECT a.public_ip FROM addresses a LEFT JOIN instances i ON i.instance_id = a.instance_id
    WHERE a.instance_id IS NOT NULL AND (i.instance_id IS NULL OR i.state IN ('shutting-down', 'terminated'))`;
  return db.transaction(() => {
    const ips = db.prepare(gone).pluck().all() as string[];
    for (const ip of ips) {
      const row = db.prepare('SELECT instance_id, auto_assigned FROM addresses WHERE public_ip = ?').get(ip) as { instance_id: string; auto_assigned: number };
      db.prepare('UPDATE instances SET public_ip = NULL WHERE instance_id = ? AND public_ip = ?').run(row.instance_id, ip);
      if (row.auto_assigned) db.prepare('DELETE FROM addresses WHERE public_ip = ?').run(ip);
      else db.prepare('UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE public_ip = ?').run(ip);
    }
    return ips.length;
  })();
}
