// The same behaviour on both backends: SQLite always, PostgreSQL when MALLEE_TEST_PG_URL names one
// (test/scale-out/backends.sh up pg; npm run test:scale-out sets it). Plus the PostgreSQL-only
// guarantee SQLite gets from being one process: concurrent writers in several processes never
// hand out the same row twice.
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openDatabase, dialectOf, schemaVersion, MigrationError, PgDatabase, holdsLease, markWorking, othersWorkingOn, type Db, type Migration } from '../src/index.js';

const pgUrl = process.env.MALLEE_TEST_PG_URL;
const opened: Db[] = [];
const schemas: string[] = [];
let n = 0;

function open(kind: 'sqlite' | 'postgres', migrations: Migration[], schema?: string): Db {
  let db: Db;
  if (kind === 'sqlite') db = openDatabase(join(mkdtempSync(join(tmpdir(), 'store-')), 'd.sqlite'), { migrations });
  else {
    const name = schema ?? `t${process.pid}_${++n}`;
    if (!schemas.includes(name)) schemas.push(name);
    db = openDatabase(pgUrl!, { migrations, schema: name });
  }
  opened.push(db);
  return db;
}

afterAll(() => {
  for (const db of opened) if (db.open) db.close();
  if (pgUrl && schemas.length) {
    const admin = new PgDatabase({ url: pgUrl, schema: 'public' });
    for (const s of schemas) admin.exec(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    admin.close();
  }
});

const schema: Migration[] = [
  {
    id: 1,
    name: 'things',
    up: `CREATE TABLE things (id TEXT PRIMARY KEY, size INTEGER NOT NULL DEFAULT 0, ratio REAL, data BLOB, note TEXT);
         CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, thing TEXT NOT NULL REFERENCES things(id) ON DELETE CASCADE, what TEXT NOT NULL);
         CREATE UNIQUE INDEX events_once ON events (thing, what);`,
  },
];

const kinds = pgUrl ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);
if (!pgUrl) it.skip('PostgreSQL backend (set MALLEE_TEST_PG_URL: test/scale-out/backends.sh up pg)', () => {});

