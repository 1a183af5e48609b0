// Walrus's gauges on its Prometheus text at /_mallee/metrics (not /metrics: that path is the bucket
// "metrics"), beside the S3 request counts and latencies by action every daemon has: what the store holds.
import type { DaemonMetrics } from '@mallee/telemetry';
import type { ObjectStore } from './store/types.js';

export const METRICS_PATH = '/_mallee/metrics';

export function walrusMetrics(metrics: DaemonMetrics, store: ObjectStore): DaemonMetrics {
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
  return metrics;
}
