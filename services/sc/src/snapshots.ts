// Snapshots into Walrus, incremental and content-addressed: the point-in-time cut is read in fixed-size
// chunks; all-zero chunks are skipped, every other chunk is hashed (SHA-256) and uploaded only when no
// snapshot of this SC stored that content before (so unchanged chunks since the parent cost nothing);
// a manifest object lists the chunks. Restores reassemble a volume from any SC's manifest.
// On RBD (backend.diffs) the cut is an RBD snapshot and what is uploaded is `rbd export-diff` since the
// previous snapshot, cut into chunks of the same content-addressed store; the manifest lists the whole
// chain of diffs back to a full one, and the snapshot holds references to every chunk of that chain, so
// deleting any snapshot frees only chunks no other snapshot's chain uses.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Db } from '@mallee/store';
import { WireError, type sc } from '@mallee/wire';
import type { DiffSnapshots, RbdLocation, VolumeBackend } from './backends/index.js';
import type { ChunkStore } from './chunks.js';
import { S3Error, type S3Client } from './s3.js';

const GiB = 1024 ** 3;

export interface SnapshotRow {
  snapshot_id: string; volume_id: string; size_gib: number; status: 'pending' | 'completed' | 'failed' | 'deleting';
  consistency: sc.SnapshotConsistency; parent_id: string | null; source_id: string | null; chunk_size: number;
  cut_path: string | null; cut_ms: number | null; progress: number; uploaded_bytes: number; uploaded_chunks: number;
  reused_chunks: number; reason: string | null; created_at: string; completed_at: string | null;
}

export interface Manifest {
  format: 'mallee-snapshot-1';
  snapshotId: string;
  volumeId: string;
  sizeBytes: number;
  chunkSize: number;
  /** Key prefix of the chunk objects in the same bucket. */
  chunkPrefix: string;
  /** [index, sha256] of every non-zero chunk; the others are zero. */
  chunks: [number, string][];
  parentSnapshotId?: string;
  consistency: sc.SnapshotConsistency;
  createdAt: string;
}

/** One `rbd export-diff` stream, stored as chunks in order. */
export interface DiffSegment {
  snapshotId: string;
  fromSnapshotId?: string;
  bytes: number;
  chunks: string[];
}

/** A snapshot of an RBD volume: import the segments in order (or clone `source` while it exists). */
export interface RbdManifest {
  format: 'mallee-rbd-diff-1';
  snapshotId: string;
  volumeId: string;
  sizeBytes: number;
  chunkSize: number;
  chunkPrefix: string;
  source: RbdLocation;
  segments: DiffSegment[];
  parentSnapshotId?: string;
  consistency: sc.SnapshotConsistency;
  createdAt: string;
}

export interface SnapshotEngineOptions {
  db: Db;
  backend: VolumeBackend;
  s3: S3Client;
  chunks: ChunkStore;
  prefix: string;
  chunkSize: number;
  log: Logger;
  /** Parallel chunk uploads/downloads. */
  concurrency?: number;
  /** How long an upload (or a restore's read) keeps retrying while Walrus is unreachable or answers 5xx (default 10 min). */
  retryForMs?: number;
}

/** Walrus down or restarting (unreachable, 500/502/503/504), as opposed to an answer that retrying cannot change (4xx, 507 full). */
function walrusTransient(err: unknown): boolean {
  return err instanceof S3Error && [500, 502, 503, 504].includes(err.status);
}

