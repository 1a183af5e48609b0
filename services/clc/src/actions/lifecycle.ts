// Terminate, reboot, stop/start (EBS-backed instances), their type while stopped, and console output of the account's instances. The clc records the
// user's intent first (shutting-down), then tells the cc; the poller retries what the cc missed.
import { z } from 'zod';
import { cc, WireError } from '@mallee/wire';
import { defineEc2Action, Ec2Error, errors, type ActionContext } from '@mallee/aws-protocol';
import { groupsOf, instanceRow, setState, specOf, type InstanceRow } from '../instances.js';
import { findInstanceType } from '../instance-types.js';
import { startNetworkFor } from './run-instances.js';
import { attachmentsOfInstances } from '../storage/records.js';
import { list, ownInstances, type Clc } from './context.js';
import { stateXml } from './describe-instances.js';

const idsShape = z.object({ InstanceId: list(z.string()) });

function requireIds(ids: string[]): string[] {
  if (!ids.length) throw errors.missing('InstanceId');
  return ids;
}

function byZone(rows: InstanceRow[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of rows) out.set(r.zone, [...(out.get(r.zone) ?? []), r.instance_id]);
  return out;
}

export const USER_SHUTDOWN = 'Client.UserInitiatedShutdown: User initiated shutdown';

export async function terminateInstances(clc: Clc, ids: string[], ctx: Pick<ActionContext, 'principal' | 'log'>): Promise<Record<string, unknown>> {
  const { db, clusters, dispatcher } = clc;
  const rows = ownInstances(db, ctx.principal, requireIds(ids));
  const toStop = rows.filter((r) => r.state !== 'terminated');
  db.transaction(() => {
    for (const r of toStop) if (r.state !== 'shutting-down') setState(db, r.instance_id, 'shutting-down', USER_SHUTDOWN);
  })();
  await Promise.all([...byZone(toStop)].map(async ([zone, zoneIds]) => {
    if (!clusters.get(zone)) {
      // Its cluster was deregistered: nothing is left to stop them, and nothing would ever report them gone.
      for (const id of zoneIds) setState(db, id, 'terminated', USER_SHUTDOWN);
      return;
    }
    try {
      const res = await clusters.client(zone).call(cc.TerminateInstances, { instanceIds: zoneIds, force: false });
      for (const i of res.instances) {
        // "terminated" for an id the cc does not know: gone, unless its launch is still on its way there.
        if (i.state === 'terminated' && !dispatcher.isInFlight(i.instanceId)) setState(db, i.instanceId, 'terminated', USER_SHUTDOWN);
      }
    } catch (err) {
      const detail = err instanceof WireError ? `${err.code}: ${err.message}` : String(err);
      ctx.log.warn({ zone, instanceIds: zoneIds, detail }, 'cluster did not take the termination now; the poller retries it');
    }
  }));
  return stateChanges(clc, rows);
}

export async function rebootInstances(clc: Clc, ids: string[], ctx: Pick<ActionContext, 'principal' | 'log'>): Promise<Record<string, unknown>> {
  const rows = ownInstances(clc.db, ctx.principal, requireIds(ids));
  const running = rows.filter((r) => r.state === 'running');
  await Promise.all([...byZone(running)].map(async ([zone, zoneIds]) => {
    try {
      await clc.clusters.client(zone).call(cc.RebootInstances, { instanceIds: zoneIds });
    } catch (err) {
      ctx.log.warn({ zone, instanceIds: zoneIds, err }, 'reboot did not reach the cluster');
      throw new Ec2Error('InternalError', `The availability zone ${zone} could not reboot the instances now; try again.`);
    }
  }));
  return { return: true };
}

/** Only EBS-backed instances can be stopped and started (as in EC2). */
function requireEbs(rows: InstanceRow[], verb: 'stopped' | 'started'): void {
  const r = rows.find((x) => x.root_device_type !== 'ebs');
  if (r) throw new Ec2Error('UnsupportedOperation', `The instance '${r.instance_id}' does not have an 'ebs' root device type and cannot be ${verb}.`);
}

