// Registered Storage Controllers (one per availability zone): their wire keys, links and last contact.
import type { Db } from '@mallee/store';
import { WireClient, WireError, generateKey } from '@mallee/wire';

export interface StorageControllerRecord {
  zone: string;
  url: string;
  key: string;
  state: 'ENABLED' | 'NOTREADY';
  detail?: string;
  lastContact?: string;
  totalGiB?: number;
  maxTotalGiB?: number;
  maxVolumeGiB?: number;
}

interface Row { zone: string; url: string; wire_key: string; state: 'ENABLED' | 'NOTREADY'; detail: string | null; last_contact: string | null; total_gib: number | null; max_total_gib: number | null; max_volume_gib: number | null }

const toRecord = (r: Row): StorageControllerRecord => ({
  zone: r.zone, url: r.url, key: r.wire_key, state: r.state,
  ...(r.detail ? { detail: r.detail } : {}), ...(r.last_contact ? { lastContact: r.last_contact } : {}),
  ...(r.total_gib !== null ? { totalGiB: r.total_gib } : {}), ...(r.max_total_gib !== null ? { maxTotalGiB: r.max_total_gib } : {}),
  ...(r.max_volume_gib !== null ? { maxVolumeGiB: r.max_volume_gib } : {}),
});

export class StorageControllers {
  private readonly clients = new Map<string, { url: string; key: string; client: WireClient }>();

  constructor(private readonly db: Db, private readonly timeoutMs = 60_000) {}

  /** (Re-)registers the zone's SC and issues the key the clc signs with. */
  register(zone: string, url: string): string {
    const key = generateKey();
    this.db.prepare(`INSERT INTO storage_controllers (zone, url, wire_key, registered_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (zone) DO UPDATE SET url = excluded.url, wire_key = excluded.wire_key, state = 'NOTREADY'`).run(zone, url, key, new Date().toISOString());
    return key;
  }

  deregister(zone: string): void {
    if (!this.db.prepare('DELETE FROM storage_controllers WHERE zone = ?').run(zone).changes) throw new WireError('NoSuchEntity', `no storage controller for zone ${zone}`, 404);
    this.clients.delete(zone);
  }

  list(): StorageControllerRecord[] {
    return (this.db.prepare('SELECT * FROM storage_controllers ORDER BY zone').all() as Row[]).map(toRecord);
  }

  get(zone: string): StorageControllerRecord | undefined {
    const r = this.db.prepare('SELECT * FROM storage_controllers WHERE zone = ?').get(zone) as Row | undefined;
    return r && toRecord(r);
  }

  client(zone: string): WireClient {
    const rec = this.get(zone);
    if (!rec) throw new WireError('NoSuchEntity', `no storage controller for zone ${zone}`, 404);
    const cached = this.clients.get(zone);
    if (cached && cached.url === rec.url && cached.key === rec.key) return cached.client;
    const client = new WireClient({ url: rec.url, from: 'clc', key: rec.key, timeoutMs: this.timeoutMs });
    this.clients.set(zone, { url: rec.url, key: rec.key, client });
    return client;
  }

  recordContact(zone: string, ok: boolean, detail?: string, usage?: { totalGiB: number; maxTotalGiB: number; maxVolumeGiB: number }): void {
    if (ok) {
      this.db.prepare(`UPDATE storage_controllers SET state = 'ENABLED', detail = NULL, last_contact = ?, total_gib = ?, max_total_gib = ?, max_volume_gib = ? WHERE zone = ?`)
        .run(new Date().toISOString(), usage?.totalGiB ?? null, usage?.maxTotalGiB ?? null, usage?.maxVolumeGiB ?? null, zone);
    } else this.db.prepare("UPDATE storage_controllers SET state = 'NOTREADY', detail = ? WHERE zone = ?").run(detail ?? null, zone);
  }
}
