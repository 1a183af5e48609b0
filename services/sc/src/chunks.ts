// The content-addressed chunk store in Walrus: object <prefix>/chunks/<sha256> holds one chunk, stored
// once however many snapshots use it. The `chunks` table is the index and the reference count; a row
// is written before its object and removed only after the object is deleted, so nothing leaks.
import type { Logger } from 'pino';
import type { Db } from '@mallee/store';
import type { S3Client } from './s3.js';

export type ChunkAction = 'reuse' | 'upload' | 'wait';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ChunkStore {
  constructor(private readonly o: { db: Db; s3: S3Client; prefix: string; log: Logger }) {}

  key(hash: string): string {
    return `${this.o.prefix}/chunks/${hash}`;
  }

  get prefixKey(): string {
    return `${this.o.prefix}/chunks/`;
  }

  /**
   * Record that snapshot `snapshotId` uses chunk `hash` at `idx` (one transaction): reuse a stored
   * chunk, or claim the upload of a new one. A chunk being deleted must be waited for.
   */
  reference(snapshotId: string, idx: number, hash: string, size: number): ChunkAction {
    return this.referenceMany(snapshotId, [{ idx, hash, size }])[0]!;
  }

  /** reference() for a batch of chunks in one transaction (one fsync instead of one per chunk). */
  referenceMany(snapshotId: string, chunks: { idx: number; hash: string; size: number }[]): ChunkAction[] {
    const db = this.o.db;
    const get = db.prepare('SELECT state FROM chunks WHERE hash = ?');
    const inc = db.prepare('UPDATE chunks SET refs = refs + 1 WHERE hash = ?');
    const add = db.prepare("INSERT INTO chunks (hash, size, refs, state) VALUES (?, ?, 1, 'uploading')");
    const use = db.prepare('INSERT INTO snapshot_chunks (snapshot_id, idx, hash) VALUES (?, ?, ?)');
    return db.transaction(() => chunks.map(({ idx, hash, size }): ChunkAction => {
      const row = get.get(hash) as { state: string } | undefined;
      if (row?.state === 'deleting') return 'wait';
      if (row) inc.run(hash);
      else add.run(hash, size);
      use.run(snapshotId, idx, hash);
      return row?.state === 'stored' ? 'reuse' : 'upload';
    }))();
  }

  /** Write the object only (the row says uploading until markStored). */
  async put(hash: string, body: Buffer): Promise<void> {
    await this.o.s3.put(this.o.s3.bucket, this.key(hash), body, hash);
  }

  markStored(hashes: string[]): void {
    const db = this.o.db;
    const mark = db.prepare("UPDATE chunks SET state = 'stored' WHERE hash = ? AND state = 'uploading'");
    db.transaction(() => {
      for (const h of hashes) mark.run(h);
    })();
  }

  async upload(hash: string, body: Buffer): Promise<void> {
    await this.put(hash, body);
    this.markStored([hash]);
  }

  isStored(hash: string): boolean {
    return this.o.db.prepare("SELECT 1 FROM chunks WHERE hash = ? AND state = 'stored'").pluck().get(hash) !== undefined;
  }

  /**
   * Until a chunk being deleted is gone (then it can be uploaded anew). A sweep that Walrus cut short left it
   * deleting with no one to finish it: after a while the waiter sweeps again itself.
   */
  async waitDeleted(hash: string, signal?: AbortSignal): Promise<void> {
    for (let waited = 0; this.o.db.prepare("SELECT 1 FROM chunks WHERE hash = ? AND state = 'deleting'").pluck().get(hash) !== undefined; waited += 20) {
      if (signal?.aborted) throw new Error('snapshot upload cancelled');
      if (waited > 0 && waited % 2000 === 0) await this.sweep().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'deleting unused chunks failed; retrying'));
      await sleep(20);
    }
  }

  /** Drop every chunk reference of a snapshot; chunks nobody uses any more are deleted from Walrus. */
  async release(snapshotId: string): Promise<number> {
    const db = this.o.db;
    const freed = db.transaction(() => {
      const hashes = db.prepare('SELECT hash FROM snapshot_chunks WHERE snapshot_id = ?').pluck().all(snapshotId) as string[];
      const dec = db.prepare('UPDATE chunks SET refs = refs - 1 WHERE hash = ?');
      for (const h of hashes) dec.run(h);
      db.prepare('DELETE FROM snapshot_chunks WHERE snapshot_id = ?').run(snapshotId);
      db.prepare("UPDATE chunks SET state = 'deleting' WHERE refs <= 0").run();
      return db.prepare("SELECT COUNT(*) FROM chunks WHERE state = 'deleting'").pluck().get() as number;
    })();
    await this.sweep();
    return freed;
  }

  /** Delete the objects of chunks marked deleting (also what a crash left half done), one sweep at a time. */
  sweep(): Promise<number> {
    // Two sweeps at once could delete the object of a chunk that was deleted, claimed and uploaded again meanwhile.
    const run = this.sweeps.then(() => this.sweepNow());
    this.sweeps = run.catch(() => undefined);
    return run;
  }

  private sweeps: Promise<unknown> = Promise.resolve();

  private async sweepNow(): Promise<number> {
    const db = this.o.db;
    // Left over by a crash: an upload claimed but no snapshot uses it any more.
    db.prepare("UPDATE chunks SET state = 'deleting' WHERE refs <= 0 AND state <> 'deleting'").run();
    const doomed = db.prepare("SELECT hash FROM chunks WHERE state = 'deleting'").pluck().all() as string[];
    for (const h of doomed) {
      await this.o.s3.delete(this.o.s3.bucket, this.key(h));
      db.prepare("DELETE FROM chunks WHERE hash = ? AND state = 'deleting' AND refs <= 0").run(h);
    }
    if (doomed.length) this.o.log.info({ chunks: doomed.length }, 'deleted chunks no snapshot uses');
    return doomed.length;
  }

  stats(): { chunks: number; bytes: number } {
    return this.o.db.prepare("SELECT COUNT(*) AS chunks, COALESCE(SUM(size), 0) AS bytes FROM chunks WHERE state = 'stored'").get() as { chunks: number; bytes: number };
  }
}
