// The cc's gauges on its /metrics (with the request counts and latencies every daemon has): nodes by
// state, instances by state, capacity of the enabled nodes, launches in flight.
import type { DaemonMetrics } from '@mallee/telemetry';
import type { Cluster } from './cluster.js';

export function ccMetrics(metrics: DaemonMetrics, cluster: Cluster): DaemonMetrics {
  metrics.gauge('mallee_cc_nodes', 'Registered node controllers by state.', ['state'], () => {
    const nodes = new Map<string, number>([['ENABLED', 0], ['NOTREADY', 0]]);
    for (const n of cluster.describeNodes().nodes) nodes.set(n.state, (nodes.get(n.state) ?? 0) + 1);
    return [...nodes].map(([state, n]) => [{ state }, n]);
  });
  metrics.gauge('mallee_cc_instances', 'Instances on this cluster by state (last known for nodes that do not answer).', ['state'], () => {
    const instances = new Map<string, number>();
    for (const i of cluster.describeInstances({ instanceIds: [] }).instances) instances.set(i.state, (instances.get(i.state) ?? 0) + 1);
    return [...instances].map(([state, n]) => [{ state }, n]);
  });
  metrics.gauge('mallee_cc_capacity', 'Resources the enabled nodes offer (max) and have free (available), net of launches in flight.', ['resource', 'kind'], () => {
    const sum = { cores: { max: 0, available: 0 }, memory_mib: { max: 0, available: 0 }, disk_gib: { max: 0, available: 0 } };
    for (const n of cluster.describeResources({ vmTypes: [] }).nodes) {
      if (n.status !== 'enabled') continue;
      for (const [k, c] of [['cores', n.cores], ['memory_mib', n.memoryMiB], ['disk_gib', n.diskGiB]] as const) {
        sum[k].max += c.max;
        sum[k].available += c.available;
      }
    }
    return Object.entries(sum).flatMap(([resource, c]) => [[{ resource, kind: 'max' }, c.max], [{ resource, kind: 'available' }, c.available]] as [Record<string, string>, number][]);
  });
  metrics.gauge('mallee_cc_launches_in_flight', 'Instances placed on a node whose resource report does not include them yet.', [], () => [[{}, cluster.launchesInFlight()]]);
  return metrics;
}
