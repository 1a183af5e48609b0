// PostgreSQL behind the same synchronous handle as SQLite (libpq's blocking calls through the
// `libpq` binding), one connection per daemon process, statements prepared once per connection.
//
// Why synchronous: every daemon's code is written against better-sqlite3, whose calls never yield,
// so a request's reads and writes between two awaits are atomic within the process. Keeping that
// property keeps all of that code correct; across processes, every transaction runs SERIALIZABLE
// (SQLite's own guarantee) and one PostgreSQL aborts as unserializable is run again.
import { createRequire } from 'node:module';
import type PQ from 'libpq';
import type { Db, RunResult, Statement, Transaction } from '../db.js';
import { splitStatements, translate, type Translated } from './dialect.js';

/** SQLSTATEs worth running a transaction (or one statement outside any) again for. */
const RETRYABLE = new Set(['40001', '40P01', '55P03']);
const MAX_ATTEMPTS = 30;

export class PgError extends Error {
  /** SQLite-style code for the constraint errors (SQLITE_CONSTRAINT_UNIQUE, …), else PG_<sqlstate>. */
  readonly code: string;
  constructor(message: string, readonly sqlState: string, readonly statement?: string) {
    super(statement ? `${message} (in: ${statement.trim().slice(0, 300)})` : message);
    this.name = 'PgError';
    this.code = sqliteCode(sqlState, message);
  }
}

function sqliteCode(state: string, message: string): string {
  switch (state) {
    case '23505': return /_pkey"/.test(message) ? 'SQLITE_CONSTRAINT_PRIMARYKEY' : 'SQLITE_CONSTRAINT_UNIQUE';
    case '23503': return 'SQLITE_CONSTRAINT_FOREIGNKEY';
    case '23502': return 'SQLITE_CONSTRAINT_NOTNULL';
    case '23514': return 'SQLITE_CONSTRAINT_CHECK';
    default: return `PG_${state}`;
  }
}

// Result values as better-sqlite3 gives them: numbers, strings, Buffers, null; booleans as 1/0.
const INT_TYPES = new Set([20, 21, 23, 26, 700, 701, 1700]);
function parseValue(type: number, text: string): unknown {
  if (INT_TYPES.has(type)) return Number(text);
  if (type === 16) return text === 't' ? 1 : 0;
  if (type === 17) return Buffer.from(text.slice(2), 'hex');
  return text;
}

function encodeValue(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
  throw new TypeError(`cannot bind ${typeof v} values (bind numbers, strings, bigints, buffers and null)`);
}

// Loaded on first use, so SQLite-only hosts never need the native binding (and through require, as
// the package prints its include path when imported as a top-level module).
let PQClass: typeof PQ | undefined;
function loadLibpq(): typeof PQ {
  try {
    return (PQClass ??= createRequire(import.meta.url)('libpq') as typeof PQ);
  } catch (err) {
    throw new Error(`PostgreSQL needs the libpq binding, which is not built here (apt-get install libpq-dev, then npm ci): ${(err as Error).message}`);
  }
}

const finished = new Set<PQ>();

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepSync = (ms: number) => void Atomics.wait(sleeper, 0, 0, ms);

export interface PgOptions {
  /** postgres://user[:password]@host[:port]/database[?…] (libpq syntax). */
  url: string;
  /** The daemon's own schema (clc, walrus, sc): created when missing, first on the search_path. */
  schema: string;
}

export class PgDatabase implements Db {
  readonly name: string;
  private pq: PQ | undefined;
  private prepared = new Map<string, string>();
  private translations = new Map<string, Translated>();
  private primaryKeys = new Map<string, string[]>();
  private depth = 0;
  private seq = 0;
  /** Session-level advisory locks this connection holds (tryLease); a new connection holds none. */
  private readonly leases = new Set<string>();
  /** Statistics (metrics, tests): transactions run again after a serialization failure. */
  retries = 0;

  constructor(private readonly opts: PgOptions) {
    if (!/^[a-z_][a-z0-9_]*$/.test(opts.schema)) throw new Error(`bad schema name ${opts.schema}`);
    this.name = `${redact(opts.url)}#${opts.schema}`;
    this.connect();
  }

