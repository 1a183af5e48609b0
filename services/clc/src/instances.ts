// The instances table: the clc's record of every instance, the source of truth for what users see.
// The cc's reports move the state along (pending → running → shutting-down → terminated).
import type { Db } from '@mallee/store';
import type { InstanceSpec, InstanceStateName } from '@mallee/wire';
import { deleteTagsFor } from './resources/index.js';

export const STATE_CODES: Record<InstanceStateName, number> = {
  pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80,
};

/** States in which an instance still occupies (or may occupy) its cluster. */
export const LIVE_STATES: readonly InstanceStateName[] = ['pending', 'running', 'shutting-down', 'stopping', 'stopped'];

export interface InstanceRow {
  instance_id: string; account_id: string; reservation_id: string; launch_index: number; zone: string;
  image_id: string; image_location: string; kernel_id: string | null; ramdisk_id: string | null;
  architecture: string; platform: string | null; root_device_type: string; root_device_name: string | null;
  virtualization_type: string; instance_type: string; vm_cpu: number; vm_memory_mib: number; vm_disk_gib: number;
  key_name: string | null; public_key: string | null; user_data: string | null;
  state: InstanceStateName; state_reason: string | null; state_changed_at: string; reported: number;
  node: string | null; private_ip: string | null; public_ip: string | null; mac_address: string | null;
  launch_time: string; terminated_at: string | null;
  vlan: number | null; private_dns_name: string | null;
}

export interface GroupRef { groupId: string; groupName: string }

export type NewInstance = Omit<InstanceRow, 'state' | 'state_reason' | 'state_changed_at' | 'reported' | 'node' | 'private_ip' | 'public_ip' | 'mac_address' | 'terminated_at' | 'vlan' | 'private_dns_name'>;

export function insertReservation(db: Db, r: { reservationId: string; accountId: string; clientToken?: string; createdAt: string }, instances: NewInstance[], groups: GroupRef[]): void {
  db.prepare('INSERT INTO reservations (reservation_id, account_id, client_token, created_at) VALUES (?, ?, ?, ?)')
    .run(r.reservationId, r.accountId, r.clientToken ?? null, r.createdAt);
  const insert = db.prepare(`INSERT INTO instances (instance_id, account_id, reservation_id, launch_index, zone, image_id, image_location,
      kernel_id, ramdisk_id, architecture, platform, root_device_type, root_device_name, virtualization_type, instance_type,
      vm_cpu, vm_memory_mib, vm_disk_gib, key_name, public_key, user_data, state, state_changed_at, launch_time)
    VALUES (@instance_id, @account_id, @reservation_id, @launch_index, @zone, @image_id, @image_location,
      @kernel_id, @ramdisk_id, @architecture, @platform, @root_device_type, @root_device_name, @virtualization_type, @instance_type,
      @vm_cpu, @vm_memory_mib, @vm_disk_gib, @key_name, @public_key, @user_data, 'pending', @launch_time, @launch_time)`);
  const link = db.prepare('INSERT INTO instance_groups (instance_id, position, group_id, group_name) VALUES (?, ?, ?, ?)');
  for (const i of instances) {
    insert.run(i);
    groups.forEach((g, n) => link.run(i.instance_id, n, g.groupId, g.groupName));
  }
}

export function reservationByClientToken(db: Db, accountId: string, clientToken: string): string | undefined {
  return db.prepare('SELECT reservation_id FROM reservations WHERE account_id = ? AND client_token = ?').pluck().get(accountId, clientToken) as string | undefined;
}

export function instanceRows(db: Db, where: string, params: Record<string, unknown> = {}): InstanceRow[] {
  return db.prepare(`SELECT * FROM instances WHERE ${where} ORDER BY launch_time, reservation_id, launch_index`).all(params) as InstanceRow[];
}

/** The columns a listing (DescribeInstances) shows: not the key and user data a launch carries. */
const LISTED_COLUMNS = ['instance_id', 'account_id', 'reservation_id', 'launch_index', 'zone', 'image_id', 'kernel_id', 'ramdisk_id',
  'architecture', 'platform', 'root_device_type', 'root_device_name', 'virtualization_type', 'instance_type', 'key_name', 'state',
  'state_reason', 'state_changed_at', 'private_ip', 'public_ip', 'launch_time', 'private_dns_name'] as const;
export type ListedInstance = Pick<InstanceRow, (typeof LISTED_COLUMNS)[number]>;

const byLaunch = (a: ListedInstance, b: ListedInstance) =>
  a.launch_time < b.launch_time ? -1 : a.launch_time > b.launch_time ? 1
    : a.reservation_id < b.reservation_id ? -1 : a.reservation_id > b.reservation_id ? 1 : a.launch_index - b.launch_index;

