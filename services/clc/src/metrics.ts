// The clc's gauges on its /metrics (Prometheus text, with the request counts and latencies every
// daemon has): instances by zone and state, clusters by state, accounts, launches in flight and how
// long the last cluster poll took, what each zone can still start per instance type.
import type { Db } from '@mallee/store';
import type { DaemonMetrics } from '@mallee/telemetry';
import type { ClusterPoller } from './cluster-poller.js';
import type { PollerLease } from './poller-lease.js';
import type { Clusters } from './clusters.js';
import type { Dispatcher } from './dispatch.js';

export function clcMetrics(metrics: DaemonMetrics, deps: { db: Db; clusters: Clusters; dispatcher: Dispatcher; poller: ClusterPoller; lease: PollerLease }): DaemonMetrics {
  metrics.gauge('mallee_clc_instances', 'Instances by availability zone and state.', ['zone', 'state'], () =>
    (deps.db.prepare('SELECT zone, state, COUNT(*) AS n FROM instances GROUP BY zone, state ORDER BY zone, state').all() as { zone: string; state: string; n: number }[]).map((r) => [{ zone: r.zone, state: r.state }, r.n]),
  );
  metrics.gauge('mallee_clc_clusters', 'Registered clusters (availability zones) by state.', ['state'], () => {
    const clusters = new Map<string, number>([['ENABLED', 0], ['NOTREADY', 0]]);
    for (const c of deps.clusters.list()) clusters.set(c.state, (clusters.get(c.state) ?? 0) + 1);
    return [...clusters].map(([state, n]) => [{ state }, n]);
  });
  metrics.gauge('mallee_clc_accounts', 'Accounts.', [], () => [[{}, deps.db.prepare('SELECT COUNT(*) FROM accounts').pluck().get() as number]]);
  metrics.gauge('mallee_clc_launches_in_flight', 'Instances with a RunInstances to their cc still outstanding.', [], () => [[{}, deps.dispatcher.inFlightCount()]]);
  metrics.gauge('mallee_clc_unknown_instances', 'Instances a cluster runs that the clc has no record of (left alone; see the clc log).', ['zone'], () => {
    const byZone = new Map<string, number>();
    for (const u of deps.poller.unknownInstances()) byZone.set(u.zone, (byZone.get(u.zone) ?? 0) + 1);
    return [...byZone].map(([zone, n]) => [{ zone }, n]);
  });
  metrics.gauge('mallee_clc_poller_lease', 'Whether this clc holds the poller lease (moves states along; one of the clcs sharing a database).', [], () => [[{}, deps.lease.holding ? 1 : 0]]);
  metrics.gauge('mallee_clc_last_poll_seconds', 'How long the last round of cluster polls took.', [], () => [[{}, deps.poller.lastPollSeconds()]]);
  // From each cc's last DescribeResources.
  metrics.gauge('mallee_clc_capacity', 'Instances of each type a zone can start (available) and could hold empty (max).', ['zone', 'type', 'kind'], () =>
    deps.clusters.list().flatMap((c) => deps.clusters.availability(c.name).flatMap((a) => [[{ zone: c.name, type: a.name, kind: 'available' }, Math.max(0, a.available)], [{ zone: c.name, type: a.name, kind: 'max' }, a.max]] as [Record<string, string>, number][])),
  );
  return metrics;
}
