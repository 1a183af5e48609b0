// What in the core's tables (migration 1: instances, instance_groups) still uses a resource of this module.
import type { Db } from '@mallee/store';
import type { GroupRecord } from './groups.js';

/** Ids of the group's instances that are not terminated (stopped ones still hold their groups, as in EC2). */
export function instancesUsingGroup(db: Db, group: GroupRecord): string[] {
  return db.prepare(`SELECT i.instance_id FROM instance_groups g JOIN instances i ON i.instance_id = g.instance_id
    WHERE g.group_id = ? AND i.account_id = ? AND i.state <> 'terminated' ORDER BY i.instance_id`)
    .pluck().all(group.groupId, group.accountId) as string[];
}

/** The accounts EC2's "amazon" owner alias stands for here: the cloud administrators' ("eucalyptus"). */
export function adminAccountIds(db: Db): string[] {
  return db.prepare('SELECT account_id FROM accounts WHERE is_admin = 1 ORDER BY account_id').pluck().all() as string[];
}
