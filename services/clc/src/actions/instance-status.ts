// DescribeInstanceStatus (what `aws ec2 wait instance-status-ok` polls) and DescribeInstanceAttribute.
// There are no health checks or scheduled events here yet: a running instance reports ok, one still
// booting reports initializing, as EC2 does for its first minutes.
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { defineEc2Action, Ec2Error, errors, q, type Principal } from '@mallee/aws-protocol';
import { applyFilters } from '../resources/index.js';
import { groupsOf, listedInstances, STATE_CODES, type ListedInstance } from '../instances.js';
import { list, ownInstances, type Clc } from './context.js';
import { stateXml } from './describe-instances.js';

function summary(row: ListedInstance): { status: string; details: { name: string; status: string }[] } {
  if (row.state !== 'running') return { status: 'not-applicable', details: [] };
  return { status: 'ok', details: [{ name: 'reachability', status: 'passed' }] };
}

const FILTERS: Record<string, (r: ListedInstance) => unknown> = {
  'availability-zone': (r) => r.zone,
  'instance-state-name': (r) => r.state,
  'instance-state-code': (r) => STATE_CODES[r.state],
  'instance-status.status': (r) => summary(r).status,
  'instance-status.reachability': (r) => summary(r).details[0]?.status,
  'system-status.status': (r) => summary(r).status,
  'system-status.reachability': (r) => summary(r).details[0]?.status,
};

const statusShape = z.object({ InstanceId: list(z.string()), Filter: q.filters(), IncludeAllInstances: q.bool().optional(), MaxResults: q.int().optional(), NextToken: z.string().optional() });

export function describeInstanceStatus(db: Db, principal: Principal, input: z.infer<typeof statusShape>): Record<string, unknown> {
  const rows: ListedInstance[] = input.InstanceId.length
    ? ownInstances(db, principal, input.InstanceId)
    : listedInstances(db, "account_id = @account AND state <> 'terminated'", { account: principal.accountId });
  // As EC2: only running instances unless IncludeAllInstances.
  const shown = applyFilters(rows.filter((r) => input.IncludeAllInstances || r.state === 'running'), input.Filter, FILTERS);
  return {
    instanceStatusSet: shown.map((r) => ({
      instanceId: r.instance_id,
      availabilityZone: r.zone,
      instanceState: stateXml(r.state),
      systemStatus: summary(r),
      instanceStatus: summary(r),
      eventsSet: [],
    })),
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
    blockDeviceMapping: () => ['blockDeviceMapping', []],
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
  defineEc2Action('DescribeInstanceStatus', statusShape, (input, { principal }) => describeInstanceStatus(clc.db, principal, input)),
  defineEc2Action('DescribeInstanceAttribute', z.object({ InstanceId: z.string().optional(), Attribute: z.string().optional() }),
    (input, { principal }) => describeInstanceAttribute(clc.db, principal, input)),
];
