// The filesystem ObjectStore on its own: listing pagination with delimiters (a common prefix as the
// marker), version listing pagination, overwrite and delete bookkeeping, and start-up recovery.
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { openDaemonDatabase } from '@mallee/store';
import { FsObjectStore } from '../src/store/fs-store.js';
import { migrations } from '../src/store/migrations.js';
import type { Acl, Owner } from '../src/store/types.js';
import { tempDir } from './harness.js';

const owner: Owner = { id: '1', displayName: 'one' };
const acl: Acl = { owner, grants: [{ grantee: { type: 'CanonicalUser', id: '1' }, permission: 'FULL_CONTROL' }] };
const dirs: string[] = [];
const dbs: { open: boolean; close(): void }[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) if (db.open) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dir = tempDir('mallee-walrus-store-')) {
  dirs.push(dir);
  const db = openDaemonDatabase('', join(dir, 'walrus.sqlite'), 'walrus', { migrations });
  dbs.push(db);
  return { dir, db, store: new FsObjectStore({ root: join(dir, 'walrus'), db }) };
}

const put = (store: FsObjectStore, key: string, data = key) => store.putObject('b', key, Readable.from([Buffer.from(data)]), { headers: {}, acl, owner });

describe('FsObjectStore', () => {
  it('pages through delimited listings without repeating or skipping entries', async () => {
    const { store } = open();
    store.createBucket('b', owner, acl, '');
    const keys = ['a', 'b/1', 'b/2', 'b/3', 'c', 'd/x/1', 'd/y', 'e', 'f/'];
    for (const k of keys) await put(store, k);
    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 20; page++) {
      const r = store.listObjects('b', { delimiter: '/', maxKeys: 2, ...(after !== undefined ? { after } : {}) });
      seen.push(...r.objects.map((o) => o.key), ...r.commonPrefixes);
      if (!r.isTruncated) break;
      after = r.nextMarker;
    }
    expect(seen.sort()).toEqual(['a', 'b/', 'c', 'd/', 'e', 'f/']);
    const d = store.listObjects('b', { prefix: 'd/', delimiter: '/', maxKeys: 1000 });
    expect(d.commonPrefixes).toEqual(['d/x/']);
    expect(d.objects.map((o) => o.key)).toEqual(['d/y']);
    expect(store.listObjects('b', { prefix: 'b/', maxKeys: 2, after: 'b/1' }).objects.map((o) => o.key)).toEqual(['b/2', 'b/3']);
  });

  it('pages through versions newest first, resuming inside a key', async () => {
    const { store } = open();
    store.createBucket('b', owner, acl, '');
    store.setBucketVersioning('b', 'Enabled');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await put(store, 'k', `v${i}`)).versionId);
    await put(store, 'z');
    const seen: string[] = [];
    let km: string | undefined;
    let vm: string | undefined;
    for (let page = 0; page < 10; page++) {
      const r = store.listObjectVersions('b', { maxKeys: 2, ...(km ? { keyMarker: km } : {}), ...(vm ? { versionIdMarker: vm } : {}) });
      seen.push(...r.versions.map((v) => `${v.key}@${v.versionId}`));
      if (!r.isTruncated) break;
      km = r.nextKeyMarker;
      vm = r.nextVersionIdMarker;
    }
    expect(seen.slice(0, 5)).toEqual(ids.reverse().map((id) => `k@${id}`));
    expect(seen).toHaveLength(6);
  });

  it('keeps one blob per stored version and frees replaced ones', async () => {
    const { dir, store } = open();
    store.createBucket('b', owner, acl, '');
    await put(store, 'k', 'first');
    await put(store, 'k', 'second');
    await new Promise((r) => setTimeout(r, 50));
    const blobs = () => readdirSync(join(dir, 'walrus', 'data')).flatMap((d) => readdirSync(join(dir, 'walrus', 'data', d)));
    expect(blobs()).toHaveLength(1);
    expect(store.getBucket('b')!.bytes).toBe(6);
    store.deleteObject('b', 'k');
    await new Promise((r) => setTimeout(r, 50));
    expect(blobs()).toHaveLength(0);
    expect(store.getBucket('b')!.bytes).toBe(0);
  });

  it('recovers at start: removes temp files and blobs no row points at', async () => {
    const { dir, db, store } = open();
    store.createBucket('b', owner, acl, '');
    await put(store, 'kept');
    writeFileSync(join(dir, 'walrus', 'tmp', 'deadbeef'), 'partial');
    writeFileSync(join(dir, 'walrus', 'data', 'ab', 'ab' + '0'.repeat(30)), 'orphan');
    db.close();
    const db2 = openDaemonDatabase('', join(dir, 'walrus.sqlite'), 'walrus', { migrations });
    dbs.push(db2);
    const again = new FsObjectStore({ root: join(dir, 'walrus'), db: db2 });
    expect(again.recover()).toEqual({ tempFiles: 1, orphanBlobs: 1 });
    const info = again.getObjectInfo('b', 'kept');
    const chunks: Buffer[] = [];
    for await (const c of again.openObject(info)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('kept');
  });

  it('keeps a completed multipart object as its part blobs: ranges across parts, recovery keeps them, delete frees them', async () => {
    const { dir, db, store } = open();
    store.createBucket('b', owner, acl, '');
    const five = 5 * 1024 * 1024;
    const data = Buffer.alloc(2 * five + 100);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const upload = store.createMultipartUpload('b', 'mp', { headers: {}, acl, owner });
    const parts = [];
    for (let n = 0; n < 3; n++) parts.push(await store.putObjectPart(upload, n + 1, Readable.from([data.subarray(n * five, (n + 1) * five)]), {}));
    // Part 2 uploaded again: the replaced blob goes, the new one is used.
    parts[1] = await store.putObjectPart(upload, 2, Readable.from([data.subarray(five, 2 * five)]), {});
    const info = await store.completeMultipartUpload(upload, parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag })));
    expect(info.size).toBe(data.length);
    const read = async (range?: { start: number; end: number }) => {
      const chunks: Buffer[] = [];
      for await (const c of store.openObject(info, range)) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };
    expect((await read()).equals(data)).toBe(true);
    expect((await read({ start: five - 3, end: five + 2 })).equals(data.subarray(five - 3, five + 3))).toBe(true);
    expect((await read({ start: 2 * five + 10, end: 2 * five + 99 })).equals(data.subarray(2 * five + 10))).toBe(true);
    const blobs = () => readdirSync(join(dir, 'walrus', 'data')).flatMap((d) => readdirSync(join(dir, 'walrus', 'data', d)));
    await new Promise((r) => setTimeout(r, 50));
    expect(blobs()).toHaveLength(3);
    expect(store.recover()).toEqual({ tempFiles: 0, orphanBlobs: 0 });
    expect(store.getBucket('b')!.bytes).toBe(data.length);
    store.deleteObject('b', 'mp');
    await new Promise((r) => setTimeout(r, 50));
    expect(blobs()).toHaveLength(0);
    expect(db.prepare('SELECT COUNT(*) FROM object_segments').pluck().get()).toBe(0);
  });
});