/** Runs fn over 0..n-1 with at most `limit` in flight, in order of start; stops at the first error or abort. */
async function forEachIndex(n: number, limit: number, signal: AbortSignal | undefined, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < n && failed === undefined && !signal?.aborted) {
      const i = next++;
      try {
        await fn(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  if (failed !== undefined) throw failed;
  if (signal?.aborted) throw new Error('snapshot upload cancelled');
}

/**
 * A snapshot's chunk references copied to another: each chunk's refs grow by the rows naming it (a chunk
 * may hold the same content at several indexes; release() takes one per row).
 */
function addRefsOf(db: Db, snapshotId: string): void {
  db.prepare('UPDATE chunks SET refs = refs + (SELECT COUNT(*) FROM snapshot_chunks s WHERE s.snapshot_id = ? AND s.hash = chunks.hash) WHERE hash IN (SELECT hash FROM snapshot_chunks WHERE snapshot_id = ?)').run(snapshotId, snapshotId);
}

export function isZero(buf: Buffer): boolean {
  // 8 bytes at a time through a BigInt64 view would be faster; compare() against a zero page is simple and fast enough.
  for (let off = 0; off < buf.length; off += ZERO.length) {
    const end = Math.min(buf.length, off + ZERO.length);
    if (buf.compare(ZERO, 0, end - off, off, end) !== 0) return false;
  }
  return true;
}
const ZERO = Buffer.alloc(64 * 1024);

export class SnapshotEngine {
  private readonly tasks = new Map<string, { done: Promise<void>; abort: AbortController }>();
  private readonly progress = new Map<string, number>();
  /** Aborted by stop(): ends the pauses of restores waiting for Walrus. */
  private readonly stopping = new AbortController();

  constructor(private readonly o: SnapshotEngineOptions) {}

  manifestKey(snapshotId: string): string {
    return `${this.o.prefix}/manifests/${snapshotId}.json`;
  }

  row(snapshotId: string): SnapshotRow | undefined {
    return this.o.db.prepare('SELECT * FROM snapshots WHERE snapshot_id = ?').get(snapshotId) as SnapshotRow | undefined;
  }

  rows(): SnapshotRow[] {
    return this.o.db.prepare("SELECT * FROM snapshots WHERE status <> 'deleting' ORDER BY created_at").all() as SnapshotRow[];
  }

  view(r: SnapshotRow): sc.ScSnapshot {
    return {
      snapshotId: r.snapshot_id,
      volumeId: r.volume_id,
      status: r.status === 'deleting' ? 'failed' : r.status,
      progress: Math.round((this.progress.get(r.snapshot_id) ?? r.progress) * 10) / 10,
      sizeGiB: r.size_gib,
      location: { bucket: this.o.s3.bucket, manifestKey: this.manifestKey(r.snapshot_id) },
      consistency: r.consistency,
      ...(r.parent_id ? { parentSnapshotId: r.parent_id } : {}),
      ...(r.cut_ms !== null ? { cutMs: r.cut_ms } : {}),
      uploadedBytes: r.uploaded_bytes,
      uploadedChunks: r.uploaded_chunks,
      reusedChunks: r.reused_chunks,
      ...(r.reason ? { reason: r.reason } : {}),
      createdAt: r.created_at,
      ...(r.completed_at ? { completedAt: r.completed_at } : {}),
    };
  }

  /** Take the cut now (the caller holds the guest's I/O meanwhile) and upload in the background. */
  async create(snapshotId: string, volumeId: string, sizeGiB: number, consistency: sc.SnapshotConsistency): Promise<SnapshotRow> {
    const known = this.row(snapshotId);
    if (known) return known;
    const db = this.o.db;
    const parent = db.prepare("SELECT snapshot_id FROM snapshots WHERE volume_id = ? AND status = 'completed' ORDER BY created_at DESC LIMIT 1").pluck().get(volumeId) as string | undefined;
    // The row first: a crash during the cut leaves a pending row without a cut, which restart fails cleanly.
    db.prepare(`INSERT INTO snapshots (snapshot_id, volume_id, size_gib, status, consistency, parent_id, chunk_size, created_at)
      VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)`).run(snapshotId, volumeId, sizeGiB, consistency, parent ?? null, this.o.chunkSize, new Date().toISOString());
    const started = process.hrtime.bigint();
    let cut: string;
    try {
      cut = await this.o.backend.cut(volumeId, snapshotId);
    } catch (err) {
      const message = commandError(err);
      this.fail(snapshotId, `the point-in-time copy failed: ${message}`);
      if (noSpace(message)) {
        throw new WireError('InsufficientStorage', `the storage controller has no room for the point-in-time copy of ${volumeId} (${message}); free space in its home (delete volumes, snapshots or other files there) and retry`, 507);
      }
      throw new WireError('SnapshotFailed', `could not copy ${volumeId}: ${message}`, 500);
    }
    const cutMs = Number(process.hrtime.bigint() - started) / 1e6;
    db.prepare('UPDATE snapshots SET cut_path = ?, cut_ms = ? WHERE snapshot_id = ?').run(cut, cutMs, snapshotId);
    this.o.log.info({ snapshotId, volumeId, cutMs, consistency, parent }, 'snapshot cut taken; uploading');
    this.startUpload(snapshotId);
    return this.row(snapshotId)!;
  }

  /** A copy shares its source's chunks (their reference counts grow) under a manifest of its own. */
  async copy(snapshotId: string, sourceId: string): Promise<SnapshotRow> {
    const known = this.row(snapshotId);
    if (known) return known;
    const src = this.row(sourceId);
    if (!src || src.status === 'deleting' || src.status === 'failed') throw new WireError('InvalidSnapshot.NotFound', `snapshot ${sourceId} is not held by this storage controller`, 404);
    if (src.status !== 'completed') throw new WireError('IncorrectState', `snapshot ${sourceId} is ${src.status}; copy it once it is completed`, 409);
    const db = this.o.db;
    db.transaction(() => {
      db.prepare(`INSERT INTO snapshots (snapshot_id, volume_id, size_gib, status, consistency, source_id, chunk_size, progress, created_at)
        VALUES (?, ?, ?, 'pending', ?, ?, ?, 0, ?)`).run(snapshotId, src.volume_id, src.size_gib, src.consistency, sourceId, src.chunk_size, new Date().toISOString());
      db.prepare('INSERT INTO snapshot_chunks (snapshot_id, idx, hash) SELECT ?, idx, hash FROM snapshot_chunks WHERE snapshot_id = ?').run(snapshotId, sourceId);
      addRefsOf(db, sourceId);
    })();
    this.startUpload(snapshotId);
    await this.tasks.get(snapshotId)?.done.catch(() => undefined);
    return this.row(snapshotId)!;
  }

  private startUpload(snapshotId: string): void {
    if (this.tasks.has(snapshotId)) return;
    const abort = new AbortController();
    const done = this.uploadRetrying(snapshotId, abort.signal)
      .catch((err: unknown) => {
        if (abort.signal.aborted) return;
        this.o.log.error({ snapshotId, err }, 'snapshot upload failed');
        this.fail(snapshotId, (err as Error).message);
      })
      .finally(() => {
        this.tasks.delete(snapshotId);
        this.progress.delete(snapshotId);
      });
    this.tasks.set(snapshotId, { done, abort });
  }

  /**
   * Walrus unreachable or failing for a while (killed, restarting) does not fail an acknowledged snapshot:
   * the upload starts again after a pause (chunks already stored are skipped) until `retryForMs` has passed.
   * A delete aborts the pause at once.
   */
  private async uploadRetrying(snapshotId: string, signal: AbortSignal): Promise<void> {
    const giveUpAt = Date.now() + (this.o.retryForMs ?? 600_000);
    for (let pause = 250; ; pause = Math.min(pause * 2, 5000)) {
      try {
        await this.upload(snapshotId, signal);
        return;
      } catch (err) {
        if (signal.aborted || !walrusTransient(err) || Date.now() + pause > giveUpAt) throw err;
        this.o.log.warn({ snapshotId, err: (err as Error).message, retryInMs: pause }, 'snapshot upload interrupted by Walrus; retrying');
        await sleep(pause, undefined, { signal }).catch(() => undefined);
        if (signal.aborted) throw new Error('snapshot upload cancelled');
      }
    }
  }

  private async upload(snapshotId: string, signal: AbortSignal): Promise<void> {
    const r = this.row(snapshotId)!;
    const db = this.o.db;
    const size = r.size_gib * GiB;
    const diffs = this.o.backend.diffs;
    if (diffs && (r.source_id === null || (await this.manifestOf(r.source_id)).format === 'mallee-rbd-diff-1')) {
      await this.uploadDiff(r, diffs, signal);
      return;
    }
    if (r.source_id === null) {
      if (!r.cut_path) throw new Error('no point-in-time copy to upload');
      const fh = await open(r.cut_path, 'r');
      try {
        await this.uploadChunks(r, fh, size, signal);
      } finally {
        await fh.close();
      }
    }
    const chunks = db.prepare('SELECT idx, hash FROM snapshot_chunks WHERE snapshot_id = ? ORDER BY idx').raw().all(snapshotId) as [number, string][];
    const manifest: Manifest = {
      format: 'mallee-snapshot-1',
      snapshotId,
      volumeId: r.volume_id,
      sizeBytes: size,
      chunkSize: r.chunk_size,
      chunkPrefix: this.o.chunks.prefixKey,
      chunks,
      ...(r.parent_id ? { parentSnapshotId: r.parent_id } : {}),
      consistency: r.consistency,
      createdAt: r.created_at,
    };
    if (signal.aborted) throw new Error('snapshot upload cancelled');
    await this.o.s3.put(this.o.s3.bucket, this.manifestKey(snapshotId), Buffer.from(JSON.stringify(manifest)));
    db.prepare("UPDATE snapshots SET status = 'completed', progress = 100, completed_at = ?, cut_path = NULL WHERE snapshot_id = ? AND status = 'pending'")
      .run(new Date().toISOString(), snapshotId);
    if (r.cut_path) await this.o.backend.dropCut(snapshotId, r.cut_path);
    const done = this.row(snapshotId)!;
    this.o.log.info({ snapshotId, chunks: chunks.length, uploadedChunks: done.uploaded_chunks, uploadedBytes: done.uploaded_bytes, reusedChunks: done.reused_chunks }, 'snapshot completed');
  }

  private async manifestOf(snapshotId: string): Promise<Manifest | RbdManifest> {
    return JSON.parse((await this.o.s3.get(this.o.s3.bucket, this.manifestKey(snapshotId))).toString('utf8')) as Manifest | RbdManifest;
  }

  /**
   * RBD: the chain of the parent (its chunks referenced by this snapshot too), plus `rbd export-diff` since the
   * parent's RBD snapshot cut into chunks. A copy (source_id) takes its source's chain whole. Started over
   * after a restart: the diff of two snapshots is the same stream again, and its stored chunks are reused.
   */
  private async uploadDiff(r: SnapshotRow, diffs: DiffSnapshots, signal: AbortSignal): Promise<void> {
    const db = this.o.db;
    const snapshotId = r.snapshot_id;
    await this.o.chunks.release(snapshotId);
    const base = r.source_id ?? r.parent_id;
    // The base's chunks become this snapshot's too, in one transaction while the base is known completed.
    const inherited = base !== null && db.transaction(() => {
      const b = this.row(base);
      if (b?.status !== 'completed') return false;
      db.prepare('INSERT INTO snapshot_chunks (snapshot_id, idx, hash) SELECT ?, idx, hash FROM snapshot_chunks WHERE snapshot_id = ?').run(snapshotId, base);
      addRefsOf(db, base);
      return true;
    })();
    let segments: DiffSegment[] = [];
    let source: RbdLocation;
    if (inherited) {
      const m = await this.manifestOf(base);
      if (m.format !== 'mallee-rbd-diff-1') throw new Error(`snapshot ${base} is not a snapshot of an RBD volume`);
      segments = m.segments;
      source = m.source;
    }
    if (r.source_id === null) {
      if (!r.cut_path) throw new Error('no point-in-time copy to upload');
      source = diffs.location(r.cut_path);
      // Incremental only from a parent whose RBD snapshot is still on the volume (else a full diff, a new chain).
      const from = inherited && r.parent_id && segments.length && (await diffs.hasCut(`${source.pool}/${source.image}@${r.parent_id}`)) ? r.parent_id : undefined;
      if (!from && inherited) {
        await this.o.chunks.release(snapshotId);
        segments = [];
      }
      const total = Math.max(1, await diffs.changedBytes(r.cut_path, from));
      let idx = db.prepare('SELECT COALESCE(MAX(idx) + 1, 0) FROM snapshot_chunks WHERE snapshot_id = ?').pluck().get(snapshotId) as number;
      const seg: DiffSegment = { snapshotId, ...(from ? { fromSnapshotId: from } : {}), bytes: 0, chunks: [] };
      let uploadedBytes = 0;
      let uploadedChunks = 0;
      let reused = 0;
      const count = db.prepare('UPDATE snapshots SET uploaded_bytes = ?, uploaded_chunks = ?, reused_chunks = ?, progress = ? WHERE snapshot_id = ?');
      const flush = async (batch: Buffer[]) => {
        const entries = batch.map((buf) => ({ idx: idx++, hash: createHash('sha256').update(buf).digest('hex'), size: buf.length, buf }));
        const actions = this.o.chunks.referenceMany(snapshotId, entries);
        for (let k = 0; k < entries.length; k++) {
          while (actions[k] === 'wait') {
            await this.o.chunks.waitDeleted(entries[k]!.hash, signal);
            actions[k] = this.o.chunks.reference(snapshotId, entries[k]!.idx, entries[k]!.hash, entries[k]!.size);
          }
        }
        const unique = [...new Map(entries.filter((_, k) => actions[k] === 'upload').map((c) => [c.hash, c])).values()];
        await forEachIndex(unique.length, this.o.concurrency ?? 8, signal, async (k) => this.o.chunks.put(unique[k]!.hash, unique[k]!.buf));
        this.o.chunks.markStored(unique.map((c) => c.hash));
        for (const c of unique) uploadedBytes += c.size;
        uploadedChunks += unique.length;
        reused += entries.length - unique.length;
        for (const e of entries) seg.chunks.push(e.hash);
        const pct = Math.min(99, (seg.bytes / total) * 99);
        this.progress.set(snapshotId, pct);
        count.run(uploadedBytes, uploadedChunks, reused, pct, snapshotId);
      };
      // The stream cut into chunk_size pieces, WINDOW of them referenced and uploaded at a time.
      const WINDOW = 16;
      let batch: Buffer[] = [];
      let pending: Buffer[] = [];
      let pendingLen = 0;
      for await (const piece of diffs.exportDiff(r.cut_path, from, signal)) {
        pending.push(piece);
        pendingLen += piece.length;
        seg.bytes += piece.length;
        while (pendingLen >= r.chunk_size) {
          const all = Buffer.concat(pending, pendingLen);
          batch.push(all.subarray(0, r.chunk_size));
          pending = [all.subarray(r.chunk_size)];
          pendingLen -= r.chunk_size;
          if (batch.length >= WINDOW) {
            await flush(batch);
            batch = [];
          }
        }
      }
      if (pendingLen) batch.push(Buffer.concat(pending, pendingLen));
      if (batch.length) await flush(batch);
      segments = [...segments, seg];
      count.run(uploadedBytes, uploadedChunks, reused, 99, snapshotId);
    }
    if (signal.aborted) throw new Error('snapshot upload cancelled');
    const manifest: RbdManifest = {
      format: 'mallee-rbd-diff-1',
      snapshotId,
      volumeId: r.volume_id,
      sizeBytes: r.size_gib * GiB,
      chunkSize: r.chunk_size,
      chunkPrefix: this.o.chunks.prefixKey,
      source: source!,
      segments,
      ...(r.parent_id ? { parentSnapshotId: r.parent_id } : {}),
      consistency: r.consistency,
      createdAt: r.created_at,
    };
    await this.o.s3.put(this.o.s3.bucket, this.manifestKey(snapshotId), Buffer.from(JSON.stringify(manifest)));
    // The RBD snapshot stays (cut_path kept): the next snapshot's diff base, and what restores clone.
    db.prepare("UPDATE snapshots SET status = 'completed', progress = 100, completed_at = ? WHERE snapshot_id = ? AND status = 'pending'")
      .run(new Date().toISOString(), snapshotId);
    const done = this.row(snapshotId)!;
    this.o.log.info({ snapshotId, segments: segments.length, diffBytes: segments.at(-1)?.bytes, uploadedChunks: done.uploaded_chunks, uploadedBytes: done.uploaded_bytes, reusedChunks: done.reused_chunks }, 'snapshot completed');
  }

  private async uploadChunks(r: SnapshotRow, fh: FileHandle, size: number, signal: AbortSignal): Promise<void> {
    const db = this.o.db;
    const snapshotId = r.snapshot_id;
    const n = Math.ceil(size / r.chunk_size);
    // Resuming after a restart: the chunks already recorded, and whether their objects were written.
    const recorded = new Map((db.prepare('SELECT idx, hash FROM snapshot_chunks WHERE snapshot_id = ?').raw().all(snapshotId) as [number, string][]));
    // Chunks with no allocated byte are zero: skipped without reading them.
    const ranges = r.cut_path ? await this.o.backend.allocated(r.cut_path) : undefined;
    const mayHoldData = (i: number) => {
      if (!ranges) return true;
      const start = i * r.chunk_size;
      const end = start + r.chunk_size;
      return ranges.some(([a, b]) => a < end && b > start);
    };
    let processed = 0;
    let uploadedBytes = r.uploaded_bytes;
    let uploadedChunks = r.uploaded_chunks;
    let reused = r.reused_chunks;
    const count = db.prepare('UPDATE snapshots SET uploaded_bytes = ?, uploaded_chunks = ?, reused_chunks = ?, progress = ? WHERE snapshot_id = ?');
    // Windows of chunks: read and hash them, record their references in one transaction (before any
    // object is written), upload the new ones in parallel, mark them stored in one transaction.
    const WINDOW = 32;
    for (let first = 0; first < n; first += WINDOW) {
      if (signal.aborted) throw new Error('snapshot upload cancelled');
      const batch: { idx: number; hash: string; size: number; buf: Buffer; known: boolean }[] = [];
      for (let i = first; i < Math.min(n, first + WINDOW); i++) {
        const len = Math.min(r.chunk_size, size - i * r.chunk_size);
        const known = recorded.get(i);
        if (known && this.o.chunks.isStored(known)) continue;
        if (!known && !mayHoldData(i)) continue;
        const buf = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(buf, 0, len, i * r.chunk_size);
        if (bytesRead < len) buf.fill(0, bytesRead);
        if (!known && isZero(buf)) continue;
        batch.push({ idx: i, hash: known ?? createHash('sha256').update(buf).digest('hex'), size: len, buf, known: known !== undefined });
      }
      // Recorded before a restart but not yet stored: upload again. New ones: reference them now.
      const fresh = batch.filter((c) => !c.known);
      const actions = new Map<number, string>(batch.filter((c) => c.known).map((c) => [c.idx, 'upload']));
      this.o.chunks.referenceMany(snapshotId, fresh).forEach((a, k) => actions.set(fresh[k]!.idx, a));
      for (const c of fresh) {
        // A chunk being deleted right now: wait for it to go, then claim it again (rare).
        while (actions.get(c.idx) === 'wait') {
          await this.o.chunks.waitDeleted(c.hash, signal);
          actions.set(c.idx, this.o.chunks.reference(snapshotId, c.idx, c.hash, c.size));
        }
      }
      const uploads = batch.filter((c) => actions.get(c.idx) === 'upload');
      // One object per content, even when the window holds the same chunk twice.
      const unique = [...new Map(uploads.map((c) => [c.hash, c])).values()];
      await forEachIndex(unique.length, this.o.concurrency ?? 8, signal, async (k) => this.o.chunks.put(unique[k]!.hash, unique[k]!.buf));
      this.o.chunks.markStored(unique.map((c) => c.hash));
      for (const c of unique) uploadedBytes += c.size;
      uploadedChunks += unique.length;
      reused += batch.length - unique.length;
      processed = Math.min(n, first + WINDOW);
      const pct = (processed / n) * 99;
      this.progress.set(snapshotId, pct);
      count.run(uploadedBytes, uploadedChunks, reused, pct, snapshotId);
    }
    count.run(uploadedBytes, uploadedChunks, reused, 99, snapshotId);
  }

  private fail(snapshotId: string, reason: string): void {
    this.o.db.prepare("UPDATE snapshots SET status = 'failed', reason = ? WHERE snapshot_id = ? AND status = 'pending'").run(reason, snapshotId);
    const r = this.row(snapshotId);
    if (r?.cut_path) void this.o.backend.dropCut(snapshotId, r.cut_path).catch(() => undefined);
    // A failed snapshot holds no chunks: what it uploaded is released (and deleted if nobody else uses it).
    void this.o.chunks.release(snapshotId).catch((err: unknown) => this.o.log.error({ err, snapshotId }, 'releasing the chunks of a failed snapshot failed'));
  }

  async delete(snapshotId: string): Promise<boolean> {
    const r = this.row(snapshotId);
    if (!r) return false;
    this.o.db.prepare("UPDATE snapshots SET status = 'deleting' WHERE snapshot_id = ?").run(snapshotId);
    const task = this.tasks.get(snapshotId);
    if (task) {
      // No upload may finish after its chunks were released: that object would never be deleted.
      task.abort.abort();
      await task.done;
    }
    await this.finishDelete(r);
    return true;
  }

  private async finishDelete(r: SnapshotRow): Promise<void> {
    await this.o.chunks.release(r.snapshot_id);
    await this.o.s3.delete(this.o.s3.bucket, this.manifestKey(r.snapshot_id));
    if (r.cut_path) await this.o.backend.dropCut(r.snapshot_id, r.cut_path).catch(() => undefined);
    this.o.db.prepare('DELETE FROM snapshots WHERE snapshot_id = ?').run(r.snapshot_id);
    this.o.log.info({ snapshotId: r.snapshot_id }, 'snapshot deleted');
  }

  /** After a restart: finish deletions, resume uploads whose cut survived, fail the rest, sweep chunks. */
  async recover(): Promise<void> {
    const db = this.o.db;
    for (const r of db.prepare("SELECT * FROM snapshots WHERE status = 'deleting'").all() as SnapshotRow[]) await this.finishDelete(r);
    for (const r of db.prepare("SELECT * FROM snapshots WHERE status = 'failed'").all() as SnapshotRow[]) await this.o.chunks.release(r.snapshot_id);
    await this.o.chunks.sweep();
    for (const r of db.prepare("SELECT * FROM snapshots WHERE status = 'pending'").all() as SnapshotRow[]) {
      const diffs = this.o.backend.diffs;
      const cutOk = r.cut_path !== null && (diffs
        ? await diffs.hasCut(r.cut_path)
        : await open(r.cut_path, 'r').then(async (f) => { await f.close(); return true; }, () => false));
      if (r.source_id !== null || cutOk) {
        this.o.log.info({ snapshotId: r.snapshot_id }, 'resuming a snapshot upload interrupted by a restart');
        this.startUpload(r.snapshot_id);
      } else {
        this.fail(r.snapshot_id, 'the storage controller stopped while taking the point-in-time copy');
      }
    }
  }

  /** Restore: write every chunk of a manifest (this SC's or another zone's) into a new volume. */
  async restore(location: sc.SnapshotLocation, volumeId: string, sizeGiB: number, onProgress: (pct: number) => void): Promise<void> {
    const giveUpAt = Date.now() + (this.o.retryForMs ?? 600_000);
    const get = (key: string) => this.getRetrying(location.bucket, key, volumeId, giveUpAt);
    const any = JSON.parse((await get(location.manifestKey)).toString('utf8')) as Manifest | RbdManifest;
    if (any.format === 'mallee-rbd-diff-1') return this.restoreDiffs(any, volumeId, sizeGiB, onProgress, get);
    const manifest = any;
    if (manifest.format !== 'mallee-snapshot-1') throw new Error(`unknown snapshot manifest format ${String(manifest.format)}`);
    if (manifest.sizeBytes > sizeGiB * GiB) throw new Error(`snapshot of ${manifest.sizeBytes} bytes does not fit a ${sizeGiB} GiB volume`);
    await this.o.backend.createFilled(volumeId, sizeGiB * GiB, async (fh) => {
      let done = 0;
      await forEachIndex(manifest.chunks.length, this.o.concurrency ?? 4, undefined, async (n) => {
        const [idx, hash] = manifest.chunks[n]!;
        const buf = await get(`${manifest.chunkPrefix}${hash}`);
        if (createHash('sha256').update(buf).digest('hex') !== hash) throw new Error(`chunk ${idx} of ${manifest.snapshotId} does not match its hash`);
        await fh.write(buf, 0, buf.length, idx * manifest.chunkSize);
        onProgress((++done / manifest.chunks.length) * 100);
      });
    });
  }

  /** A snapshot of an RBD volume: cloned from its RBD snapshot where this SC's pool still has it, else its diffs imported in order. */
  private async restoreDiffs(manifest: RbdManifest, volumeId: string, sizeGiB: number, onProgress: (pct: number) => void, get: (key: string) => Promise<Buffer>): Promise<void> {
    const diffs = this.o.backend.diffs;
    if (!diffs) throw new Error(`snapshot ${manifest.snapshotId} is of an RBD volume: it restores only on a storage controller with SC_BACKEND=ceph-rbd`);
    if (manifest.sizeBytes > sizeGiB * GiB) throw new Error(`snapshot of ${manifest.sizeBytes} bytes does not fit a ${sizeGiB} GiB volume`);
    const total = manifest.segments.reduce((a, s) => a + s.chunks.length, 0);
    let done = 0;
    // Chunks fetched a few ahead of the one written (Walrus latency overlaps import-diff's writes).
    async function* segment(seg: DiffSegment): AsyncGenerator<Buffer> {
      const fetch = async (hash: string) => {
        const buf = await get(`${manifest.chunkPrefix}${hash}`);
        if (createHash('sha256').update(buf).digest('hex') !== hash) throw new Error(`a chunk of ${manifest.snapshotId} does not match its hash`);
        return buf;
      };
      const ahead: Promise<Buffer>[] = [];
      for (let i = 0; i < seg.chunks.length; i++) {
        while (ahead.length < 4 && i + ahead.length < seg.chunks.length) ahead.push(fetch(seg.chunks[i + ahead.length]!));
        const buf = await ahead.shift()!;
        onProgress((++done / Math.max(1, total)) * 100);
        yield buf;
      }
    }
    const how = await diffs.restoreFrom(volumeId, sizeGiB * GiB, manifest.source, manifest.segments.map((s) => segment(s)));
    this.o.log.info({ volumeId, snapshotId: manifest.snapshotId, how, segments: manifest.segments.length }, how === 'clone' ? 'volume cloned from its RBD snapshot' : 'volume imported from the snapshot\'s diffs');
  }

  /**
   * A restore's read while Walrus is away for a while (killed, restarting) is tried again after a pause, as an
   * upload is, instead of failing a volume whose create was acknowledged; until `giveUpAt` or stop().
   */
  private async getRetrying(bucket: string, key: string, volumeId: string, giveUpAt: number): Promise<Buffer> {
    const signal = this.stopping.signal;
    for (let pause = 250; ; pause = Math.min(pause * 2, 5000)) {
      try {
        return await this.o.s3.get(bucket, key);
      } catch (err) {
        if (signal.aborted || !walrusTransient(err) || Date.now() + pause > giveUpAt) throw err;
        this.o.log.warn({ volumeId, key, err: (err as Error).message, retryInMs: pause }, 'restore read interrupted by Walrus; retrying');
        await sleep(pause, undefined, { signal }).catch(() => undefined);
        if (signal.aborted) throw err;
      }
    }
  }

  /** Uploads in flight (for a clean stop: they resume at the next start); restores waiting for Walrus give up. */
  async stop(): Promise<void> {
    this.stopping.abort();
    for (const t of this.tasks.values()) t.abort.abort();
    await Promise.allSettled([...this.tasks.values()].map((t) => t.done));
  }
}

/** What a failed command said (its stderr, not the "Command failed: …" line), else the error's message. */
function commandError(err: unknown): string {
  const e = err as Error & { stderr?: string };
  return (e.stderr ?? '').trim() || e.message;
}

/** The disk (or the volume group) is full: ENOSPC from the kernel, cp's or LVM's words for it. */
export function noSpace(message: string): boolean {
  return /ENOSPC|No space left on device|insufficient free space/i.test(message);
}