  get open(): boolean {
    return this.pq !== undefined;
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  get schema(): string {
    return this.opts.schema;
  }

  private connect(): PQ {
    const pq = new (loadLibpq())();
    try {
      pq.connectSync(withParams(this.opts.url, { connect_timeout: '10', application_name: `mallee-${this.opts.schema}` }));
    } catch (err) {
      throw new PgError(`cannot connect to PostgreSQL at ${redact(this.opts.url)}: ${(err as Error).message.trim()}`, '08001');
    }
    this.pq = pq;
    this.prepared.clear();
    this.leases.clear();
    this.simple(`SET client_min_messages TO warning; CREATE SCHEMA IF NOT EXISTS ${this.opts.schema}`);
    this.simple(`SET search_path TO ${this.opts.schema}; SET default_transaction_isolation TO serializable;
      SET lock_timeout TO '10s'; SET statement_timeout TO '60s'; SET idle_in_transaction_session_timeout TO '120s'`);
    return pq;
  }

  private conn(): PQ {
    if (this.pq) return this.pq;
    if (this.closed) throw new TypeError('The database connection is not open');
    return this.connect();
  }

  private closed = false;

  /** Simple-protocol query (several statements allowed); throws on error. */
  private simple(text: string): void {
    const pq = this.conn();
    pq.exec(text);
    this.check(pq, text);
  }

  private check(pq: PQ, text: string): void {
    const status = pq.resultStatus();
    if (status === 'PGRES_COMMAND_OK' || status === 'PGRES_TUPLES_OK' || status === 'PGRES_EMPTY_QUERY') return;
    const fields = pq.resultErrorFields() as { sqlState?: string; messagePrimary?: string } | undefined;
    const message = fields?.messagePrimary ?? (pq.resultErrorMessage() || pq.errorMessage() || status).trim();
    const state = fields?.sqlState ?? '08006';
    if (pq.transactionStatus() === 'PQTRANS_UNKNOWN') this.drop();
    throw new PgError(message, state, text);
  }

  /** Forgets a broken connection; the next statement reconnects. */
  private drop(): void {
    const pq = this.pq;
    if (pq) {
      try {
        pq.finish();
      } catch {
        // already gone
      }
      // finish() queues a libuv close of a handle inside the binding's object: keep the object from
      // being collected until the loop has run that close, or libuv touches freed memory.
      finished.add(pq);
      setTimeout(() => finished.delete(pq), 200).unref();
    }
    this.pq = undefined;
    this.prepared.clear();
    this.leases.clear();
  }

  translation(source: string): Translated {
    let t = this.translations.get(source);
    if (!t) {
      t = translate(source, { primaryKey: (table) => this.primaryKey(table) });
      this.translations.set(source, t);
    }
    return t;
  }

  private primaryKey(table: string): string[] {
    let pk = this.primaryKeys.get(table);
    if (!pk) {
      pk = this.query(`SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`, [table], 'raw').map((r) => String((r as unknown[])[0]));
      this.primaryKeys.set(table, pk);
    }
    return pk;
  }

  /** Runs one translated statement (prepared once per connection), retrying a lone one that may be retried. */
  query(text: string, values: unknown[], shape: 'object' | 'raw' | 'pluck' | 'none'): unknown[] & { changes?: number } {
    for (let attempt = 1; ; attempt++) {
      try {
        return this.execute(text, values, shape);
      } catch (err) {
        // Outside a transaction a statement is its own: if it failed for a reason worth retrying
        // (or the connection broke before it ran), nothing of it stayed, so run it again.
        if (this.depth === 0 && err instanceof PgError && (RETRYABLE.has(err.sqlState) || err.sqlState.startsWith('08')) && attempt < MAX_ATTEMPTS) {
          this.retries++;
          sleepSync(Math.min(50, attempt * 2) * Math.random());
          continue;
        }
        throw err;
      }
    }
  }

  private execute(text: string, values: unknown[], shape: 'object' | 'raw' | 'pluck' | 'none'): unknown[] & { changes?: number } {
    const pq = this.conn();
    let name = this.prepared.get(text);
    if (name === undefined) {
      name = `s${++this.seq}`;
      pq.prepare(name, text, values.length);
      this.check(pq, text);
      this.prepared.set(text, name);
    }
    pq.execPrepared(name, values.map(encodeValue));
    try {
      this.check(pq, text);
    } catch (err) {
      // A plan made before a schema change (migrations): prepare again next time.
      if (err instanceof PgError && err.sqlState === '0A000') this.prepared.delete(text);
      throw err;
    }
    const rows: unknown[] & { changes?: number } = [];
    const n = pq.ntuples();
    const f = pq.nfields();
    if (shape !== 'none' && n > 0) {
      const names: string[] = [];
      const types: number[] = [];
      for (let c = 0; c < f; c++) {
        names.push(pq.fname(c));
        types.push(pq.ftype(c));
      }
      for (let r = 0; r < n; r++) {
        const value = (c: number) => (pq.getisnull(r, c) ? null : parseValue(types[c]!, pq.getvalue(r, c)));
        if (shape === 'pluck') rows.push(value(0));
        else if (shape === 'raw') {
          const row: unknown[] = [];
          for (let c = 0; c < f; c++) row.push(value(c));
          rows.push(row);
        } else {
          const row: Record<string, unknown> = {};
          for (let c = 0; c < f; c++) row[names[c]!] = value(c);
          rows.push(row);
        }
      }
    }
    const tuples = pq.cmdTuples();
    rows.changes = tuples ? Number(tuples) : 0;
    return rows;
  }

  prepare<P extends unknown[] | object = unknown[], R = unknown>(source: string): P extends unknown[] ? Statement<P, R> : Statement<[P], R> {
    return new PgStatement(this, source) as unknown as P extends unknown[] ? Statement<P, R> : Statement<[P], R>;
  }

  exec(source: string): this {
    // Statement by statement, each translated; simple protocol (DDL needs no plan).
    for (const stmt of splitStatements(source)) this.simple(this.translation(stmt).text);
    this.prepared.clear();
    this.primaryKeys.clear();
    // Drop server-side plans too: prepared statements may now describe a different table.
    this.simple('DEALLOCATE ALL');
    return this;
  }

  transaction<F extends (...args: any[]) => unknown>(fn: F): Transaction<F> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const run = (...args: unknown[]): ReturnType<F> => this.runTransaction(() => fn(...args) as ReturnType<F>);
    return Object.assign(run, { default: run, deferred: run, immediate: run, exclusive: run }) as unknown as Transaction<F>;
  }

