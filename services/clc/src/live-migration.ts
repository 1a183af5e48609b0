// `mallee migrate-instance` and `mallee evacuate-node` (issue 7): the admin wire op MigrateInstances. The clc
// picks the destination node (unless the admin names one), has the zone's SC export each attached volume to
// the destination's address as well (the attachment's initiator is cleared meanwhile, so the storage poller
// keeps both exports), asks the cc to migrate, then keeps only the export the instance now uses. The
// instance's node in the clc's record follows at once (and from the cc's reports after).
import type { Db } from '@mallee/store';
import { admin, cc, handler, mapTargetSecret, openSecret, sc, sealSecret, WireError, type VolumeTarget, type WireHandler } from '@mallee/wire';
import type { Logger } from 'pino';
import type { Clusters } from './clusters.js';
import { instanceRow, type InstanceRow } from './instances.js';
import type { StorageControllers } from './storage/controllers.js';
import { workingOnVolumes } from './storage/attach.js';

export interface MigrationDeps {
  db: Db;
  clusters: Clusters;
  controllers: StorageControllers;
  log: Logger;
  /** Ask for a cluster poll now (the new placement shows at once). */
  pollSoon(): void;
}

type Result = { instanceId: string; source: string; dest?: string; ms?: number; volumes: string[]; error?: string };

const fromAdmin = (from: string) => from === admin.ADMIN_SENDER;
const hostOf = (url: string) => new URL(url).hostname.replace(/^\[|\]$/g, '');

interface Attachment { volume_id: string; device: string; initiator: string | null; zone: string }

async function nodesOf(d: MigrationDeps, zone: string) {
  return (await d.clusters.client(zone).call(cc.DescribeNodes, {})).nodes;
}

/** The destination: the one asked for (checked here and again by the cc), else the ENABLED node with the most free memory that fits. */
async function chooseDest(d: MigrationDeps, row: InstanceRow, source: string, asked?: string): Promise<{ node: string; host: string }> {
  const zone = row.zone;
  const nodes = await nodesOf(d, zone);
  if (asked !== undefined) {
    const n = nodes.find((x) => x.node === asked);
    if (!n) throw new WireError('NoSuchNode', `node ${asked} is not registered with cluster ${zone} (nodes: ${nodes.map((x) => x.node).join(', ') || 'none'})`, 404);
    if (asked === source) throw new WireError('InvalidParameterValue', `instance ${row.instance_id} already runs on node ${asked}`);
    if (n.state !== 'ENABLED') throw new WireError('IncorrectState', `node ${asked} is ${n.state}${n.detail ? ` (${n.detail})` : ''}; migrate to an ENABLED node`, 409);
    return { node: asked, host: hostOf(n.url) };
  }
  const vmType = { name: row.instance_type, cores: row.vm_cpu, memoryMiB: row.vm_memory_mib, diskGiB: row.vm_disk_gib };
  const { nodes: res } = await d.clusters.client(zone).call(cc.DescribeResources, { vmTypes: [vmType] });
  const others = nodes.filter((n) => n.node !== source);
  const fits = res
    .filter((r) => r.node !== source && r.status === 'enabled' && others.some((n) => n.node === r.node && n.state === 'ENABLED'))
    .filter((r) => r.cores.available >= vmType.cores && r.memoryMiB.available >= vmType.memoryMiB && r.diskGiB.available >= vmType.diskGiB)
    .sort((a, b) => b.memoryMiB.available - a.memoryMiB.available);
  if (fits.length === 0) {
    const why = others.length === 0 ? `cluster ${zone} has no node other than ${source}`
      : `no other node of cluster ${zone} is ENABLED with room for a ${vmType.name} (${others.map((n) => `${n.node} ${n.state}`).join(', ')})`;
    throw new WireError('InsufficientInstanceCapacity', `cannot migrate ${row.instance_id}: ${why}`);
  }
  return { node: fits[0]!.node, host: hostOf(fits[0]!.url) };
}

