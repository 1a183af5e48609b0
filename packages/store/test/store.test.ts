import { describe, it, expect } from 'vitest';
import { openDatabase, migrate, schemaVersion, snapshotDatabaseFile, MigrationError, type Migration } from '../src/index.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const v1: Migration[] = [{ id: 1, name: 'things', up: 'CREATE TABLE things (id TEXT PRIMARY KEY)' }];
const v2: Migration[] = [...v1, { id: 2, name: 'thing size', up: (db) => db.exec('ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0') }];

describe('store', () => {
  it('opens in WAL mode and applies migrations once, forward only', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'store-')), 'd.sqlite');
    const db = openDatabase(file, { migrations: v1 });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.prepare('INSERT INTO things (id) VALUES (?)').run('a');
    db.close();
    const db2 = openDatabase(file, { migrations: v2 });
    expect(schemaVersion(db2)).toBe(2);
    expect(db2.prepare('SELECT id, size FROM things').all()).toEqual([{ id: 'a', size: 0 }]);
    expect(migrate(db2, v2)).toEqual([]);
    db2.close();
  });

  it('refuses a database written by a newer build', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'store-')), 'd.sqlite');
    openDatabase(file, { migrations: v2 }).close();
    expect(() => openDatabase(file, { migrations: v1 })).toThrow(MigrationError);
  });

  it('rolls back a failing migration entirely', () => {
    const db = openDatabase(':memory:', { migrations: v1 });
    const bad: Migration[] = [...v1, { id: 2, name: 'bad', up: 'CREATE TABLE x (a); SELECT nope FROM missing' }];
    expect(() => migrate(db, bad)).toThrow();
    expect(schemaVersion(db)).toBe(1);
    expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'x'").pluck().get()).toBe(0);
  });
});

describe('snapshotDatabaseFile', () => {
  it('copies a database another connection keeps writing as one consistent snapshot, integrity-checked, without a -wal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'store-snap-'));
    const accounts: Migration[] = [{ id: 1, name: 'ledger', up: 'CREATE TABLE ledger (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad TEXT NOT NULL)' }];
    const db = openDatabase(join(dir, 'live.sqlite'), { migrations: accounts, synchronous: 'NORMAL' });
    const insert = db.prepare('INSERT INTO ledger (id, balance, pad) VALUES (?, ?, ?)');
    db.transaction(() => { for (let i = 0; i < 12000; i++) insert.run(i, 10, 'x'.repeat(500)); })();
    // Transfers between random rows keep the total at 120,000; a torn copy would not.
    const move = db.prepare('UPDATE ledger SET balance = balance + ? WHERE id = ?');
    const transfer = db.transaction((from: number, to: number) => { move.run(-1, from); move.run(1, to); });
    let transfers = 0;
    const writer = setInterval(() => { for (let i = 0; i < 20; i++, transfers++) transfer(Math.floor(Math.random() * 12000), Math.floor(Math.random() * 12000)); }, 0);
    const progress: number[] = [];
    try {
      const res = await snapshotDatabaseFile(join(dir, 'live.sqlite'), join(dir, 'copy.sqlite'), (done) => progress.push(done));
      expect(res.schemaVersion).toBe(1);
      expect(res.pages).toBeGreaterThan(1000);
    } finally {
      clearInterval(writer);
    }
    expect(transfers).toBeGreaterThan(0);
    // Writers restart a stepwise copy; after two restarts the rest goes in one step, so it ends under load.
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.length).toBeLessThan(10);
    const copy = openDatabase(join(dir, 'copy.sqlite'), { migrations: [], readonly: true });
    expect(copy.prepare('SELECT SUM(balance) FROM ledger').pluck().get()).toBe(120_000);
    expect(copy.pragma('journal_mode', { simple: true })).toBe('delete');
    copy.close();
    db.close();
  });
});