  private runTransaction<T>(body: () => T): T {
    if (this.depth > 0) {
      const sp = `sp${this.depth}`;
      this.simple(`SAVEPOINT ${sp}`);
      this.depth++;
      try {
        const result = body();
        this.simple(`RELEASE SAVEPOINT ${sp}`);
        return result;
      } catch (err) {
        if (this.pq) this.simple(`ROLLBACK TO SAVEPOINT ${sp}; RELEASE SAVEPOINT ${sp}`);
        throw err;
      } finally {
        this.depth--;
      }
    }
    for (let attempt = 1; ; attempt++) {
      let committing = false;
      try {
        this.simple('BEGIN');
        this.depth = 1;
        const result = body();
        committing = true;
        this.simple('COMMIT');
        return result;
      } catch (err) {
        if (this.pq) {
          try {
            this.simple('ROLLBACK');
          } catch {
            this.drop();
          }
        }
        // A broken connection while committing is ambiguous (it may have committed): never retried.
        const retry = err instanceof PgError && (RETRYABLE.has(err.sqlState) || (!committing && err.sqlState.startsWith('08')));
        if (!retry || attempt >= MAX_ATTEMPTS) throw err;
        this.retries++;
        sleepSync(Math.min(50, attempt * 2) * Math.random());
      } finally {
        this.depth = 0;
      }
    }
  }

