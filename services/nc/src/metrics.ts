// GET /metrics in Prometheus text format: the node's capacity and its instances by state.
import type { FastifyInstance } from 'fastify';
import type { RequestLatency } from '@mallee/config';
import type { NodeController } from './node-controller.js';

export function ncMetrics(node: NodeController, latency?: RequestLatency) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/metrics', async (_req, reply) => {
      const res = await node.describeResource();
      const byState = new Map<string, number>();
      for (const i of node.snapshot()) byState.set(i.state, (byState.get(i.state) ?? 0) + 1);
      const lines = [
        '# HELP mallee_nc_instances Instances on this node by state.',
        '# TYPE mallee_nc_instances gauge',
        ...[...byState].map(([state, n]) => `mallee_nc_instances{state="${state}"} ${n}`),
        '# HELP mallee_nc_capacity Resources this node offers (max) and has free (available).',
        '# TYPE mallee_nc_capacity gauge',
      ];
      for (const [resource, c] of [['cores', res.cores], ['memory_mib', res.memoryMiB], ['disk_gib', res.diskGiB]] as const) {
        lines.push(`mallee_nc_capacity{resource="${resource}",kind="max"} ${c.max}`, `mallee_nc_capacity{resource="${resource}",kind="available"} ${c.available}`);
      }
      lines.push(...(latency?.render() ?? []));
      const cache = await node.imageCacheStats();
      if (cache) {
        lines.push(
          '# HELP mallee_nc_image_cache The image cache: downloads from Walrus, hits, evictions (counters), entries and bytes held.',
          '# TYPE mallee_nc_image_cache gauge',
          ...Object.entries(cache).map(([k, v]) => `mallee_nc_image_cache{stat="${k}"} ${v}`),
        );
      }
      return reply.type('text/plain; version=0.0.4').send(lines.join('\n') + '\n');
    });
  };
}
