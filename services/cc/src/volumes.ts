// Volume operations (sc) routed to the node that runs the instance. The CHAP secret arrives sealed
// with the cluster's key and leaves re-sealed with that node's key.
import { mapTargetSecret, nc, resealSecret, type cc, type Operation } from '@mallee/wire';
import type { Cluster } from './cluster.js';

type Req<O> = O extends Operation<infer R, unknown> ? R : never;
type Res<O> = O extends Operation<unknown, infer R> ? R : never;

export class ClusterVolumes {
  constructor(private readonly cluster: Cluster, private readonly cloudKey: () => string | undefined) {}

  async attachVolume(req: Req<typeof cc.AttachVolume>): Promise<Res<typeof cc.AttachVolume>> {
    const link = this.cluster.nodeOf(req.instanceId);
    const target = mapTargetSecret(req.target, (sealed) => resealSecret(this.cloudKey() ?? '', link.record.key, sealed));
    return link.client.call(nc.ncAttachVolume, { ...req, target }, { timeoutMs: 60_000 });
  }

  async detachVolume(req: Req<typeof cc.DetachVolume>): Promise<Res<typeof cc.DetachVolume>> {
    return this.cluster.nodeOf(req.instanceId).client.call(nc.ncDetachVolume, req, { timeoutMs: 60_000 });
  }

  async freezeInstance(req: Req<typeof cc.FreezeInstance>): Promise<Res<typeof cc.FreezeInstance>> {
    return this.cluster.nodeOf(req.instanceId).client.call(nc.ncFreezeInstance, req, { timeoutMs: 30_000 });
  }

  async thawInstance(req: Req<typeof cc.ThawInstance>): Promise<Res<typeof cc.ThawInstance>> {
    return this.cluster.nodeOf(req.instanceId).client.call(nc.ncThawInstance, req, { timeoutMs: 30_000 });
  }
}
