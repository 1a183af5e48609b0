// Walrus's gauges on its Prometheus text at /_mallee/metrics (not /metrics: that path is the bucket
// "metrics"), beside the S3 request counts and latencies by action every daemon has: what the store
// holds and the decrypted-image cache.
import type { DaemonMetrics } from '@mallee/telemetry';
import type { ImageSource } from './s3/context.js';
import type { ObjectStore } from './store/types.js';

export const METRICS_PATH = '/_mallee/metrics';

export function walrusMetrics(metrics: DaemonMetrics, store: ObjectStore, images?: ImageSource): DaemonMetrics {
  // One usage() per scrape, shared by the three gauges: a scrape starts every collect() in one tick.
  let usage: ReturnType<ObjectStore['usage']> | undefined;
  const current = () => {
    if (!usage) {
      usage = store.usage();
      setImmediate(() => (usage = undefined));
    }
    return usage;
  };
  metrics.gauge('mallee_walrus_buckets', 'Buckets.', [], () => [[{}, current().buckets]]);
  metrics.gauge('mallee_walrus_objects', 'Current (latest, not deleted) objects.', [], () => [[{}, current().objects]]);
  metrics.gauge('mallee_walrus_stored_bytes', 'Bytes in all stored object versions.', [], () => [[{}, current().bytes]]);
  metrics.gauge('mallee_walrus_image_cache', 'The decrypted-image cache: entries and bytes held, builds (decryptions), hits and evictions (counters).', ['stat'], () =>
    Object.entries(images?.stats?.() ?? {}).map(([stat, v]) => [{ stat }, v] as [Record<string, string>, number]),
  );
  return metrics;
}
