// Sending launches to a cluster's cc. Remembers which instances have a RunInstances in flight so the
// poller neither counts them as lost nor re-sends them while the first call is still out.
import { cc, type InstanceSpec } from '@mallee/wire';
import type { Clusters } from './clusters.js';

export class Dispatcher {
  private readonly inFlight = new Set<string>();

  /**
   * `prepare` completes specs just before they go out: the image URLs (short-lived), and for EBS-backed
   * instances the node and their volumes exported to it; its WireError fails the launch as the cc's would.
   */
  constructor(private readonly clusters: Clusters, private readonly prepare: (specs: InstanceSpec[]) => InstanceSpec[] | Promise<InstanceSpec[]> = (s) => s) {}

  inFlightCount(): number {
    return this.inFlight.size;
  }

  isInFlight(instanceId: string): boolean {
    return this.inFlight.has(instanceId);
  }

  /** cc.RunInstances: the instances the cc placed (all, or at least minCount), or its WireError. */
  async run(zone: string, instances: InstanceSpec[], minCount: number, requestId?: string): Promise<{ instanceId: string; node: string }[]> {
    for (const i of instances) this.inFlight.add(i.instanceId);
    try {
      const res = await this.clusters.client(zone).call(cc.RunInstances, { instances: await this.prepare(instances), minCount }, requestId ? { requestId } : {});
      return res.placed;
    } finally {
      for (const i of instances) this.inFlight.delete(i.instanceId);
    }
  }
}
