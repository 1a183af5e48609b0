// Prometheus text metrics at /_mallee/metrics (not /metrics: that path is the bucket "metrics"):
// S3 requests by action and status, and what the store holds.
import type { FastifyInstance } from 'fastify';
import type { RequestLatency } from '@mallee/config';
import type { ObjectStore } from './store/types.js';

export class S3Metrics {
  private readonly requests = new Map<string, number>();

  constructor(private readonly latency?: RequestLatency) {}

  record(action: string, status: number): void {
    const k = `${action}\u0000${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  text(store: ObjectStore): string {
    const usage = store.usage();
    return [
      '# HELP mallee_walrus_requests_total S3 requests by action and HTTP status.',
      '# TYPE mallee_walrus_requests_total counter',
      ...[...this.requests].map(([k, n]) => {
        const [action, status] = k.split('\u0000');
        return `mallee_walrus_requests_total{action="${action}",status="${status}"} ${n}`;
      }),
      '# HELP mallee_walrus_buckets Buckets.',
      '# TYPE mallee_walrus_buckets gauge',
      `mallee_walrus_buckets ${usage.buckets}`,
      '# HELP mallee_walrus_objects Current (latest, not deleted) objects.',
      '# TYPE mallee_walrus_objects gauge',
      `mallee_walrus_objects ${usage.objects}`,
      '# HELP mallee_walrus_stored_bytes Bytes in all stored object versions.',
      '# TYPE mallee_walrus_stored_bytes gauge',
      `mallee_walrus_stored_bytes ${usage.bytes}`,
      ...(this.latency?.render() ?? []),
      '',
    ].join('\n');
  }
}

export const METRICS_PATH = '/_mallee/metrics';

export function walrusMetrics(metrics: S3Metrics, store: ObjectStore) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get(METRICS_PATH, async (_req, reply) => reply.type('text/plain; version=0.0.4').send(metrics.text(store)));
  };
}
