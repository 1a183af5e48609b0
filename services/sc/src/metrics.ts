// The sc's gauges on its /metrics (with the request counts and latencies every daemon has): volumes
// and snapshots by status, provisioned GiB, exports, stored chunks and their bytes.
import type { Db } from '@mallee/store';
import type { DaemonMetrics } from '@mallee/telemetry';

export function scMetrics(metrics: DaemonMetrics, db: Db): DaemonMetrics {
  const volumes = () => db.prepare('SELECT status, COUNT(*) AS n, COALESCE(SUM(size_gib), 0) AS gib FROM volumes GROUP BY status').all() as { status: string; n: number; gib: number }[];
  const chunks = () => db.prepare("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM chunks WHERE state = 'stored'").get() as { n: number; bytes: number };
  metrics.gauge('mallee_sc_volumes', 'Volumes on this storage controller by status.', ['status'], () => volumes().map((v) => [{ status: v.status }, v.n]));
  metrics.gauge('mallee_sc_volume_gib', 'Provisioned GiB by volume status.', ['status'], () => volumes().map((v) => [{ status: v.status }, v.gib]));
  metrics.gauge('mallee_sc_snapshots', 'Snapshots by status.', ['status'], () =>
    (db.prepare('SELECT status, COUNT(*) AS n FROM snapshots GROUP BY status').all() as { status: string; n: number }[]).map((s) => [{ status: s.status }, s.n]));
  metrics.gauge('mallee_sc_exports', 'iSCSI targets (volume, initiator) this SC exports.', [], () => [[{}, db.prepare('SELECT COUNT(*) FROM exports').pluck().get() as number]]);
  metrics.gauge('mallee_sc_chunks', 'Distinct snapshot chunks stored in Walrus.', [], () => [[{}, chunks().n]]);
  metrics.gauge('mallee_sc_chunk_bytes', 'Bytes of the distinct snapshot chunks stored in Walrus.', [], () => [[{}, chunks().bytes]]);
  metrics.gauge('mallee_sc_snapshot_uploaded_bytes', 'Bytes the existing snapshots uploaded (the rest were deduplicated).', [], () => [[{}, db.prepare('SELECT COALESCE(SUM(uploaded_bytes), 0) FROM snapshots').pluck().get() as number]]);
  metrics.gauge('mallee_sc_last_cut_ms', 'Milliseconds the latest point-in-time copy took.', [], () => {
    const last = db.prepare('SELECT cut_ms FROM snapshots WHERE cut_ms IS NOT NULL ORDER BY created_at DESC LIMIT 1').pluck().get() as number | undefined;
    return last === undefined ? [] : [[{}, last]];
  });
  return metrics;
}