  /** Holds a session-level advisory lock while fn runs (migrations of several daemons starting at once). */
  withAdvisoryLock<T>(key: string, fn: () => T): T {
    this.advisoryLock(key);
    try {
      return fn();
    } finally {
      this.advisoryUnlock(key);
    }
  }

  /**
   * Takes, or confirms it still holds, the session-level advisory lock `key`: true while this connection
   * has it. PostgreSQL frees it when the session ends (the process died, the connection broke), so
   * another process's next call gets it; a broken and silently re-made connection holds nothing.
   */
  tryLease(key: string): boolean {
    if (this.leases.has(key)) {
      this.query('SELECT 1', [], 'none'); // reconnects (and forgets the lease) if the session is gone
      if (this.leases.has(key)) return true;
    }
    const got = this.tryAdvisoryLock(key);
    if (got) this.leases.add(key);
    return got;
  }

  // Advisory locks are the database's, not a schema's: each key is this schema's own, so that daemons of
  // clouds (or test clouds) sharing one database in schemas of their own never hold each other's leases.
  private lockId(key: string): string {
    return `${this.opts.schema}/${key}`;
  }

  /** Takes the session-level advisory lock `key` (this schema's), waiting (lock_timeout) while another session holds it; re-entrant. */
  advisoryLock(key: string): void {
    this.query('SELECT pg_advisory_lock(hashtext($1))', [this.lockId(key)], 'none');
  }

  /** Takes the session-level advisory lock `key` (this schema's) if no other session holds it (re-entrant): whether it did. */
  tryAdvisoryLock(key: string): boolean {
    return this.query('SELECT pg_try_advisory_lock(hashtext($1))', [this.lockId(key)], 'pluck')[0] === 1;
  }

  advisoryUnlock(key: string): void {
    this.query('SELECT pg_advisory_unlock(hashtext($1))', [this.lockId(key)], 'none');
  }

  pragma(source: string): unknown {
    // The SQLite tunables the daemons set have PostgreSQL equivalents set at connect (or none needed).
    if (/^\s*(foreign_keys|busy_timeout|synchronous|journal_mode)\s*=/i.test(source)) return undefined;
    throw new Error(`PRAGMA ${source} has no PostgreSQL equivalent`);
  }

  close(): this {
    this.closed = true;
    this.drop();
    return this;
  }
}

class PgStatement {
  private shape: 'object' | 'raw' | 'pluck' = 'object';
  constructor(private readonly db: PgDatabase, readonly source: string) {}

  pluck(toggle = true): this {
    this.shape = toggle ? 'pluck' : 'object';
    return this;
  }

  raw(toggle = true): this {
    this.shape = toggle ? 'raw' : 'object';
    return this;
  }

  private values(args: unknown[]): unknown[] {
    const t = this.db.translation(this.source);
    const named = args.length === 1 && args[0] !== null && typeof args[0] === 'object' && !Buffer.isBuffer(args[0]) ? (args[0] as Record<string, unknown>) : undefined;
    const positional = named ? [] : args.flat();
    return t.params.map((p) => {
      if ('name' in p) {
        if (!named || !(p.name in named)) throw new RangeError(`Missing named parameter "${p.name}"`);
        return named[p.name];
      }
      return positional[p.index];
    });
  }

  private q(args: unknown[], shape: 'object' | 'raw' | 'pluck' | 'none') {
    return this.db.query(this.db.translation(this.source).text, this.values(args), shape);
  }

  run(...args: unknown[]): RunResult {
    return { changes: this.q(args, 'none').changes ?? 0, lastInsertRowid: 0 };
  }

  get(...args: unknown[]): unknown {
    return this.q(args, this.shape)[0];
  }

  all(...args: unknown[]): unknown[] {
    return [...this.q(args, this.shape)];
  }

  iterate(...args: unknown[]): IterableIterator<unknown> {
    return this.all(...args)[Symbol.iterator]();
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

/** Adds libpq parameters to a postgres:// URL unless it sets them itself. */
function withParams(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) if (!u.searchParams.has(k)) u.searchParams.set(k, v);
  return u.toString();
}
