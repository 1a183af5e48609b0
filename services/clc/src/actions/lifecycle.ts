// Terminate, reboot, stop/start and console output of the account's instances. The clc records the
// user's intent first (shutting-down), then tells the cc; the poller retries what the cc missed.
import { z } from 'zod';
import { cc, WireError } from '@mallee/wire';
import { defineEc2Action, Ec2Error, errors, type ActionContext } from '@mallee/aws-protocol';
import { instanceRow, setState, type InstanceRow } from '../instances.js';
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
  return {
    instancesSet: rows.map((before) => ({
      instanceId: before.instance_id,
      currentState: stateXml(instanceRow(db, before.instance_id)?.state ?? 'terminated'),
      previousState: stateXml(before.state),
    })),
  };
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

/** Instance-store instances cannot be stopped (as in EC2); EBS-backed instances arrive with volumes. */
function refuseStopStart(rows: InstanceRow[], verb: 'stopped' | 'started'): never {
  const r = rows[0]!;
  throw new Ec2Error('UnsupportedOperation', r.root_device_type === 'ebs'
    ? `The instance '${r.instance_id}' cannot be ${verb} yet: EBS-backed instances are not supported by this cloud.`
    : `The instance '${r.instance_id}' does not have an 'ebs' root device type and cannot be ${verb}.`);
}

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
  defineEc2Action('StopInstances', idsShape.extend({ Force: z.string().optional() }), (input, { principal }) =>
    refuseStopStart(ownInstances(clc.db, principal, requireIds(input.InstanceId)), 'stopped')),
  defineEc2Action('StartInstances', idsShape, (input, { principal }) =>
    refuseStopStart(ownInstances(clc.db, principal, requireIds(input.InstanceId)), 'started')),
  defineEc2Action('GetConsoleOutput', z.object({ InstanceId: z.string().optional() }), (input, ctx) => getConsoleOutput(clc, input.InstanceId, ctx)),
];
