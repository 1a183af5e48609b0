// One database per daemon, with numbered forward-only migrations applied at open: an embedded SQLite
// file (better-sqlite3, WAL) by default, or the daemon's own schema in PostgreSQL when given a
// postgres:// URL (DB_URL). Every daemon's durable state goes through here.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import type { Db, Dialect } from './db.js';
import { PgDatabase } from './pg/database.js';

export type { Db, Dialect, RunResult, Statement, Transaction } from './db.js';
export { PgDatabase, PgError } from './pg/database.js';
export { translate as translateToPostgres } from './pg/dialect.js';

/** True for a postgres:// (or postgresql://) URL rather than a file name. */
export const isPostgresUrl = (location: string) => /^postgres(ql)?:\/\//i.test(location);

export function dialectOf(db: Db): Dialect {
  return db instanceof PgDatabase ? 'postgres' : 'sqlite';
}

/**
 * Whether this process is the one holding `key` among the processes sharing the database: on
 * PostgreSQL a session advisory lock (freed when the holder dies), on SQLite always (one file, one
 * process). Ask again before each round of the work it guards.
 */
export function holdsLease(db: Db, key: string): boolean {
  return db instanceof PgDatabase ? db.tryLease(key) : true;
}

/**
 * Marks `key` as being worked on by this process until the returned release is called, so that other
 * processes on the same PostgreSQL database see it (othersWorkingOn); PostgreSQL lets go when the process
 * dies. On SQLite (one process) nothing to do.
 */
export function markWorking(db: Db, key: string): () => void {
  if (!(db instanceof PgDatabase)) return () => undefined;
  db.advisoryLock(key);
  return () => {
    try {
      db.advisoryUnlock(key);
    } catch {
      // the connection is gone, and the lock with it
    }
  };
}

/** Whether another process on the same PostgreSQL database has `key` marked (markWorking); never on SQLite. */
export function othersWorkingOn(db: Db, key: string): boolean {
  if (!(db instanceof PgDatabase)) return false;
  if (!db.tryAdvisoryLock(key)) return true;
  db.advisoryUnlock(key);
  return false;
}

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
  /** PostgreSQL: the daemon's schema (clc, walrus, sc); default the file name's stem. */
  schema?: string;
}

export class MigrationError extends Error {}

/**
 * Opens (and migrates) a daemon's database: `file` is a SQLite file name (or ':memory:'), or a
 * postgres:// URL, in which case the daemon's tables live in schema `opts.schema`.
 */
export function openDatabase(file: string, opts: OpenOptions): Db {
  if (isPostgresUrl(file)) {
    if (!opts.schema) throw new Error('a PostgreSQL database needs the daemon\'s schema name');
    const db = new PgDatabase({ url: file, schema: opts.schema });
    try {
      if (!opts.readonly) db.withAdvisoryLock(`mallee-migrate-${opts.schema}`, () => migrate(db, opts.migrations));
    } catch (err) {
      db.close();
      throw err;
    }
    return db;
  }
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
  // A read-only connection cannot change the journal mode (and has nothing to sync).
  if (!opts.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
  }
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
  if (db instanceof PgDatabase) throw new Error('a PostgreSQL database is backed up with pg_dump, not by Mallee');
  mkdirSync(dirname(destination), { recursive: true });
  await (db as unknown as Database.Database).backup(destination);
}

export interface SnapshotResult {
  pages: number;
  /** Newest migration applied in the copy (0 when it has none). */
  schemaVersion: number;
}

/**
 * A consistent copy of a database file another process may be writing (a running daemon's), by the
 * SQLite online backup API from a read-only connection: stepwise with progress; when writers keep
 * restarting the copy between steps, the rest goes in one step (one read transaction). The copy is
 * integrity-checked and left as one self-contained file (rollback journal, no -wal).
 */
export async function snapshotDatabaseFile(source: string, destination: string, onProgress?: (done: number, total: number) => void): Promise<SnapshotResult> {
  mkdirSync(dirname(destination), { recursive: true });
  const src = new Database(source, { readonly: true, fileMustExist: true });
  let pages: number;
  try {
    src.pragma('busy_timeout = 5000');
    let restarts = 0;
    let lastRemaining = Infinity;
    ({ totalPages: pages } = await src.backup(destination, {
      progress: ({ totalPages, remainingPages }) => {
        if (remainingPages >= lastRemaining) restarts++; // no headway: a writer restarted the copy
        lastRemaining = remainingPages;
        onProgress?.(totalPages - remainingPages, totalPages);
        return restarts >= 2 ? 0x7fffffff : 1000;
      },
    }));
  } finally {
    src.close();
  }
  const copy = new Database(destination);
  try {
    const check = copy.pragma('integrity_check', { simple: true });
    if (check !== 'ok') throw new Error(`the copy of ${source} fails its integrity check: ${String(check)}`);
    copy.pragma('journal_mode = DELETE');
    const tracked = copy.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
    const schemaVersion = tracked ? ((copy.prepare('SELECT COALESCE(MAX(id), 0) FROM schema_migrations').pluck().get() as number) ?? 0) : 0;
    return { pages, schemaVersion };
  } finally {
    copy.close();
  }
}

export interface DaemonDatabase {
  /** A SQLite file, or a postgres:// URL. */
  location: string;
  /** The daemon's schema when the location is PostgreSQL. */
  schema: string;
}

/**
 * Where a daemon with durable state (clc, walrus, sc) keeps it: schema `name` of DB_URL when set,
 * else its SQLite file. Test hook: with MALLEE_TEST_DB_URL set (npm run test:scale-out) and no
 * DB_URL, the daemon uses that PostgreSQL in a schema named after the file it would have used, so
 * every test cloud (each with its own home) gets its own, and a restarted daemon finds its state.
 */
export function daemonDatabase(dbUrl: string, file: string, name: string): DaemonDatabase {
  if (dbUrl) return { location: dbUrl, schema: name };
  const testUrl = process.env.MALLEE_TEST_DB_URL;
  if (testUrl && file !== ':memory:') return { location: testUrl, schema: `${name}_${createHash('sha256').update(resolve(file)).digest('hex').slice(0, 16)}` };
  return { location: file, schema: name };
}

/** Opens a daemon's database where daemonDatabase says. */
export function openDaemonDatabase(dbUrl: string, file: string, name: string, opts: Omit<OpenOptions, 'schema'>): Db {
  const where = daemonDatabase(dbUrl, file, name);
  return openDatabase(where.location, { ...opts, schema: where.schema });
}