function stateChanges(clc: Clc, rows: InstanceRow[]): Record<string, unknown> {
  return {
    instancesSet: rows.map((before) => ({
      instanceId: before.instance_id,
      currentState: stateXml(instanceRow(clc.db, before.instance_id)?.state ?? 'terminated'),
      previousState: stateXml(before.state),
    })),
  };
}

/**
 * StopInstances: the guest is shut down on its node (gracefully unless Force) and its domain and instance store
 * go, as for a termination; the clc keeps the instance and its volumes. The poller moves it from stopping to
 * stopped once the cc reports the guest gone, and the storage poller then unexports its volumes.
 */
export async function stopInstances(clc: Clc, ids: string[], force: boolean, ctx: Pick<ActionContext, 'principal' | 'log'>): Promise<Record<string, unknown>> {
  const { db } = clc;
  const rows = ownInstances(db, ctx.principal, requireIds(ids));
  requireEbs(rows, 'stopped');
  const wrong = rows.find((r) => r.state !== 'running' && r.state !== 'stopping' && r.state !== 'stopped');
  if (wrong) throw new Ec2Error('IncorrectInstanceState', `The instance '${wrong.instance_id}' is not in a state from which it can be stopped.`);
  const toStop = rows.filter((r) => r.state === 'running');
  db.transaction(() => {
    for (const r of toStop) setState(db, r.instance_id, 'stopping', USER_SHUTDOWN);
  })();
  await Promise.all([...byZone(toStop)].map(async ([zone, zoneIds]) => {
    try {
      await clc.clusters.client(zone).call(cc.TerminateInstances, { instanceIds: zoneIds, force });
    } catch (err) {
      const detail = err instanceof WireError ? `${err.code}: ${err.message}` : String(err);
      ctx.log.warn({ zone, instanceIds: zoneIds, detail }, 'cluster did not take the stop now; the poller retries it');
    }
  }));
  return stateChanges(clc, rows);
}

/**
 * StartInstances: each stopped instance is launched again (with its id, addresses and current type) on a node
 * with room, its root and data volumes exported to that node first (the dispatcher's boot volumes).
 */
export async function startInstances(clc: Clc, ids: string[], ctx: Pick<ActionContext, 'principal' | 'log' | 'requestId'>): Promise<Record<string, unknown>> {
  const { db } = clc;
  const rows = ownInstances(db, ctx.principal, requireIds(ids));
  requireEbs(rows, 'started');
  const wrong = rows.find((r) => r.state !== 'stopped' && r.state !== 'pending' && r.state !== 'running');
  if (wrong) throw new Ec2Error('IncorrectInstanceState', `The instance '${wrong.instance_id}' is not in a state from which it can be started.`);
  const toStart = rows.filter((r) => r.state === 'stopped');
  // Its root volume detached while it was stopped: nothing to boot (EC2's refusal, before anything changes).
  const attached = attachmentsOfInstances(db, toStart.map((r) => r.instance_id));
  const rootless = toStart.find((r) => !(attached.get(r.instance_id) ?? []).some((a) => a.device === r.root_device_name));
  if (rootless) throw new Ec2Error('InvalidParameterValue', `Invalid value '${rootless.instance_id}' for instanceId. Instance does not have a volume attached at root (${rootless.root_device_name}).`);
  const now = new Date().toISOString();
  const restart = db.prepare("UPDATE instances SET state = 'pending', state_reason = NULL, state_changed_at = @now, launch_time = @now, reported = 0, node = NULL WHERE instance_id = @id AND state = 'stopped'");
  db.transaction(() => {
    for (const r of toStart) restart.run({ id: r.instance_id, now });
  })();
  await Promise.all(toStart.map(async (r) => {
    const row = instanceRow(db, r.instance_id)!;
    const groupNames = (groupsOf(db, [row.instance_id]).get(row.instance_id) ?? []).map((g) => g.groupName);
    try {
      await startNetworkFor(clc, row.zone, row.vlan, ctx.log);
      await clc.dispatcher.run(row.zone, [specOf(row, groupNames)], 1, ctx.requestId);
    } catch (err) {
      setState(db, row.instance_id, 'stopped', r.state_reason);
      ctx.log.warn({ instanceId: row.instance_id, err }, 'start failed; the instance stays stopped');
      const why = err instanceof Error ? err.message : String(err);
      throw new Ec2Error('InsufficientInstanceCapacity', `The instance '${row.instance_id}' could not be started in ${row.zone} now: ${why}`);
    }
  }));
  clc.network?.soon();
  return stateChanges(clc, rows);
}