describe.each(kinds)('store on %s', (kind) => {
  it('applies migrations once, forward only, and refuses a newer database', () => {
    const name = kind === 'postgres' ? `m${process.pid}` : undefined;
    const db = open(kind, schema, name);
    expect(dialectOf(db)).toBe(kind);
    expect(schemaVersion(db)).toBe(1);
    db.close();
    if (kind === 'sqlite') return; // the file-based variant is in store.test.ts
    const v2: Migration[] = [...schema, { id: 2, name: 'more', up: (d) => d.exec('ALTER TABLE things ADD COLUMN extra INTEGER NOT NULL DEFAULT 7') }];
    const db2 = open(kind, v2, name);
    expect(schemaVersion(db2)).toBe(2);
    db2.prepare('INSERT INTO things (id) VALUES (?)').run('x');
    expect(db2.prepare('SELECT extra FROM things').pluck().get()).toBe(7);
    db2.close();
    expect(() => open(kind, schema, name)).toThrow(MigrationError);
  });

  it('rolls back a failing migration entirely', () => {
    const db = open(kind, schema);
    const bad: Migration[] = [...schema, { id: 2, name: 'bad', up: 'CREATE TABLE x (a TEXT); SELECT nope FROM missing' }];
    const name = kind === 'postgres' ? (db as PgDatabase).schema : undefined;
    if (kind === 'postgres') {
      expect(() => open(kind, bad, name)).toThrow();
      const again = open(kind, schema, name);
      expect(schemaVersion(again)).toBe(1);
      expect(again.prepare("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'x'").pluck().get()).toBe(0);
    }
  });

  it('returns values as SQLite does: 64-bit integers as numbers, REAL, BLOB, NULL, booleans as 1/0', () => {
    const db = open(kind, schema);
    db.prepare('INSERT INTO things (id, size, ratio, data) VALUES (?, ?, ?, ?)').run('a', 2 ** 40 + 3, 0.25, Buffer.from([0, 1, 255]));
    db.prepare('INSERT INTO things (id) VALUES (?)').run('b');
    expect(db.prepare('SELECT id, size, ratio, data, note FROM things ORDER BY id').all()).toEqual([
      { id: 'a', size: 2 ** 40 + 3, ratio: 0.25, data: Buffer.from([0, 1, 255]), note: null },
      { id: 'b', size: 0, ratio: null, data: null, note: null },
    ]);
    expect(db.prepare('SELECT COUNT(*) FROM things').pluck().get()).toBe(2);
    expect(db.prepare('SELECT SUM(size) FROM things').pluck().get()).toBe(2 ** 40 + 3);
    expect(db.prepare('SELECT EXISTS (SELECT 1 FROM things WHERE id = ?)').pluck().get('a')).toBe(1);
    expect(db.prepare('SELECT id, size AS byteCount FROM things WHERE id = ?').get('a')).toEqual({ id: 'a', byteCount: 2 ** 40 + 3 });
    expect(db.prepare('SELECT id, size FROM things ORDER BY id').raw().all()).toEqual([['a', 2 ** 40 + 3], ['b', 0]]);
  });

  it('binds positional and named parameters, json_each lists, and counts changes', () => {
    const db = open(kind, schema);
    const insert = db.prepare('INSERT INTO things (id, size) VALUES (?, ?)');
    for (const [id, size] of [['a', 1], ['b', 2], ['c', 3]] as const) insert.run(id, size);
    expect(db.prepare('SELECT id FROM things WHERE id IN (SELECT value FROM json_each(@ids)) AND size >= @min ORDER BY id').pluck().all({ ids: JSON.stringify(['a', 'b', 'z']), min: 2 })).toEqual(['b']);
    expect(db.prepare('UPDATE things SET size = size + 10 WHERE size < ?').run(3).changes).toBe(2);
    expect(db.prepare('DELETE FROM things WHERE id = ?').run('nope').changes).toBe(0);
    expect([...db.prepare('SELECT id FROM things ORDER BY id').pluck().iterate()]).toEqual(['a', 'b', 'c']);
  });

  it('INSERT OR IGNORE, INSERT OR REPLACE, upserts and RETURNING', () => {
    const db = open(kind, schema);
    db.prepare('INSERT INTO things (id, size) VALUES (?, ?)').run('a', 1);
    expect(db.prepare('INSERT OR IGNORE INTO things (id, size) VALUES (?, ?)').run('a', 5).changes).toBe(0);
    db.prepare('INSERT OR REPLACE INTO things (id, size, note) VALUES (?, ?, ?)').run('a', 9, 'new');
    expect(db.prepare('SELECT size, note FROM things WHERE id = ?').get('a')).toEqual({ size: 9, note: 'new' });
    db.prepare('INSERT INTO things (id, size) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size + things.size').run('a', 1);
    expect(db.prepare('SELECT size FROM things WHERE id = ?').pluck().get('a')).toBe(10);
    const e1 = db.prepare('INSERT INTO events (thing, what) VALUES (?, ?) RETURNING seq, what').get('a', 'made') as { seq: number };
    const e2 = db.prepare('INSERT INTO events (thing, what) VALUES (?, ?) RETURNING seq, what').get('a', 'grew') as { seq: number };
    expect(e2.seq).toBeGreaterThan(e1.seq);
  });

  it('compares with NULL-safe IS ? as SQLite does', () => {
    const db = open(kind, schema);
    db.prepare('INSERT INTO things (id, note) VALUES (?, ?)').run('a', null);
    db.prepare('INSERT INTO things (id, note) VALUES (?, ?)').run('b', 'x');
    expect(db.prepare('SELECT id FROM things WHERE note IS ?').pluck().all(null)).toEqual(['a']);
    expect(db.prepare('SELECT id FROM things WHERE note IS ?').pluck().all('x')).toEqual(['b']);
    expect(db.prepare('SELECT id FROM things WHERE note IS NOT ? ORDER BY id').pluck().all('x')).toEqual(['a']);
  });

  it('constraint errors carry SQLite codes and leave nothing', () => {
    const db = open(kind, schema);
    db.prepare('INSERT INTO things (id) VALUES (?)').run('a');
    expect(() => db.prepare('INSERT INTO things (id) VALUES (?)').run('a')).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }));
    expect(() => db.prepare('INSERT INTO events (thing, what) VALUES (?, ?)').run('ghost', 'x')).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_FOREIGNKEY' }));
    expect(db.prepare('SELECT COUNT(*) FROM events').pluck().get()).toBe(0);
  });

  it('transactions commit or roll back as a whole; nested ones are savepoints', () => {
    const db = open(kind, schema);
    const put = db.prepare('INSERT INTO things (id, size) VALUES (?, ?)');
    const both = db.transaction((a: string, b: string) => {
      put.run(a, 1);
      try {
        db.transaction(() => {
          put.run(`${a}-inner`, 1);
          throw new Error('inner fails');
        })();
      } catch {
        // the inner savepoint is rolled back, the outer transaction goes on
      }
      put.run(b, 2);
      return 'done';
    });
    expect(both('a', 'b')).toBe('done');
    expect(() => both('c', 'a')).toThrow(); // 'a' exists: c is rolled back too
    expect(db.prepare('SELECT id FROM things ORDER BY id').pluck().all()).toEqual(['a', 'b']);
    expect(db.inTransaction).toBe(false);
  });

  it('lists text in byte order, as S3 listings need', () => {
    const db = open(kind, schema);
    const keys = ['b', 'B', 'a/', 'a-', 'é', 'z', '_x', 'A'];
    for (const k of keys) db.prepare('INSERT INTO things (id) VALUES (?)').run(k);
    const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(db.prepare('SELECT id FROM things ORDER BY id').pluck().all()).toEqual(sorted);
    expect(db.prepare('SELECT id FROM things WHERE id > ? ORDER BY id').pluck().all('a')).toEqual(sorted.filter((k) => Buffer.compare(Buffer.from(k), Buffer.from('a')) > 0));
  });
});