/** Instances for a listing, oldest launch first (sorted here: cheaper than SQLite sorting whole rows). */
export function listedInstances(db: Db, where: string, params: Record<string, unknown> = {}): ListedInstance[] {
  const rows = db.prepare(`SELECT ${LISTED_COLUMNS.join(', ')} FROM instances WHERE ${where}`).all(params) as ListedInstance[];
  return rows.sort(byLaunch);
}

export function instanceRow(db: Db, instanceId: string): InstanceRow | undefined {
  return db.prepare('SELECT * FROM instances WHERE instance_id = ?').get(instanceId) as InstanceRow | undefined;
}

/** instanceId → its groups, for many instances in one query (by account when there are many). */
export function groupsOf(db: Db, instanceIds: string[], accountIds?: string[]): Map<string, GroupRef[]> {
  const out = new Map<string, GroupRef[]>(instanceIds.map((id) => [id, []]));
  if (!instanceIds.length) return out;
  type Row = { instance_id: string; group_id: string; group_name: string };
  const rows = accountIds && instanceIds.length > 500
    ? db.prepare(`SELECT g.instance_id, g.group_id, g.group_name FROM instance_groups g JOIN instances i ON i.instance_id = g.instance_id
        WHERE i.account_id IN (SELECT value FROM json_each(?)) ORDER BY g.position`).all(JSON.stringify(accountIds)) as Row[]
    : db.prepare(`SELECT instance_id, group_id, group_name FROM instance_groups
        WHERE instance_id IN (SELECT value FROM json_each(?)) ORDER BY position`).all(JSON.stringify(instanceIds)) as Row[];
  for (const r of rows) out.get(r.instance_id)?.push({ groupId: r.group_id, groupName: r.group_name });
  return out;
}

export function setState(db: Db, instanceId: string, state: InstanceStateName, reason?: string | null, now = new Date()): void {
  db.prepare(`UPDATE instances SET state = @state, state_reason = @reason, state_changed_at = @now,
      terminated_at = CASE WHEN @state = 'terminated' THEN COALESCE(terminated_at, @now) ELSE NULL END
    WHERE instance_id = @id AND state <> @state`)
    .run({ id: instanceId, state, reason: reason ?? null, now: now.toISOString() });
}

/** Instances that never existed for the user (the cc did not place them): gone without a trace. */
export function deleteInstances(db: Db, instanceIds: string[]): void {
  if (!instanceIds.length) return;
  db.transaction(() => {
    const ids = JSON.stringify(instanceIds);
    const reservations = db.prepare('SELECT DISTINCT reservation_id FROM instances WHERE instance_id IN (SELECT value FROM json_each(?))').pluck().all(ids) as string[];
    for (const id of instanceIds) deleteTagsFor(db, id);
    db.prepare('DELETE FROM instances WHERE instance_id IN (SELECT value FROM json_each(?))').run(ids);
    const dropEmpty = db.prepare('DELETE FROM reservations WHERE reservation_id = ? AND NOT EXISTS (SELECT 1 FROM instances WHERE reservation_id = ?)');
    for (const r of reservations) dropEmpty.run(r, r);
  })();
}

/** Drops instances terminated before `before` (and their tags); returns how many went. */
export function purgeTerminated(db: Db, before: Date): number {
  const ids = db.prepare("SELECT instance_id FROM instances WHERE state = 'terminated' AND terminated_at < ?").pluck().all(before.toISOString()) as string[];
  deleteInstances(db, ids);
  return ids.length;
}

/** What the cc needs to launch this instance (also what a re-dispatch after a restart sends). */
export function specOf(row: InstanceRow, groupNames: string[]): InstanceSpec {
  return {
    instanceId: row.instance_id,
    reservationId: row.reservation_id,
    ownerId: row.account_id,
    launchIndex: row.launch_index,
    imageId: row.image_id,
    imageLocation: row.image_location,
    ...(row.kernel_id ? { kernelId: row.kernel_id } : {}),
    ...(row.ramdisk_id ? { ramdiskId: row.ramdisk_id } : {}),
    vmType: { name: row.instance_type, cores: row.vm_cpu, memoryMiB: row.vm_memory_mib, diskGiB: row.vm_disk_gib },
    ...(row.key_name ? { keyName: row.key_name } : {}),
    ...(row.public_key ? { publicKey: row.public_key } : {}),
    ...(row.user_data ? { userData: row.user_data } : {}),
    groupNames,
    ...(row.platform ? { platform: row.platform } : {}),
    // networking: the network and addresses the clc assigned at launch
    ...(row.vlan !== null ? { vlan: row.vlan } : {}),
    ...(row.private_ip ? { privateIp: row.private_ip } : {}),
    ...(row.mac_address ? { macAddress: row.mac_address } : {}),
    ...(row.public_ip ? { publicIp: row.public_ip } : {}),
    zone: row.zone,
  };
}
