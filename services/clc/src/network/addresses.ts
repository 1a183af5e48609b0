// Elastic IPs as EC2-Classic and Eucalyptus serve them: AllocateAddress, AssociateAddress,
// DisassociateAddress, ReleaseAddress, DescribeAddresses. The clc records the change, then tells the
// instance's cc (AssignAddress / UnassignAddress) so the DNAT/SNAT moves at once.
import { z } from 'zod';
import { defineEc2Action, Ec2Error, errors, q, type ActionContext, type Ec2Action } from '@mallee/aws-protocol';
import type { Db } from '@mallee/store';
import { isIpv4 } from '@mallee/vnet';
import { applyFilters } from '../resources/index.js';
import { list, ownInstances, type Clc } from '../actions/context.js';
import { instanceRow, type InstanceRow } from '../instances.js';
import { freePublicIps, newAllocationId, newAssociationId } from './allocate.js';
import type { NetworkSync } from './sync.js';

interface AddressRow {
  public_ip: string; allocation_id: string; account_id: string; auto_assigned: number;
  instance_id: string | null; association_id: string | null; allocated_at: string;
}

export interface AddressDeps extends Clc {
  network: NetworkSync;
}

/** SYSTEM mode: guests sit on the site's network with the site's addresses; there is nothing to map a public address to (as Eucalyptus). */
function refuseInSystemMode(deps: AddressDeps, action: string): void {
  if (deps.network.plan.mode === 'SYSTEM') {
    throw new Ec2Error('UnsupportedOperation', `${action} is not supported by this cloud's networking mode (VNET_MODE SYSTEM: instances take their addresses from the site's DHCP; there are no elastic IPs)`);
  }
}

const addressNotFound = (ip: string) => new Ec2Error('InvalidAddress.NotFound', `Address '${ip}' not found.`);
const allocationNotFound = (id: string) => new Ec2Error('InvalidAllocationID.NotFound', `The allocation ID '${id}' does not exist`);

/** The account's elastic address named by PublicIp or AllocationId. */
function ownAddress(db: Db, accountId: string, ref: { PublicIp?: string | undefined; AllocationId?: string | undefined }): AddressRow {
  if (ref.AllocationId) {
    const row = db.prepare('SELECT * FROM addresses WHERE allocation_id = ? AND auto_assigned = 0').get(ref.AllocationId) as AddressRow | undefined;
    if (!row || row.account_id !== accountId) throw allocationNotFound(ref.AllocationId);
    return row;
  }
  if (!ref.PublicIp) throw errors.missing('PublicIp or AllocationId');
  const row = db.prepare('SELECT * FROM addresses WHERE public_ip = ? AND auto_assigned = 0').get(ref.PublicIp) as AddressRow | undefined;
  if (!row || row.account_id !== accountId) throw addressNotFound(ref.PublicIp);
  return row;
}

/** Takes whatever public address the instance has off it (an auto-assigned one goes back to the pool). */
function detachFromInstance(db: Db, instanceId: string): string | undefined {
  const row = db.prepare('SELECT * FROM addresses WHERE instance_id = ?').get(instanceId) as AddressRow | undefined;
  if (!row) return undefined;
  if (row.auto_assigned) db.prepare('DELETE FROM addresses WHERE public_ip = ?').run(row.public_ip);
  else db.prepare('UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE public_ip = ?').run(row.public_ip);
  db.prepare('UPDATE instances SET public_ip = NULL WHERE instance_id = ?').run(instanceId);
  return row.public_ip;
}

/** EC2-Classic: an instance that loses its elastic address gets a fresh public one, when auto-assignment is on. */
function giveAutoAddress(deps: AddressDeps, inst: InstanceRow): string | undefined {
  const plan = deps.network.plan;
  if (!plan.autoAssign || !inst.private_ip || !['pending', 'running'].includes(inst.state)) return undefined;
  const ip = freePublicIps(deps.db, plan)[0];
  if (!ip) return undefined;
  deps.db.prepare(`INSERT INTO addresses (public_ip, allocation_id, account_id, auto_assigned, instance_id, association_id, allocated_at)
    VALUES (?, ?, ?, 1, ?, ?, ?)`).run(ip, newAllocationId(), inst.account_id, inst.instance_id, newAssociationId(), new Date().toISOString());
  deps.db.prepare('UPDATE instances SET public_ip = ? WHERE instance_id = ?').run(ip, inst.instance_id);
  return ip;
}

/** After a change: unmap what went, map what came, on the instances' clusters (errors are retried by the sync). */
async function tellClusters(deps: AddressDeps, ctx: Pick<ActionContext, 'log'>, changes: { unassign?: string; assign?: { ip: string; inst: InstanceRow } }[]): Promise<void> {
  for (const c of changes) {
    try {
      if (c.unassign) await deps.network.unassign(c.unassign);
      if (c.assign?.inst.private_ip) await deps.network.assign(c.assign.inst.zone, { publicIp: c.assign.ip, privateIp: c.assign.inst.private_ip, instanceId: c.assign.inst.instance_id });
    } catch (err) {
      ctx.log.warn({ err, change: c }, 'the cluster did not take the address change now; the network sync retries it');
    }
  }
  deps.network.soon();
}

