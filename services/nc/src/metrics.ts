// The nc's gauges on its /metrics (with the request counts and latencies every daemon has): its
// instances by state, its capacity and its image cache.
import type { DaemonMetrics } from '@mallee/telemetry';
import type { NodeController } from './node-controller.js';

export function ncMetrics(metrics: DaemonMetrics, node: NodeController): DaemonMetrics {
  metrics.gauge('mallee_nc_instances', 'Instances on this node by state.', ['state'], () => {
    const byState = new Map<string, number>();
    for (const i of node.snapshot()) byState.set(i.state, (byState.get(i.state) ?? 0) + 1);
    return [...byState].map(([state, n]) => [{ state }, n]);
  });
  metrics.gauge('mallee_nc_capacity', 'Resources this node offers (max) and has free (available).', ['resource', 'kind'], async () => {
    const res = await node.describeResource();
    return ([['cores', res.cores], ['memory_mib', res.memoryMiB], ['disk_gib', res.diskGiB]] as const).flatMap(([resource, c]) => [[{ resource, kind: 'max' }, c.max], [{ resource, kind: 'available' }, c.available]] as [Record<string, string>, number][]);
  });
  metrics.gauge('mallee_nc_image_cache', 'The image cache: downloads from Walrus, hits, evictions (counters), entries and bytes held.', ['stat'], async () =>
    Object.entries((await node.imageCacheStats()) ?? {}).map(([stat, v]) => [{ stat }, v] as [Record<string, string>, number]),
  );
  return metrics;
}
