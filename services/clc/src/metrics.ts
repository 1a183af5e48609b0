// GET /metrics in Prometheus text format: instances by zone and state, clusters by state, accounts,
// launches in flight and how long the last cluster poll took.
import type { FastifyInstance } from 'fastify';
import type { RequestLatency } from '@mallee/config';
import type { Db } from '@mallee/store';
import type { ClusterPoller } from './cluster-poller.js';
import type { Clusters } from './clusters.js';
import type { Dispatcher } from './dispatch.js';

const label = (v: string) => v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));

/** What each zone can still start, per instance type, from the cc's last DescribeResources. */
function capacityLines(clusters: Clusters): string[] {
  const lines = ['# HELP mallee_clc_capacity Instances of each type a zone can start (available) and could hold empty (max).', '# TYPE mallee_clc_capacity gauge'];
  for (const c of clusters.list())
    for (const a of clusters.availability(c.name))
      lines.push(`mallee_clc_capacity{zone="${label(c.name)}",type="${label(a.name)}",kind="available"} ${Math.max(0, a.available)}`, `mallee_clc_capacity{zone="${label(c.name)}",type="${label(a.name)}",kind="max"} ${a.max}`);
  return lines;
}

export function clcMetrics(deps: { db: Db; clusters: Clusters; dispatcher: Dispatcher; poller: ClusterPoller; latency?: RequestLatency }) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/metrics', async (_req, reply) => {
      const instances = deps.db.prepare('SELECT zone, state, COUNT(*) AS n FROM instances GROUP BY zone, state ORDER BY zone, state').all() as { zone: string; state: string; n: number }[];
      const clusters = new Map<string, number>([['ENABLED', 0], ['NOTREADY', 0]]);
      for (const c of deps.clusters.list()) clusters.set(c.state, (clusters.get(c.state) ?? 0) + 1);
      const accounts = deps.db.prepare('SELECT COUNT(*) FROM accounts').pluck().get() as number;
      const lines = [
        '# HELP mallee_clc_instances Instances by availability zone and state.',
        '# TYPE mallee_clc_instances gauge',
        ...instances.map((r) => `mallee_clc_instances{zone="${label(r.zone)}",state="${r.state}"} ${r.n}`),
        '# HELP mallee_clc_clusters Registered clusters (availability zones) by state.',
        '# TYPE mallee_clc_clusters gauge',
        ...[...clusters].map(([state, n]) => `mallee_clc_clusters{state="${state}"} ${n}`),
        '# HELP mallee_clc_accounts Accounts.',
        '# TYPE mallee_clc_accounts gauge',
        `mallee_clc_accounts ${accounts}`,
        '# HELP mallee_clc_launches_in_flight Instances with a RunInstances to their cc still outstanding.',
        '# TYPE mallee_clc_launches_in_flight gauge',
        `mallee_clc_launches_in_flight ${deps.dispatcher.inFlightCount()}`,
        '# HELP mallee_clc_last_poll_seconds How long the last round of cluster polls took.',
        '# TYPE mallee_clc_last_poll_seconds gauge',
        `mallee_clc_last_poll_seconds ${deps.poller.lastPollSeconds()}`,
        ...capacityLines(deps.clusters),
        ...(deps.latency?.render() ?? []),
      ];
      return reply.type('text/plain; version=0.0.4').send(lines.join('\n') + '\n');
    });
  };
}
