// Registered Cluster Controllers (one per availability zone): their wire keys and links, and what
// the last poll learnt about each (state, last contact, free/max per instance type, nodes).
import type { Db } from '@mallee/store';
import { WireClient, WireError, generateKey, type cc } from '@mallee/wire';
import type { z } from 'zod';

/** The clc's sender id on every cc. */
export const CLC_SENDER = 'clc';

export type ClusterState = 'ENABLED' | 'NOTREADY';
export type Availability = { name: string; max: number; available: number };
type Resources = z.infer<typeof cc.DescribeResources.response>;

export interface ClusterRecord {
  name: string;
  url: string;
  state: ClusterState;
  lastContact?: string;
  detail?: string;
}

interface ClusterRow { name: string; url: string; wire_key: string; state: ClusterState; detail: string | null; last_contact: string | null }

export class Clusters {
  private readonly clients = new Map<string, { url: string; key: string; client: WireClient }>();
  private readonly resources = new Map<string, Resources>();
  /** Per cluster: instances whose node did not answer the cc at the last poll, and since when (soft state). */
  private readonly unreachable = new Map<string, Map<string, string>>();

  constructor(private readonly db: Db, private readonly timeoutMs = 30_000) {}

  /** Registers a cluster and issues the key the clc will sign with (the cc's keys/cloud.key). */
  register(name: string, url: string): string {
    const key = generateKey();
    const clash = this.row(name);
    if (clash) throw new WireError('EntityAlreadyExists', `cluster ${name} is already registered (at ${clash.url}); deregister it first`, 409);
    this.db.prepare("INSERT INTO clusters (name, url, wire_key, state, registered_at) VALUES (?, ?, ?, 'NOTREADY', ?)").run(name, url, key, new Date().toISOString());
    return key;
  }

  deregister(name: string): void {
    const r = this.db.prepare('DELETE FROM clusters WHERE name = ?').run(name);
    if (!r.changes) throw new WireError('NoSuchEntity', `no cluster named ${name}`, 404);
    this.clients.delete(name);
    this.resources.delete(name);
    this.unreachable.delete(name);
  }

  list(): ClusterRecord[] {
    return (this.db.prepare('SELECT * FROM clusters ORDER BY name').all() as ClusterRow[]).map(toRecord);
  }

  get(name: string): ClusterRecord | undefined {
    const row = this.row(name);
    return row && toRecord(row);
  }

  /** The wire link to a cluster's cc (rebuilt when it is re-registered with another url or key). */
  client(name: string): WireClient {
    const row = this.row(name);
    if (!row) throw new WireError('NoSuchEntity', `no cluster named ${name}`, 404);
    const cached = this.clients.get(name);
    if (cached && cached.url === row.url && cached.key === row.wire_key) return cached.client;
    const client = new WireClient({ url: row.url, from: CLC_SENDER, key: row.wire_key, timeoutMs: this.timeoutMs });
    this.clients.set(name, { url: row.url, key: row.wire_key, client });
    return client;
  }

  /** Records the outcome of a poll: ENABLED with a fresh last contact, or NOTREADY and why. */
  recordContact(name: string, ok: boolean, detail?: string, now = new Date()): void {
    if (ok) this.db.prepare("UPDATE clusters SET state = 'ENABLED', detail = NULL, last_contact = ? WHERE name = ?").run(now.toISOString(), name);
    else this.db.prepare("UPDATE clusters SET state = 'NOTREADY', detail = ? WHERE name = ?").run(detail ?? null, name);
  }

  recordResources(name: string, res: Resources): void {
    this.resources.set(name, res);
  }

  /** The instances of the cluster whose node did not answer its cc at the last poll (instance id → since when). */
  recordUnreachable(name: string, instances: Map<string, string>): void {
    this.unreachable.set(name, instances);
  }

  /** Since when the node running the instance has not answered its cc, per the last poll of its cluster. */
  nodeUnreachableSince(name: string, instanceId: string): string | undefined {
    return this.unreachable.get(name)?.get(instanceId);
  }

  /** Free/max per instance type from the cluster's last DescribeResources (empty until polled). */
  availability(name: string): Availability[] {
    return this.resources.get(name)?.availability ?? [];
  }

  private row(name: string): ClusterRow | undefined {
    return this.db.prepare('SELECT * FROM clusters WHERE name = ?').get(name) as ClusterRow | undefined;
  }
}

function toRecord(r: ClusterRow): ClusterRecord {
  return { name: r.name, url: r.url, state: r.state, ...(r.last_contact ? { lastContact: r.last_contact } : {}), ...(r.detail ? { detail: r.detail } : {}) };
}