/**
 * Eucalyptus's `euca-describe-addresses verbose` for the administrator: the whole pool, each address
 * with what holds it in instanceId — "nobody" (free), "available (account)" (allocated, not associated),
 * "i-… (account)" (associated; auto-assigned ones too).
 */
function everyAddress(db: Db, pool: string[]): Record<string, unknown>[] {
  const rows = new Map((db.prepare(`SELECT a.*, c.name AS account_name FROM addresses a LEFT JOIN accounts c ON c.account_id = a.account_id`).all() as (AddressRow & { account_name: string | null })[])
    .map((r) => [r.public_ip, r]));
  return pool.map((ip) => {
    const r = rows.get(ip);
    const owner = r ? ` (${r.account_name ?? r.account_id})` : '';
    return { publicIp: ip, domain: 'standard', instanceId: r ? `${r.instance_id ?? 'available'}${owner}` : 'nobody', ...(r && !r.auto_assigned ? { allocationId: r.allocation_id } : {}) };
  });
}

const refShape = { PublicIp: z.string().optional(), AllocationId: z.string().optional() };

export function addressActions(deps: AddressDeps): Ec2Action[] {
  const { db } = deps;
  const actions = [
    defineEc2Action('AllocateAddress', z.object({ Domain: z.string().optional(), Address: z.string().optional() }), (input, { principal }) => {
      if (input.Domain !== undefined && input.Domain !== 'standard' && input.Domain !== 'vpc') throw errors.invalidValue('Domain', input.Domain, 'Valid values: standard, vpc.');
      refuseInSystemMode(deps, 'AllocateAddress');
      const allocationId = newAllocationId();
      const ip = db.transaction(() => {
        const free = freePublicIps(db, deps.network.plan);
        if (input.Address !== undefined) {
          if (!isIpv4(input.Address) || !deps.network.plan.publicIps.includes(input.Address)) throw errors.invalidValue('Address', input.Address, 'It is not in the cloud\'s public address pool (VNET_PUBLICIPS).');
          if (!free.includes(input.Address)) throw new Ec2Error('InvalidAddress.InUse', `Address '${input.Address}' is already allocated.`);
        }
        const pick = input.Address ?? free[0];
        if (!pick) {
          throw new Ec2Error('AddressLimitExceeded', deps.network.plan.publicIps.length
            ? `Too many addresses allocated: all ${deps.network.plan.publicIps.length} public addresses of this cloud are in use`
            : 'This cloud has no public addresses (VNET_PUBLICIPS is empty)');
        }
        db.prepare('INSERT INTO addresses (public_ip, allocation_id, account_id, auto_assigned, allocated_at) VALUES (?, ?, ?, 0, ?)')
          .run(pick, allocationId, principal.accountId, new Date().toISOString());
        return pick;
      })();
      return { publicIp: ip, domain: 'standard', allocationId };
    }),

    defineEc2Action('AssociateAddress', z.object({ ...refShape, InstanceId: z.string().optional(), AllowReassociation: q.bool().optional(), PrivateIpAddress: z.string().optional() }), async (input, ctx) => {
      refuseInSystemMode(deps, 'AssociateAddress');
      if (!input.InstanceId) throw errors.missing('InstanceId');
      const changes: { unassign?: string; assign?: { ip: string; inst: InstanceRow } }[] = [];
      const associationId = newAssociationId();
      db.transaction(() => {
        changes.length = 0; // PostgreSQL may run a transaction again (serialization conflict): only the last run counts
        const addr = ownAddress(db, ctx.principal.accountId, input);
        const inst = ownInstances(db, ctx.principal, [input.InstanceId!])[0]!;
        if (!['pending', 'running'].includes(inst.state)) {
          throw new Ec2Error('IncorrectInstanceState', `The instance '${inst.instance_id}' is not in a state from which it can be associated (it is ${inst.state}).`);
        }
        if (!inst.private_ip) throw new Ec2Error('InvalidInstanceID', `The instance '${inst.instance_id}' has no private address (this cloud does not run MANAGED networking)`);
        if (addr.instance_id === inst.instance_id) return;
        // Moving the address: the instance it leaves gets a fresh public address, as in EC2-Classic.
        const previous = addr.instance_id ? instanceRow(db, addr.instance_id) : undefined;
        if (previous) {
          db.prepare('UPDATE instances SET public_ip = NULL WHERE instance_id = ?').run(previous.instance_id);
          db.prepare('UPDATE addresses SET instance_id = NULL, association_id = NULL WHERE public_ip = ?').run(addr.public_ip);
          changes.push({ unassign: addr.public_ip });
        }
        const replaced = detachFromInstance(db, inst.instance_id);
        if (replaced) changes.push({ unassign: replaced });
        db.prepare('UPDATE addresses SET instance_id = ?, association_id = ? WHERE public_ip = ?').run(inst.instance_id, associationId, addr.public_ip);
        db.prepare('UPDATE instances SET public_ip = ? WHERE instance_id = ?').run(addr.public_ip, inst.instance_id);
        changes.push({ assign: { ip: addr.public_ip, inst: { ...inst, public_ip: addr.public_ip } } });
        if (previous) {
          const fresh = giveAutoAddress(deps, instanceRow(db, previous.instance_id)!);
          if (fresh) changes.push({ assign: { ip: fresh, inst: previous } });
        }
      })();
      await tellClusters(deps, ctx, changes);
      const assoc = db.prepare('SELECT association_id FROM addresses WHERE instance_id = ?').pluck().get(input.InstanceId) as string | undefined;
      return { return: true, associationId: assoc ?? associationId };
    }),

    defineEc2Action('DisassociateAddress', z.object({ PublicIp: z.string().optional(), AssociationId: z.string().optional() }), async (input, ctx) => {
      const changes: { unassign?: string; assign?: { ip: string; inst: InstanceRow } }[] = [];
      db.transaction(() => {
        changes.length = 0; // PostgreSQL may run a transaction again (serialization conflict): only the last run counts
        let addr: AddressRow;
        if (input.AssociationId) {
          const row = db.prepare('SELECT * FROM addresses WHERE association_id = ? AND auto_assigned = 0').get(input.AssociationId) as AddressRow | undefined;
          if (!row || row.account_id !== ctx.principal.accountId) throw new Ec2Error('InvalidAssociationID.NotFound', `The association ID '${input.AssociationId}' does not exist`);
          addr = row;
        } else addr = ownAddress(db, ctx.principal.accountId, { PublicIp: input.PublicIp });
        if (!addr.instance_id) return;
        const inst = instanceRow(db, addr.instance_id);
        detachFromInstance(db, addr.instance_id);
        changes.push({ unassign: addr.public_ip });
        if (inst) {
          const fresh = giveAutoAddress(deps, instanceRow(db, inst.instance_id)!);
          if (fresh) changes.push({ assign: { ip: fresh, inst } });
        }
      })();
      await tellClusters(deps, ctx, changes);
      return { return: true };
    }),

    defineEc2Action('ReleaseAddress', z.object(refShape), async (input, ctx) => {
      const changes: { unassign?: string; assign?: { ip: string; inst: InstanceRow } }[] = [];
      db.transaction(() => {
        changes.length = 0; // PostgreSQL may run a transaction again (serialization conflict): only the last run counts
        const addr = ownAddress(db, ctx.principal.accountId, input);
        if (addr.instance_id) {
          const inst = instanceRow(db, addr.instance_id);
          detachFromInstance(db, addr.instance_id);
          changes.push({ unassign: addr.public_ip });
          const fresh = inst && giveAutoAddress(deps, instanceRow(db, inst.instance_id)!);
          if (fresh && inst) changes.push({ assign: { ip: fresh, inst } });
        }
        db.prepare('DELETE FROM addresses WHERE public_ip = ?').run(addr.public_ip);
      })();
      await tellClusters(deps, ctx, changes);
      return { return: true };
    }),

    defineEc2Action('DescribeAddresses', z.object({ PublicIp: list(z.string()), AllocationId: list(z.string()), Filter: q.filters() }), (input, { principal }) => {
      if (principal.isAdmin && input.PublicIp.includes('verbose')) return { addressesSet: everyAddress(db, deps.network.plan.publicIps) };
      let rows = db.prepare(`SELECT a.*, i.private_ip FROM addresses a LEFT JOIN instances i ON i.instance_id = a.instance_id
        WHERE a.account_id = ? AND a.auto_assigned = 0 ORDER BY a.allocated_at, a.public_ip`).all(principal.accountId) as (AddressRow & { private_ip: string | null })[];
      if (input.PublicIp.length) {
        const missing = input.PublicIp.filter((ip) => !rows.some((r) => r.public_ip === ip));
        if (missing.length) throw addressNotFound(missing.join(', '));
        rows = rows.filter((r) => input.PublicIp.includes(r.public_ip));
      }
      if (input.AllocationId.length) {
        const missing = input.AllocationId.filter((id) => !rows.some((r) => r.allocation_id === id));
        if (missing.length) throw allocationNotFound(missing.join(', '));
        rows = rows.filter((r) => input.AllocationId.includes(r.allocation_id));
      }
      const kept = applyFilters(rows, input.Filter, {
        'public-ip': (r) => r.public_ip,
        'allocation-id': (r) => r.allocation_id,
        'association-id': (r) => r.association_id,
        'instance-id': (r) => r.instance_id,
        'private-ip-address': (r) => r.private_ip,
        domain: () => 'standard',
      }, () => []);
      return {
        addressesSet: kept.map((r) => ({
          publicIp: r.public_ip,
          allocationId: r.allocation_id,
          domain: 'standard',
          instanceId: r.instance_id ?? undefined,
          associationId: r.association_id ?? undefined,
          privateIpAddress: r.instance_id ? (r.private_ip ?? undefined) : undefined,
        })),
      };
    }),
  ];
  return actions as Ec2Action[];
}
