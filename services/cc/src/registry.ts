// The cc's node registry (`<home>/cc.sqlite`): which NCs belong to this cluster, where they listen and
// the wire key issued to each (Eucalyptus's NODES list plus the node certificates).
import type { Db, Migration } from '@mallee/store';
import type { NodeInstance } from '@mallee/wire';

export const migrations: Migration[] = [
  {
    id: 1,
    name: 'nodes',
    up: `CREATE TABLE nodes (
      name          TEXT PRIMARY KEY,
      url           TEXT NOT NULL,
      key           TEXT NOT NULL,
      registered_at TEXT NOT NULL,
      last_seen     TEXT
    )`,
  },
  {
    id: 2,
    name: 'last known instances',
    // What each node last reported, so a cc restarted while a node is down still reports that node's instances.
    up: `CREATE TABLE instances (
      instance_id TEXT PRIMARY KEY,
      node        TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
      data        TEXT NOT NULL
    )`,
  },
];

export interface NodeRecord {
  name: string;
  url: string;
  key: string;
  registeredAt: string;
  lastSeen?: string;
}

interface Row {
  name: string;
  url: string;
  key: string;
  registered_at: string;
  last_seen: string | null;
}

export class NodeRegistry {
  constructor(private readonly db: Db) {}

  /** In registration order: the order GREEDY fills nodes in. */
  all(): NodeRecord[] {
    const rows = this.db.prepare('SELECT name, url, key, registered_at, last_seen FROM nodes ORDER BY rowid').all() as Row[];
    return rows.map((r) => ({
      name: r.name,
      url: r.url,
      key: r.key,
      registeredAt: r.registered_at,
      ...(r.last_seen !== null ? { lastSeen: r.last_seen } : {}),
    }));
  }

  /** Add a node, or move a known one to a new url; either way with the freshly issued key (cluster.registerNode keeps a known node's key at its url). */
  upsert(name: string, url: string, key: string): NodeRecord {
    const registeredAt = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO nodes (name, url, key, registered_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET url = excluded.url, key = excluded.key`,
      )
      .run(name, url, key, registeredAt);
    return this.all().find((n) => n.name === name)!;
  }

  remove(name: string): boolean {
    return this.db.prepare('DELETE FROM nodes WHERE name = ?').run(name).changes > 0;
  }

  /** Last known instances by node. */
  instances(): Map<string, NodeInstance[]> {
    const out = new Map<string, NodeInstance[]>();
    for (const r of this.db.prepare('SELECT node, data FROM instances').all() as { node: string; data: string }[]) {
      const list = out.get(r.node) ?? [];
      list.push(JSON.parse(r.data) as NodeInstance);
      out.set(r.node, list);
    }
    return out;
  }

  saveInstances(changes: readonly { node: string; upserts: readonly NodeInstance[]; deletes: readonly string[] }[]): void {
    const upsert = this.db.prepare('INSERT OR REPLACE INTO instances (instance_id, node, data) VALUES (?, ?, ?)');
    const del = this.db.prepare('DELETE FROM instances WHERE instance_id = ? AND node = ?');
    this.db.transaction(() => {
      for (const c of changes) {
        for (const id of c.deletes) del.run(id, c.node);
        for (const i of c.upserts) upsert.run(i.instanceId, c.node, JSON.stringify(i));
      }
    })();
  }

  touch(name: string, lastSeen: string): void {
    this.db.prepare('UPDATE nodes SET last_seen = ? WHERE name = ?').run(lastSeen, name);
  }
}