/** ModifyInstanceAttribute: the instance type of a stopped instance (what it gets at its next start). */
export function modifyInstanceAttribute(clc: Clc, input: z.infer<typeof modifyShape>, principal: ActionContext['principal']): Record<string, unknown> {
  if (!input.InstanceId) throw errors.missing('InstanceId');
  const [row] = ownInstances(clc.db, principal, [input.InstanceId]);
  const typeName = input.InstanceType?.Value ?? (input.Attribute === 'instanceType' ? input.Value : undefined);
  if (typeName === undefined) {
    const asked = input.Attribute ?? Object.keys(input).find((k) => k !== 'InstanceId') ?? 'attribute';
    throw new Ec2Error('InvalidParameterValue', `Modifying the ${asked} attribute is not supported by this cloud; instanceType is.`);
  }
  const type = findInstanceType(clc.db, typeName);
  if (!type) throw new Ec2Error('InvalidParameterValue', `Invalid value '${typeName}' for InstanceType.`);
  if (row!.state !== 'stopped') throw new Ec2Error('IncorrectInstanceState', `The instance '${row!.instance_id}' is not in the 'stopped' state.`);
  clc.db.prepare("UPDATE instances SET instance_type = ?, vm_cpu = ?, vm_memory_mib = ?, vm_disk_gib = ? WHERE instance_id = ? AND state = 'stopped'")
    .run(type.name, type.cpu, type.memoryMiB, type.diskGiB, row!.instance_id);
  return { return: true };
}

const modifyShape = z.object({
  InstanceId: z.string().optional(),
  /** Current API (`--instance-type Value=…`, euca-modify-instance-attribute -t). */
  InstanceType: z.object({ Value: z.string().optional() }).optional(),
  /** Older clients: `Attribute=instanceType&Value=…`. */
  Attribute: z.string().optional(),
  Value: z.string().optional(),
}).passthrough();

export async function getConsoleOutput(clc: Clc, id: string | undefined, ctx: Pick<ActionContext, 'principal' | 'log'>): Promise<Record<string, unknown>> {
  if (!id) throw errors.missing('InstanceId');
  const [row] = ownInstances(clc.db, ctx.principal, [id]);
  const empty = { instanceId: row!.instance_id, timestamp: new Date(), output: undefined };
  if (row!.state !== 'running' && row!.state !== 'shutting-down') return empty;
  try {
    const res = await clc.clusters.client(row!.zone).call(cc.GetConsoleOutput, { instanceId: row!.instance_id });
    return { instanceId: row!.instance_id, timestamp: new Date(res.timestamp), output: res.output || undefined };
  } catch (err) {
    ctx.log.warn({ instanceId: row!.instance_id, err }, 'console output not available from the cluster');
    return empty;
  }
}

export const lifecycleActions = (clc: Clc) => [
  defineEc2Action('TerminateInstances', idsShape, (input, ctx) => terminateInstances(clc, input.InstanceId, ctx)),
  defineEc2Action('RebootInstances', idsShape, (input, ctx) => rebootInstances(clc, input.InstanceId, ctx)),
  defineEc2Action('StopInstances', idsShape.extend({ Force: z.string().optional() }), (input, ctx) =>
    stopInstances(clc, input.InstanceId, input.Force?.toLowerCase() === 'true', ctx)),
  defineEc2Action('StartInstances', idsShape, (input, ctx) => startInstances(clc, input.InstanceId, ctx)),
  defineEc2Action('ModifyInstanceAttribute', modifyShape, (input, { principal }) => modifyInstanceAttribute(clc, input, principal)),
  defineEc2Action('GetConsoleOutput', z.object({ InstanceId: z.string().optional() }), (input, ctx) => getConsoleOutput(clc, input.InstanceId, ctx)),
];
