// DescribeInstances: the account's instances grouped by reservation, with EC2's filters. The admin
// account sees every account's instances with `InstanceId.1=verbose` (euca-describe-instances verbose).
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { defineEc2Action, Ec2Error, errors, q, type Principal } from '@mallee/aws-protocol';
import { applyFilters, tagSetsFor, type Tag } from '../resources/index.js';
import { groupsOf, listedInstances, STATE_CODES, type GroupRef, type ListedInstance } from '../instances.js';
import { list, ownInstances, VERBOSE, type Clc } from './context.js';
import { attachmentsOfInstances } from '../storage/index.js';

/** Everything one instance's XML needs, gathered in batch queries. */
export interface InstanceView { row: ListedInstance; groups: GroupRef[]; tags: Tag[]; clientToken?: string; volumes?: { device: string; volumeId: string; status: string; attachTime: string; deleteOnTermination: boolean }[] }

export function instanceViews(db: Db, rows: ListedInstance[]): InstanceView[] {
  const ids = rows.map((r) => r.instance_id);
  const accounts = [...new Set(rows.map((r) => r.account_id))];
  const groups = groupsOf(db, ids, accounts);
  const tagsByAccount = new Map<string, Map<string, Tag[]>>();
  for (const account of accounts) {
    tagsByAccount.set(account, tagSetsFor(db, account, rows.filter((r) => r.account_id === account).map((r) => r.instance_id)));
  }
  const tokens = new Map((db.prepare(`SELECT reservation_id, client_token FROM reservations
    WHERE client_token IS NOT NULL AND reservation_id IN (SELECT value FROM json_each(?))`)
    .all(JSON.stringify([...new Set(rows.map((r) => r.reservation_id))])) as { reservation_id: string; client_token: string }[])
    .map((t) => [t.reservation_id, t.client_token]));
  const attached = attachmentsOfInstances(db, ids);
  return rows.map((row) => ({
    row,
    volumes: (attached.get(row.instance_id) ?? []).map((a) => ({ device: a.device, volumeId: a.volume_id, status: a.status, attachTime: a.attach_time, deleteOnTermination: a.delete_on_termination === 1 })),
    groups: groups.get(row.instance_id) ?? [],
    tags: tagsByAccount.get(row.account_id)?.get(row.instance_id) ?? [],
    ...(tokens.has(row.reservation_id) ? { clientToken: tokens.get(row.reservation_id)! } : {}),
  }));
}

export const stateXml = (state: ListedInstance['state']) => ({ code: STATE_CODES[state], name: state });

/** "Code: message" as stored → EC2's stateReason. */
function stateReasonXml(reason: string | null): { code: string; message: string } | undefined {
  if (!reason) return undefined;
  const m = /^([A-Za-z]+\.[A-Za-z.]+): /.exec(reason);
  return { code: m ? m[1]! : 'Server.InternalError', message: reason };
}

export function instanceXml({ row, groups, tags, clientToken, volumes }: InstanceView): Record<string, unknown> {
  const reason = stateReasonXml(row.state_reason);
  return {
    instanceId: row.instance_id,
    imageId: row.image_id,
    instanceState: stateXml(row.state),
    // Without a cloud DNS (as Eucalyptus without dns enabled) the names are the addresses.
    privateDnsName: row.private_dns_name ?? row.private_ip ?? '',
    dnsName: row.public_ip ?? '',
    reason: reason?.code === 'Client.UserInitiatedShutdown' ? `User initiated (${row.state_changed_at.replace('T', ' ').replace(/\.\d+Z$/, ' GMT')})` : '',
    keyName: row.key_name ?? undefined,
    amiLaunchIndex: row.launch_index,
    productCodes: [],
    instanceType: row.instance_type,
    launchTime: new Date(row.launch_time),
    placement: { availabilityZone: row.zone, groupName: '', tenancy: 'default' },
    kernelId: row.kernel_id ?? undefined,
    ramdiskId: row.ramdisk_id ?? undefined,
    platform: row.platform ?? undefined,
    monitoring: { state: 'disabled' },
    privateIpAddress: row.private_ip ?? undefined,
    ipAddress: row.public_ip ?? undefined,
    groupSet: groups.map((g) => ({ groupId: g.groupId, groupName: g.groupName })),
    stateReason: reason,
    architecture: row.architecture,
    rootDeviceType: row.root_device_type,
    rootDeviceName: row.root_device_name ?? undefined,
    blockDeviceMapping: (volumes ?? []).map((v) => ({
      deviceName: v.device,
      ebs: { volumeId: v.volumeId, status: v.status, attachTime: new Date(v.attachTime), deleteOnTermination: v.deleteOnTermination },
    })),
    virtualizationType: row.virtualization_type,
    clientToken: clientToken ?? '',
    tagSet: tags.length ? tags.map((t) => ({ key: t.key, value: t.value })) : undefined,
    hypervisor: 'xen',
    networkInterfaceSet: [],
    ebsOptimized: false,
  };
}

/** Instances grouped into their reservations, in first-seen order. */
export function reservationsXml(views: InstanceView[]): Record<string, unknown>[] {
  const byReservation = new Map<string, InstanceView[]>();
  for (const v of views) {
    const list = byReservation.get(v.row.reservation_id);
    if (list) list.push(v);
    else byReservation.set(v.row.reservation_id, [v]);
  }
  return [...byReservation.values()].map((vs) => reservationXml(vs));
}

