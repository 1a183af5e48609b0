// GET /metrics in Prometheus text format: the cluster's nodes and instances by state.
import type { FastifyInstance } from 'fastify';
import type { RequestLatency } from '@mallee/config';
import type { Cluster } from './cluster.js';

export function ccMetrics(cluster: Cluster, latency?: RequestLatency) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/metrics', async (_req, reply) => {
      const nodes = new Map<string, number>([['ENABLED', 0], ['NOTREADY', 0]]);
      for (const n of cluster.describeNodes().nodes) nodes.set(n.state, (nodes.get(n.state) ?? 0) + 1);
      const instances = new Map<string, number>();
      for (const i of cluster.describeInstances({ instanceIds: [] }).instances) instances.set(i.state, (instances.get(i.state) ?? 0) + 1);
      const lines = [
        '# HELP mallee_cc_nodes Registered node controllers by state.',
        '# TYPE mallee_cc_nodes gauge',
        ...[...nodes].map(([state, n]) => `mallee_cc_nodes{state="${state}"} ${n}`),
        '# HELP mallee_cc_instances Instances on this cluster by state (last known for nodes that do not answer).',
        '# TYPE mallee_cc_instances gauge',
        ...[...instances].map(([state, n]) => `mallee_cc_instances{state="${state}"} ${n}`),
        '# HELP mallee_cc_launches_in_flight Instances placed on a node whose resource report does not include them yet.',
        '# TYPE mallee_cc_launches_in_flight gauge',
        `mallee_cc_launches_in_flight ${cluster.launchesInFlight()}`,
        ...(latency?.render() ?? []),
      ];
      return reply.type('text/plain; version=0.0.4').send(lines.join('\n') + '\n');
    });
  };
}
