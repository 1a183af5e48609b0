// One SQLite file per daemon (better-sqlite3, WAL), with numbered forward-only migrations applied
// at open. Every daemon's durable state goes through here.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Db = Database.Database;

export interface Migration {
  /** Strictly increasing number; never reuse or edit an applied one, add a new one. */
  id: number;
  name: string;
  up: string | ((db: Db) => void);
}

export interface OpenOptions {
  migrations: readonly Migration[];
  /** FULL (default) fsyncs every commit: acknowledged writes survive power loss, not just kill -9. */
  synchronous?: 'FULL' | 'NORMAL';
  readonly?: boolean;
}

export class MigrationError extends Error {}

export function openDatabase(file: string, opts: OpenOptions): Db {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file, { readonly: opts.readonly ?? false });
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  if (!opts.readonly) migrate(db, opts.migrations);
  return db;
}

/** Apply, in order and each in its own transaction, every migration newer than the file's version. */
export function migrate(db: Db, migrations: readonly Migration[]): number[] {
  const ids = migrations.map((m) => m.id);
  for (let i = 1; i < ids.length; i++) {
    if (ids[i]! <= ids[i - 1]!) throw new MigrationError(`migration ids must increase: ${ids[i - 1]} then ${ids[i]}`);
  }
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const applied = new Set(db.prepare('SELECT id FROM schema_migrations').pluck().all() as number[]);
  const newest = Math.max(0, ...applied);
  const known = new Set(ids);
  for (const id of applied) {
    if (!known.has(id)) throw new MigrationError(`database has migration ${id}, which this build does not know: it was written by a newer Mallee`);
  }
  const done: number[] = [];
  for (const m of migrations) {
    if (applied.has(m.id)) continue;
    if (m.id < newest) throw new MigrationError(`migration ${m.id} (${m.name}) is older than the applied ${newest}; add a new migration instead`);
    db.transaction(() => {
      if (typeof m.up === 'string') db.exec(m.up);
      else m.up(db);
      db.prepare('INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)').run(m.id, m.name, new Date().toISOString());
    })();
    done.push(m.id);
  }
  return done;
}

export function schemaVersion(db: Db): number {
  return (db.prepare('SELECT COALESCE(MAX(id), 0) FROM schema_migrations').pluck().get() as number) ?? 0;
}

/** Online, consistent copy of a live database (SQLite backup API). */
export async function backupDatabase(db: Db, destination: string): Promise<void> {
  mkdirSync(dirname(destination), { recursive: true });
  await db.backup(destination);
}