export function reservationXml(views: InstanceView[]): Record<string, unknown> {
  const first = views[0]!;
  return {
    reservationId: first.row.reservation_id,
    ownerId: first.row.account_id,
    groupSet: first.groups.map((g) => ({ groupId: g.groupId, groupName: g.groupName })),
    instancesSet: views.map(instanceXml),
  };
}

const FILTERS: Record<string, (v: InstanceView) => unknown> = {
  'instance-id': (v) => v.row.instance_id,
  'instance-state-name': (v) => v.row.state,
  'instance-state-code': (v) => STATE_CODES[v.row.state],
  'instance-type': (v) => v.row.instance_type,
  'image-id': (v) => v.row.image_id,
  'kernel-id': (v) => v.row.kernel_id,
  'ramdisk-id': (v) => v.row.ramdisk_id,
  'key-name': (v) => v.row.key_name,
  'group-name': (v) => v.groups.map((g) => g.groupName),
  'group-id': (v) => v.groups.map((g) => g.groupId),
  'instance.group-name': (v) => v.groups.map((g) => g.groupName),
  'instance.group-id': (v) => v.groups.map((g) => g.groupId),
  'availability-zone': (v) => v.row.zone,
  'reservation-id': (v) => v.row.reservation_id,
  'owner-id': (v) => v.row.account_id,
  'private-ip-address': (v) => v.row.private_ip,
  'ip-address': (v) => v.row.public_ip,
  'private-dns-name': (v) => v.row.private_dns_name ?? v.row.private_ip,
  'dns-name': (v) => v.row.public_ip,
  'launch-index': (v) => v.row.launch_index,
  'launch-time': (v) => v.row.launch_time,
  'architecture': (v) => v.row.architecture,
  'root-device-type': (v) => v.row.root_device_type,
  'virtualization-type': (v) => v.row.virtualization_type,
  'platform': (v) => v.row.platform,
  'client-token': (v) => v.clientToken,
  'state-reason-code': (v) => stateReasonXml(v.row.state_reason)?.code,
  'block-device-mapping.device-name': (v) => v.volumes?.map((x) => x.device),
  'block-device-mapping.volume-id': (v) => v.volumes?.map((x) => x.volumeId),
  'block-device-mapping.status': (v) => v.volumes?.map((x) => x.status),
};

/** NextToken: where the previous page ended, in the listing's order (launch time, reservation, launch index). */
type PageKey = [string, string, number];
const encodeToken = (r: ListedInstance) => Buffer.from(JSON.stringify([r.launch_time, r.reservation_id, r.launch_index] satisfies PageKey)).toString('base64url');

function decodeToken(token: string): PageKey {
  try {
    const k = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(k) && k.length === 3 && typeof k[0] === 'string' && typeof k[1] === 'string' && typeof k[2] === 'number') return k as PageKey;
  } catch { /* falls through to the error */ }
  throw new Ec2Error('InvalidParameterValue', `Invalid value '${token}' for NextToken`);
}

const afterKey = (r: ListedInstance, [t, res, i]: PageKey) =>
  r.launch_time > t || (r.launch_time === t && (r.reservation_id > res || (r.reservation_id === res && r.launch_index > i)));

export interface DescribeInstancesInput { InstanceId: string[]; Filter: { Name: string; Value: string[] }[]; MaxResults?: number; NextToken?: string }

export function describeInstances(db: Db, principal: Principal, input: DescribeInstancesInput): Record<string, unknown> {
  const verbose = input.InstanceId.includes(VERBOSE);
  const ids = input.InstanceId.filter((id) => id !== VERBOSE);
  if (ids.length && input.MaxResults !== undefined) {
    throw new Ec2Error('InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults');
  }
  if (input.MaxResults !== undefined && (input.MaxResults < 5 || input.MaxResults > 1000)) {
    throw errors.invalidValue('MaxResults', input.MaxResults, 'MaxResults must be between 5 and 1000.');
  }
  const everyAccount = verbose && principal.isAdmin;
  let rows = ids.length
    ? ownInstances(db, principal, ids, { anyAccount: everyAccount })
    : listedInstances(db, everyAccount ? '1 = 1' : 'account_id = @account', { account: principal.accountId });
  if (input.NextToken) {
    const key = decodeToken(input.NextToken);
    rows = rows.filter((r) => afterKey(r, key));
  }
  let views = applyFilters(instanceViews(db, rows), input.Filter, FILTERS, (v) => v.tags);
  let nextToken: string | undefined;
  if (input.MaxResults !== undefined && views.length > input.MaxResults) {
    views = views.slice(0, input.MaxResults);
    nextToken = encodeToken(views.at(-1)!.row);
  }
  return { reservationSet: reservationsXml(views), nextToken };
}

export const describeInstancesAction = (clc: Clc) =>
  defineEc2Action('DescribeInstances',
    z.object({ InstanceId: list(z.string()), Filter: q.filters(), MaxResults: q.int().optional(), NextToken: z.string().optional() }),
    (input, { principal }) => describeInstances(clc.db, principal, input));