describe.skipIf(!pgUrl)('PostgreSQL leases', () => {
  it('a lease is one schema\'s: two sessions of one schema never both hold it, sessions of two schemas each hold their own', () => {
    const a = `lease${process.pid}a`, b = `lease${process.pid}b`;
    const [a1, a2, b1] = [open('postgres', schema, a), open('postgres', schema, a), open('postgres', schema, b)];
    expect(holdsLease(a1, 'poller')).toBe(true);
    expect(holdsLease(a2, 'poller')).toBe(false);
    // Another cloud in the same database (the scale-out suite runs one per schema): its own lease.
    expect(holdsLease(b1, 'poller')).toBe(true);
    expect(holdsLease(a1, 'poller')).toBe(true);
    const release = markWorking(a1, 'vol-1');
    expect(othersWorkingOn(a2, 'vol-1')).toBe(true);
    expect(othersWorkingOn(b1, 'vol-1')).toBe(false);
    release();
    expect(othersWorkingOn(a2, 'vol-1')).toBe(false);
    // The holder's session ends: the next ask of another takes the lease.
    a1.close();
    expect(holdsLease(a2, 'poller')).toBe(true);
  });
});

describe.skipIf(!pgUrl)('PostgreSQL under concurrent writers in several processes', () => {
  it('4 processes taking free slots 200 times each never take the same slot twice', async () => {
    const name = `slots${process.pid}`;
    schemas.push(name);
    const slots: Migration[] = [{ id: 1, name: 'slots', up: 'CREATE TABLE slots (n INTEGER PRIMARY KEY, holder TEXT); CREATE TABLE log (holder TEXT NOT NULL, n INTEGER NOT NULL)' }];
    const db = openDatabase(pgUrl!, { migrations: slots, schema: name });
    const total = 1000;
    db.transaction(() => { for (let i = 0; i < total; i++) db.prepare('INSERT INTO slots (n) VALUES (?)').run(i); })();
    const index = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));
    // Read the first free slot, then take it: two statements, as allocation code does them.
    const script = `
      import { openDatabase } from ${JSON.stringify(index)};
      const db = openDatabase(process.env.URL, { migrations: [{ id: 1, name: 'slots', up: '' }], schema: process.env.SCHEMA });
      const take = db.transaction((who) => {
        const n = db.prepare('SELECT n FROM slots WHERE holder IS NULL ORDER BY n LIMIT 1').pluck().get();
        if (n === undefined) return false;
        db.prepare('UPDATE slots SET holder = ? WHERE n = ?').run(who, n);
        db.prepare('INSERT INTO log (holder, n) VALUES (?, ?)').run(who, n);
        return true;
      });
      let got = 0;
      for (let i = 0; i < 200; i++) if (take(process.env.WHO)) got++;
      console.log(JSON.stringify({ got, retries: db.retries }));
      db.close();`;
    const run = promisify(execFile);
    const results = await Promise.all([0, 1, 2, 3].map((w) =>
      run(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, URL: pgUrl, SCHEMA: name, WHO: `w${w}` } })));
    const outs = results.map((r) => JSON.parse(r.stdout.trim()) as { got: number; retries: number });
    expect(outs.reduce((s, o) => s + o.got, 0)).toBe(800);
    // Every take is in the log once, and no slot was taken twice.
    expect(db.prepare('SELECT COUNT(*) FROM log').pluck().get()).toBe(800);
    expect(db.prepare('SELECT COUNT(DISTINCT n) FROM log').pluck().get()).toBe(800);
    expect(db.prepare('SELECT COUNT(*) FROM slots WHERE holder IS NOT NULL').pluck().get()).toBe(800);
    // The writers did collide (the test would prove nothing otherwise) and were run again.
    expect(outs.reduce((s, o) => s + o.retries, 0)).toBeGreaterThan(0);
    db.close();
  }, 120_000);
});