async function migrateOne(d: MigrationDeps, row: InstanceRow, asked?: string): Promise<Result> {
  const { db } = d;
  const id = row.instance_id;
  if (row.state !== 'running') throw new WireError('IncorrectInstanceState', `instance ${id} is ${row.state}; only a running instance can be migrated`, 409);
  // An EBS-backed instance's root volume is one of its attachments: exported to the destination and reopened there as the others.
  const zone = row.zone;
  if (!d.clusters.get(zone)) throw new WireError('IncorrectState', `the cluster of zone ${zone} is not registered`, 409);
  const { instances } = await d.clusters.client(zone).call(cc.DescribeInstances, { instanceIds: [id] });
  const source = instances.find((i) => i.instanceId === id && i.state !== 'terminated')?.node;
  if (!source) throw new WireError('IncorrectInstanceState', `cluster ${zone} does not report instance ${id} on any node now; try again`, 409);
  const dest = await chooseDest(d, row, source, asked);
  const atts = db.prepare(`SELECT a.volume_id, a.device, a.initiator, v.zone FROM volume_attachments a JOIN volumes v ON v.volume_id = a.volume_id
    WHERE a.instance_id = ? AND a.status = 'attached'`).all(id) as Attachment[];
  const clusterKey = d.clusters.keyOf(zone) ?? '';
  const volumes: { volumeId: string; device: string; target: VolumeTarget }[] = [];
  const setInitiator = db.prepare('UPDATE volume_attachments SET initiator = ? WHERE volume_id = ?');
  const undo = async () => {
    for (const a of atts) {
      setInitiator.run(a.initiator, a.volume_id);
      await d.controllers.client(a.zone).call(sc.UnexportVolume, { volumeId: a.volume_id, initiatorAddress: dest.host })
        .catch((err: unknown) => d.log.warn({ err, volumeId: a.volume_id }, 'could not unexport from the destination; the storage poller retries'));
    }
  };
  // The storage poller leaves these attachments to this call while it runs (their initiator is unset during the
  // move); one a dead clc left unset is given the instance's node by the poller.
  return workingOnVolumes(db, atts.map((a) => a.volume_id), async () => {
    try {
      for (const a of atts) {
        // Both exports stand during the move (the storage poller keeps every export of an attachment without an initiator).
        setInitiator.run(null, a.volume_id);
        const ctl = d.controllers.get(a.zone);
        if (!ctl) throw new WireError('IncorrectState', `the storage controller of zone ${a.zone} is not registered`, 409);
        const { target } = await d.controllers.client(a.zone).call(sc.ExportVolume, { volumeId: a.volume_id, initiatorAddress: dest.host });
        volumes.push({ volumeId: a.volume_id, device: a.device, target: mapTargetSecret(target, (sealed) => sealSecret(clusterKey, openSecret(ctl.key, sealed))) });
      }
      const res = await d.clusters.client(zone).call(cc.MigrateInstance, { instanceId: id, dest: dest.node, volumes }, { timeoutMs: 1_200_000 });
      db.prepare('UPDATE instances SET node = ? WHERE instance_id = ?').run(res.dest, id);
      for (const a of atts) {
        setInitiator.run(dest.host, a.volume_id);
        if (a.initiator && a.initiator !== dest.host) {
          await d.controllers.client(a.zone).call(sc.UnexportVolume, { volumeId: a.volume_id, initiatorAddress: a.initiator })
            .catch((err: unknown) => d.log.warn({ err, volumeId: a.volume_id }, 'could not unexport from the source node; the storage poller retries'));
        }
      }
      d.log.info({ instanceId: id, source: res.source, dest: res.dest, ms: res.ms, volumes: atts.map((a) => a.volume_id) }, 'instance migrated');
      d.pollSoon();
      return { instanceId: id, source: res.source, dest: res.dest, ms: res.ms, volumes: atts.map((a) => a.volume_id) };
    } catch (err) {
      await undo();
      throw err;
    }
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function migrationHandlers(d: MigrationDeps): WireHandler<any, any>[] {
  return [
    handler(admin.MigrateInstances, async (req) => {
      if (req.instanceId !== undefined && req.sourceNode !== undefined) throw new WireError('InvalidParameterCombination', 'give an instance id or a source node, not both');
      if (req.instanceId !== undefined) {
        const row = instanceRow(d.db, req.instanceId);
        if (!row || row.state === 'terminated') throw new WireError('InvalidInstanceID.NotFound', `The instance ID '${req.instanceId}' does not exist`, 404);
        return { migrations: [await migrateOne(d, row, req.dest)] };
      }
      if (req.sourceNode === undefined) throw new WireError('MissingParameter', 'an instance id or a source node (evacuate) is required');
      // Evacuate: every running instance the node's cluster reports on it, one at a time.
      const source = req.sourceNode;
      const zones = d.clusters.list().map((c) => c.name);
      let found = false;
      const out: Result[] = [];
      for (const zone of zones) {
        const nodes = await nodesOf(d, zone).catch(() => []);
        if (!nodes.some((n) => n.node === source)) continue;
        found = true;
        const { instances } = await d.clusters.client(zone).call(cc.DescribeInstances, { instanceIds: [] });
        for (const i of instances.filter((x) => x.node === source && x.state === 'running')) {
          const row = instanceRow(d.db, i.instanceId);
          if (!row) continue; // not the clc's (the cluster poller warns about those)
          try {
            out.push(await migrateOne(d, row, req.dest));
          } catch (err) {
            out.push({ instanceId: i.instanceId, source, volumes: [], error: `${(err as WireError).code ?? 'Error'}: ${(err as Error).message}` });
          }
        }
      }
      if (!found) throw new WireError('NoSuchNode', `no registered cluster has a node named ${source}`, 404);
      return { migrations: out };
    }, fromAdmin),
  ];
}
