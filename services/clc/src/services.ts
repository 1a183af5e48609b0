// The health of every component the clc knows (Eucalyptus's DescribeServices): itself, each registered
// cluster as its last poll saw it, and each cluster's nodes as that cc sees them (asked now). Shared by
// `mallee describe-services` and the admin's `DescribeAvailabilityZones verbose`.
import { admin, cc } from '@mallee/wire';
import type { z } from 'zod';
import type { Clusters } from './clusters.js';

export type ServiceStatus = z.infer<typeof admin.serviceStatus>;

export interface ServiceSources {
  clusters: Clusters;
  region: string;
  url(): string;
  /** More components registered with the clc (Walrus, SCs): added by whoever registers them. */
  others?: () => ServiceStatus[] | Promise<ServiceStatus[]>;
}

/** In Eucalyptus's order: the clc, then per zone its cc and that cc's nodes, then the others. */
export async function describeServices(s: ServiceSources): Promise<ServiceStatus[]> {
  const now = new Date().toISOString();
  const services: ServiceStatus[] = [{ type: 'clc', name: 'clc', partition: s.region, url: s.url(), state: 'ENABLED', lastContact: now }];
  const clusters = s.clusters.list();
  const nodes = await Promise.all(clusters.map(async (c) => {
    if (c.state !== 'ENABLED') return [];
    try {
      const res = await s.clusters.client(c.name).call(cc.DescribeNodes, {}, { timeoutMs: 5000 });
      return res.nodes.map((n): ServiceStatus => ({
        type: 'nc', name: n.node, partition: c.name, url: n.url, state: n.state,
        ...(n.lastSeen ? { lastContact: n.lastSeen } : {}), ...(n.detail ? { detail: n.detail } : {}),
      }));
    } catch (err) {
      return [{ type: 'nc', name: '(unknown)', partition: c.name, url: c.url, state: 'NOTREADY', detail: `cc did not list its nodes: ${(err as Error).message}` } satisfies ServiceStatus];
    }
  }));
  clusters.forEach((c, i) => {
    services.push({ type: 'cc', name: c.name, partition: c.name, url: c.url, state: c.state, ...(c.lastContact ? { lastContact: c.lastContact } : {}), ...(c.detail ? { detail: c.detail } : {}) });
    services.push(...nodes[i]!);
  });
  services.push(...((await s.others?.()) ?? []));
  return services;
}
