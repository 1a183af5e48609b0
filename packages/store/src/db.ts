// The database handle every daemon uses: the part of better-sqlite3's synchronous API the code base
// calls, so an embedded SQLite file (better-sqlite3 itself) and PostgreSQL (PgDatabase) are
// interchangeable without turning every caller async.

export interface RunResult {
  changes: number;
  /** SQLite's rowid of the last insert; 0 on PostgreSQL (use RETURNING). */
  lastInsertRowid: number | bigint;
}

export interface Statement<P extends unknown[] = unknown[], R = unknown> {
  readonly source: string;
  run(...params: P): RunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
  iterate(...params: P): IterableIterator<R>;
  /** Rows become their first column's value. */
  pluck(toggle?: boolean): this;
  /** Rows become arrays of values. */
  raw(toggle?: boolean): this;
}

type AnyFn = (...args: any[]) => unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
type Args<F extends AnyFn> = F extends (...args: infer A) => unknown ? A : never;

export interface Transaction<F extends AnyFn> {
  (...args: Args<F>): ReturnType<F>;
  default(...args: Args<F>): ReturnType<F>;
  deferred(...args: Args<F>): ReturnType<F>;
  immediate(...args: Args<F>): ReturnType<F>;
  exclusive(...args: Args<F>): ReturnType<F>;
}

export interface Db {
  readonly name: string;
  readonly open: boolean;
  readonly inTransaction: boolean;
  prepare<P extends unknown[] | object = unknown[], R = unknown>(source: string): P extends unknown[] ? Statement<P, R> : Statement<[P], R>;
  exec(source: string): this;
  /**
   * Runs fn in a transaction (a savepoint when nested). On PostgreSQL fn may run more than once: a
   * transaction a concurrent one made unserializable is rolled back and run again, so keep its side
   * effects in the database.
   */
  transaction<F extends AnyFn>(fn: F): Transaction<F>;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  close(): this;
}

export type Dialect = 'sqlite' | 'postgres';
