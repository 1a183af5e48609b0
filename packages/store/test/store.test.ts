import { describe, it, expect } from 'vitest';
import { openDatabase, migrate, schemaVersion, MigrationError, type Migration } from '../src/index.js';
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
