// GET /metrics in Prometheus text format: volumes and snapshots by status, exports, stored chunks.
import type { FastifyInstance } from 'fastify';
import type { Db } from '@mallee/store';

export function scMetrics(db: Db) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/metrics', async (_req, reply) => {
      const volumes = db.prepare('SELECT status, COUNT(*) AS n, COALESCE(SUM(size_gib), 0) AS gib FROM volumes GROUP BY status').all() as { status: string; n: number; gib: number }[];
      const snapshots = db.prepare('SELECT status, COUNT(*) AS n FROM snapshots GROUP BY status').all() as { status: string; n: number }[];
      const chunks = db.prepare("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM chunks WHERE state = 'stored'").get() as { n: number; bytes: number };
      const uploaded = db.prepare('SELECT COALESCE(SUM(uploaded_bytes), 0) FROM snapshots').pluck().get() as number;
      const lastCut = db.prepare('SELECT cut_ms FROM snapshots WHERE cut_ms IS NOT NULL ORDER BY created_at DESC LIMIT 1').pluck().get() as number | undefined;
      const exportsN = db.prepare('SELECT COUNT(*) FROM exports').pluck().get() as number;
      const lines = [
        '# HELP mallee_sc_volumes Volumes on this storage controller by status.',
        '# TYPE mallee_sc_volumes gauge',
        ...volumes.map((v) => `mallee_sc_volumes{status="${v.status}"} ${v.n}`),
        '# HELP mallee_sc_volume_gib Provisioned GiB by volume status.',
        '# TYPE mallee_sc_volume_gib gauge',
        ...volumes.map((v) => `mallee_sc_volume_gib{status="${v.status}"} ${v.gib}`),
        '# HELP mallee_sc_snapshots Snapshots by status.',
        '# TYPE mallee_sc_snapshots gauge',
        ...snapshots.map((s) => `mallee_sc_snapshots{status="${s.status}"} ${s.n}`),
        '# HELP mallee_sc_exports iSCSI targets (volume, initiator) this SC exports.',
        '# TYPE mallee_sc_exports gauge',
        `mallee_sc_exports ${exportsN}`,
        '# HELP mallee_sc_chunks Distinct snapshot chunks stored in Walrus, and their bytes.',
        '# TYPE mallee_sc_chunks gauge',
        `mallee_sc_chunks ${chunks.n}`,
        `mallee_sc_chunk_bytes ${chunks.bytes}`,
        '# HELP mallee_sc_snapshot_uploaded_bytes Bytes the existing snapshots uploaded (the rest were deduplicated).',
        '# TYPE mallee_sc_snapshot_uploaded_bytes gauge',
        `mallee_sc_snapshot_uploaded_bytes ${uploaded}`,
        ...(lastCut !== undefined ? ['# HELP mallee_sc_last_cut_ms Milliseconds the latest point-in-time copy took.', '# TYPE mallee_sc_last_cut_ms gauge', `mallee_sc_last_cut_ms ${lastCut}`] : []),
      ];
      return reply.type('text/plain; version=0.0.4').send(lines.join('\n') + '\n');
    });
  };
}
