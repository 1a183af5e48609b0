// DescribeInstanceStatus (what `aws ec2 wait instance-status-ok` polls) and DescribeInstanceAttribute.
// No health checks or scheduled events inside guests yet: a running instance reports ok, except that
// its system status is impaired (reachability failed) while its node does not answer its cluster
// controller, and both are insufficient-data while the clc cannot reach the cluster itself — the
// instance keeps its last known state meanwhile (EC2: the host's status checks fail).
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { defineEc2Action, Ec2Error, errors, q, type Principal } from '@mallee/aws-protocol';
import { applyFilters } from '../resources/index.js';
import { attachmentsOfInstances } from '../storage/index.js';
import { groupsOf, listedInstances, STATE_CODES, type ListedInstance } from '../instances.js';
import type { Clusters } from '../clusters.js';
import { list, ownInstances, type Clc } from './context.js';
import { stateXml } from './describe-instances.js';

interface StatusSummary {
  status: string;
  details: { name: string; status: string; impairedSince?: string }[];
}

interface Statuses {
  system: StatusSummary;
  instance: StatusSummary;
}

const reachability = (status: string, impairedSince?: string): StatusSummary['details'] => [{ name: 'reachability', status, ...(impairedSince ? { impairedSince } : {}) }];

function statusesOf(clusters: Clusters, row: ListedInstance): Statuses {
  if (row.state !== 'running') {
    const na = { status: 'not-applicable', details: [] };
    return { system: na, instance: na };
  }
  const unknown = { status: 'insufficient-data', details: reachability('insufficient-data') };
  if (clusters.get(row.zone)?.state === 'NOTREADY') return { system: unknown, instance: unknown };
  const since = clusters.nodeUnreachableSince(row.zone, row.instance_id);
  if (since) return { system: { status: 'impaired', details: reachability('failed', since) }, instance: unknown };
  const ok = { status: 'ok', details: reachability('passed') };
  return { system: ok, instance: ok };
}

const filtersFor = (clusters: Clusters): Record<string, (r: ListedInstance) => unknown> => ({
  'availability-zone': (r) => r.zone,
  'instance-state-name': (r) => r.state,
  'instance-state-code': (r) => STATE_CODES[r.state],
  'instance-status.status': (r) => statusesOf(clusters, r).instance.status,
  'instance-status.reachability': (r) => statusesOf(clusters, r).instance.details[0]?.status,
  'system-status.status': (r) => statusesOf(clusters, r).system.status,
  'system-status.reachability': (r) => statusesOf(clusters, r).system.details[0]?.status,
});

const statusShape = z.object({ InstanceId: list(z.string()), Filter: q.filters(), IncludeAllInstances: q.bool().optional(), MaxResults: q.int().optional(), NextToken: z.string().optional() });

export function describeInstanceStatus(db: Db, clusters: Clusters, principal: Principal, input: z.infer<typeof statusShape>): Record<string, unknown> {
  const rows: ListedInstance[] = input.InstanceId.length
    ? ownInstances(db, principal, input.InstanceId)
    : listedInstances(db, "account_id = @account AND state <> 'terminated'", { account: principal.accountId });
  // As EC2: only running instances unless IncludeAllInstances.
  const shown = applyFilters(rows.filter((r) => input.IncludeAllInstances || r.state === 'running'), input.Filter, filtersFor(clusters));
  return {
    instanceStatusSet: shown.map((r) => {
      const s = statusesOf(clusters, r);
      return {
        instanceId: r.instance_id,
        availabilityZone: r.zone,
        instanceState: stateXml(r.state),
        systemStatus: s.system,
        instanceStatus: s.instance,
        eventsSet: [],
      };
    }),
  };
}

const boolValue = (v: boolean) => ({ value: v });
const value = (v: string | null | undefined) => ({ value: v ?? undefined });

export function describeInstanceAttribute(db: Db, principal: Principal, input: { InstanceId?: string; Attribute?: string }): Record<string, unknown> {
  if (!input.InstanceId) throw errors.missing('InstanceId');
  if (!input.Attribute) throw errors.missing('Attribute');
  const [row] = ownInstances(db, principal, [input.InstanceId]);
  const r = row!;
  const attributes: Record<string, () => [string, unknown]> = {
    instanceType: () => ['instanceType', value(r.instance_type)],
    kernel: () => ['kernel', value(r.kernel_id)],
    ramdisk: () => ['ramdisk', value(r.ramdisk_id)],
    userData: () => ['userData', value(r.user_data)],
    disableApiTermination: () => ['disableApiTermination', boolValue(false)],
    disableApiStop: () => ['disableApiStop', boolValue(false)],
    instanceInitiatedShutdownBehavior: () => ['instanceInitiatedShutdownBehavior', value('terminate')],
    rootDeviceName: () => ['rootDeviceName', value(r.root_device_name)],
    blockDeviceMapping: () => ['blockDeviceMapping', (attachmentsOfInstances(db, [r.instance_id]).get(r.instance_id) ?? []).map((a) => ({
      deviceName: a.device,
      ebs: { volumeId: a.volume_id, status: a.status, attachTime: new Date(a.attach_time), deleteOnTermination: a.delete_on_termination === 1 },
    }))],
    productCodes: () => ['productCodes', []],
    sourceDestCheck: () => ['sourceDestCheck', boolValue(true)],
    ebsOptimized: () => ['ebsOptimized', boolValue(false)],
    enaSupport: () => ['enaSupport', boolValue(false)],
    sriovNetSupport: () => ['sriovNetSupport', value(undefined)],
    groupSet: () => ['groupSet', (groupsOf(db, [r.instance_id]).get(r.instance_id) ?? []).map((g) => ({ groupId: g.groupId, groupName: g.groupName }))],
  };
  const pick = attributes[input.Attribute];
  if (!pick) throw new Ec2Error('InvalidParameterValue', `Value (${input.Attribute}) for parameter attribute is invalid. Unknown attribute.`);
  const [name, v] = pick();
  return { instanceId: r.instance_id, [name]: v };
}

export const instanceStatusActions = (clc: Clc) => [
  defineEc2Action('DescribeInstanceStatus', statusShape, (input, { principal }) => describeInstanceStatus(clc.db, clc.clusters, principal, input)),
  defineEc2Action('DescribeInstanceAttribute', z.object({ InstanceId: z.string().optional(), Attribute: z.string().optional() }),
    (input, { principal }) => describeInstanceAttribute(clc.db, principal, input)),
];
