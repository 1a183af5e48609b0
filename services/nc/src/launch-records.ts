// The NC's small database (`<home>/nc.sqlite`): the spec of every instance it launched, so a restarted
// NC can adopt its guests with their specs. Soft state: the hypervisor's guest list is the truth.
import type { Db, Migration } from '@mallee/store';
import type { InstanceSpec, InstanceStateName } from '@mallee/wire';

export const migrations: Migration[] = [
  {
    id: 1,
    name: 'launch records',
    up: `CREATE TABLE instances (
      instance_id   TEXT PRIMARY KEY,
      spec          TEXT NOT NULL,
      state         TEXT NOT NULL,
      state_reason  TEXT,
      launch_time   TEXT NOT NULL,
      terminated_at INTEGER
    )`,
  },
];

export interface LaunchRecord {
  spec: InstanceSpec;
  state: InstanceStateName;
  stateReason?: string;
  launchTime: string;
  /** ms since the epoch when the NC saw it terminated. */
  terminatedAt?: number;
}

interface Row {
  spec: string;
  state: InstanceStateName;
  state_reason: string | null;
  launch_time: string;
  terminated_at: number | null;
}

export class LaunchRecords {
  private readonly upsertStmt;
  private readonly deleteStmt;

  constructor(private readonly db: Db) {
    this.upsertStmt = db.prepare(
      `INSERT INTO instances (instance_id, spec, state, state_reason, launch_time, terminated_at)
       VALUES (@id, @spec, @state, @reason, @launchTime, @terminatedAt)
       ON CONFLICT (instance_id) DO UPDATE SET state = excluded.state, state_reason = excluded.state_reason,
         terminated_at = excluded.terminated_at`,
    );
    this.deleteStmt = db.prepare('DELETE FROM instances WHERE instance_id = ?');
  }

  all(): LaunchRecord[] {
    const rows = this.db.prepare('SELECT spec, state, state_reason, launch_time, terminated_at FROM instances').all() as Row[];
    return rows.map((r) => ({
      spec: JSON.parse(r.spec) as InstanceSpec,
      state: r.state,
      ...(r.state_reason !== null ? { stateReason: r.state_reason } : {}),
      launchTime: r.launch_time,
      ...(r.terminated_at !== null ? { terminatedAt: r.terminated_at } : {}),
    }));
  }

  /** Write several records in one transaction (one fsync for a whole poll's worth of transitions). */
  save(records: readonly LaunchRecord[]): void {
    if (records.length === 0) return;
    this.db.transaction(() => {
      for (const r of records) {
        this.upsertStmt.run({
          id: r.spec.instanceId,
          spec: JSON.stringify(r.spec),
          state: r.state,
          reason: r.stateReason ?? null,
          launchTime: r.launchTime,
          terminatedAt: r.terminatedAt ?? null,
        });
      }
    })();
  }

  forget(instanceIds: readonly string[]): void {
    if (instanceIds.length === 0) return;
    this.db.transaction(() => {
      for (const id of instanceIds) this.deleteStmt.run(id);
    })();
  }
}
