// What in the core's tables still uses a resource of this module (a group an instance runs in).
import type { Db } from '@mallee/store';
import type { GroupRecord } from './groups.js';

/** Ids of the account's non-terminated instances in the group. */
export function instancesUsingGroup(_db: Db, _group: GroupRecord): string[] {
  // TODO(core migration 1): query the core's instances table and its instance→group link once it lands.
  return [];
}
