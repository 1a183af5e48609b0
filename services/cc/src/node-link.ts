// One registered NC as the cc sees it: the wire client, whether it answers, and the last resources and
// instances it reported (kept while it does not answer, so nothing is lost when a node blips).
import { nc, WireClient, type NodeInstance, type NodeResources } from '@mallee/wire';
import type { NodeRecord } from './registry.js';

/** The sender id NCs know their cluster controller by. */
export const CC_SENDER = 'cc';

export type NodeState = 'ENABLED' | 'NOTREADY';

interface CachedInstance {
  instance: NodeInstance;
  /** The instance as last written to the cc's database. */
  json: string;
  /** ms when the cc last changed or learned this entry itself (launch, terminate). */
  touchedAt: number;
}

export class NodeLink {
  readonly client: WireClient;
  state: NodeState = 'NOTREADY';
  detail: string | undefined = 'not contacted yet';
  lastSeen: string | undefined;
  /** When the node stopped answering (its first failed contact since it last answered); undefined while it answers. */
  unreachableSince: string | undefined;
  resources: NodeResources | undefined;
  /** ms when the request that produced `resources` was sent: launches completed before it are counted in it. */
  resourcesAsOf = 0;
  private readonly cache = new Map<string, CachedInstance>();
  /** Instance ids whose entry changed since the last takeChanges(). */
  private readonly dirty = new Set<string>();
  /**
   * ms when the cc itself dropped an instance (it migrated away, its node said it is gone): an answer to a
   * poll sent before then still lists it and must not bring it back. Cleared by the first poll sent after.
   */
  private readonly forgotten = new Map<string, number>();
  private polling: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(
    public record: NodeRecord,
    private readonly timeoutMs: number,
  ) {
    this.lastSeen = record.lastSeen;
    this.client = new WireClient({ url: record.url, from: CC_SENDER, key: () => this.record.key, timeoutMs });
  }

  get name(): string {
    return this.record.name;
  }

  instances(): IterableIterator<NodeInstance> {
    return (function* (cache) {
      for (const c of cache.values()) yield c.instance;
    })(this.cache);
  }

  instance(instanceId: string): NodeInstance | undefined {
    return this.cache.get(instanceId)?.instance;
  }

  /** Record what the cc itself just learned about an instance (a launch or terminate reply). */
  learn(instance: NodeInstance): void {
    this.put(instance, Date.now());
  }

  /** The cc learned the instance is no longer on this node (it migrated away, the node said it is gone). */
  forget(instanceId: string): void {
    this.forgotten.set(instanceId, Date.now());
    this.drop(instanceId);
  }

  private drop(instanceId: string): void {
    if (this.cache.delete(instanceId)) this.dirty.add(instanceId);
  }

  /** Instances remembered from before a cc restart: reported as last known until the node answers. */
  restore(instances: readonly NodeInstance[]): void {
    for (const i of instances) this.cache.set(i.instanceId, { instance: i, json: JSON.stringify(i), touchedAt: 0 });
  }

  /** What changed since the last call, for the cc's database. */
  takeChanges(): { upserts: NodeInstance[]; deletes: string[] } {
    const upserts: NodeInstance[] = [];
    const deletes: string[] = [];
    for (const id of this.dirty) {
      const c = this.cache.get(id);
      if (c) upserts.push(c.instance);
      else deletes.push(id);
    }
    this.dirty.clear();
    return { upserts, deletes };
  }

  private put(instance: NodeInstance, touchedAt: number): void {
    const json = JSON.stringify(instance);
    const old = this.cache.get(instance.instanceId);
    if (old?.json !== json) this.dirty.add(instance.instanceId);
    this.cache.set(instance.instanceId, { instance, json, touchedAt });
  }

  /** Busy for POWERSAVE: runs something that still holds resources. */
  busy(): boolean {
    for (const c of this.cache.values()) if (c.instance.state !== 'terminated') return true;
    return false;
  }

  /** Ask the node for its resources and instances; concurrent callers share one poll. */
  /**
   * Polls the node; resolves once a poll that started after this call has finished. A poll already
   * in flight may carry an answer from before the caller's own launches completed (counted twice
   * against the reservations), so a caller joining it waits for one more, queued once for all callers.
   */
  poll(onSeen: (link: NodeLink, lastSeen: string) => void): Promise<void> {
    if (!this.polling) {
      this.polling = this.doPoll(onSeen).finally(() => {
        this.polling = undefined;
      });
      return this.polling;
    }
    this.queued ??= this.polling.then(() => {
      this.queued = undefined;
      return this.poll(onSeen);
    });
    return this.queued;
  }

  /** Resolves when no poll is in flight. */
  async settled(): Promise<void> {
    await this.polling;
  }

  private async doPoll(onSeen: (link: NodeLink, lastSeen: string) => void): Promise<void> {
    const startedAt = Date.now();
    try {
      const [resources, described] = await Promise.all([
        this.client.call(nc.ncDescribeResource, {}),
        this.client.call(nc.ncDescribeInstances, { instanceIds: [] }),
      ]);
      this.setResources(resources, startedAt);
      const reported = new Map(described.instances.map((i) => [i.instanceId, i]));
      for (const [id, c] of this.cache) {
        // Entries the cc changed after this poll was sent are newer than the node's answer.
        if (c.touchedAt > startedAt) reported.delete(id);
        else if (!reported.has(id)) this.drop(id);
      }
      for (const [id, at] of this.forgotten) {
        // Dropped while this poll was out (at the same ms counts as after): the answer predates that.
        if (at >= startedAt) reported.delete(id);
        else this.forgotten.delete(id);
      }
      for (const i of reported.values()) this.put(i, startedAt);
      this.markSeen(onSeen);
    } catch (err) {
      this.markDown(err as Error);
    }
  }

  setResources(resources: NodeResources, asOf: number): void {
    if (asOf < this.resourcesAsOf) return;
    this.resources = resources;
    this.resourcesAsOf = asOf;
  }

  markSeen(onSeen: (link: NodeLink, lastSeen: string) => void): void {
    this.state = 'ENABLED';
    this.detail = undefined;
    this.unreachableSince = undefined;
    this.lastSeen = new Date().toISOString();
    onSeen(this, this.lastSeen);
  }

  markDown(err: Error): void {
    this.state = 'NOTREADY';
    this.unreachableSince ??= new Date().toISOString();
    const code = (err as { code?: string }).code;
    this.detail = code ? `${code}: ${err.message}` : err.message;
  }
}
