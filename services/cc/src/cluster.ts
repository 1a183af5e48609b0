// The Cluster Controller's logic: its nodes, polling them, placing instances on them and routing
// per-instance operations to the node that runs the instance (Eucalyptus cluster/handlers.c).
import type { Logger } from 'pino';
import { bootsFromVolume, mapTargetSecret, nc, resealSecret, WireError, generateKey, type cc, type InstanceSpec, type InstanceStateName, type NodeInstance, type NodeResources, type Operation, type VmType } from '@mallee/wire';
import type { NetworkManager } from './net/manager.js';
import { NodeLink } from './node-link.js';
import type { NodeRegistry } from './registry.js';
import { Scheduler, fitCount, type Candidate, type Room, type SchedPolicy } from './scheduler.js';

type Req<O> = O extends Operation<infer R, unknown> ? R : never;
type Res<O> = O extends Operation<unknown, infer R> ? R : never;

export interface ClusterOptions {
  registry: NodeRegistry;
  policy: SchedPolicy;
  pollIntervalMs: number;
  log: Logger;
  /** Parallel ncRunInstance calls per RunInstances. */
  launchConcurrency?: number;
  /** MANAGED networking: records each launch (DHCP lease, metadata) and says how the NC attaches it. */
  network?: NetworkManager;
  /** The placement policy in force now (the zone's cloud property cluster.schedulingpolicy); default `policy`. */
  currentPolicy?: () => Promise<SchedPolicy>;
  /** The cluster's key (keys/cloud.key): opens the CHAP secrets of an EBS-backed launch, re-sealed for its node. */
  cloudKey?: () => string | undefined;
  /** Live migration: the destination's libvirtd as the source's reaches it, {host} its address (MIGRATE_LIBVIRT_URI). */
  migrateLibvirtUri?: string;
}

/** Resources promised to a launch the node may not have counted yet. */
interface Reservation {
  node: string;
  vmType: VmType;
  /** ms when the node acknowledged the launch; resource reports requested later include it. */
  completedAt?: number;
  /** A placement only (PlaceInstances): room held until then (ms) for the launch pinned here, which takes it over. */
  heldUntil?: number;
}

/** How long a placement holds its room for the launch that is to follow it (the clc exports volumes meanwhile). */
const PLACEMENT_HOLD_MS = 120_000;

const NOT_FOUND = 'InvalidInstanceID.NotFound';

export class Cluster {
  private readonly links = new Map<string, NodeLink>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly scheduler: Scheduler;
  private timer: NodeJS.Timeout | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly o: ClusterOptions) {
    this.scheduler = new Scheduler(o.policy);
    this.timeoutMs = Math.max(5000, 2 * o.pollIntervalMs);
    const remembered = o.registry.instances();
    for (const rec of o.registry.all()) {
      const link = new NodeLink(rec, this.timeoutMs);
      link.restore(remembered.get(rec.name) ?? []);
      this.links.set(rec.name, link);
    }
  }

  start(): void {
    void this.pollAll();
    this.timer = setInterval(() => void this.pollAll(), this.o.pollIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.links.values()].map((l) => l.settled()));
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flush();
  }

  /** Write what changed in the instance caches, batched: one transaction for a poll or a burst of launches. */
  private scheduleFlush(): void {
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      try {
        this.flush();
      } catch (err) {
        this.o.log.error({ err }, 'could not save the last known instances');
      }
    }, 200);
  }

  private flush(): void {
    const changes = [...this.links.values()].map((l) => ({ node: l.name, ...l.takeChanges() }));
    this.o.registry.saveInstances(changes.filter((c) => c.upserts.length + c.deletes.length > 0));
  }

  /** Poll every node once (ncDescribeResource + ncDescribeInstances). */
  async pollAll(log = true): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => this.pollNode(l, log)));
  }

  private async pollNode(link: NodeLink, log = true): Promise<void> {
    const before = link.state;
    await link.poll((l, seen) => this.o.registry.touch(l.name, seen));
    this.pruneReservations(link);
    this.scheduleFlush();
    if (log && before !== link.state) {
      const level = link.state === 'ENABLED' ? 'info' : 'warn';
      this.o.log[level]({ node: link.name, state: link.state, detail: link.detail }, `node ${link.name} is ${link.state}`);
    }
  }

  // --- node registry -------------------------------------------------------------------------

  /**
   * Register a node, or move a known one to a new url with a fresh key. Registering it again at the url it has
   * answers the key it was issued: a registration whose answer was lost (the clc or this cc killed after the row
   * was written) is retried by `mallee up` or the operator, and a new key there would never reach the node.
   * Deregister and register again to issue a new key at the same url.
   */
  registerNode(node: string, url: string): { node: string; key: string } {
    const existing = this.links.get(node);
    // Known at this url: its record (and key) stays.
    const rec = existing && existing.record.url === url ? existing.record : this.o.registry.upsert(node, url, generateKey());
    if (rec !== existing?.record) {
      // A node that moved keeps its last known instances until it answers at the new address.
      const link = new NodeLink(rec, this.timeoutMs);
      if (existing) link.restore([...existing.instances()]);
      this.links.set(node, link);
    }
    this.o.log.info({ node, url }, 'node registered');
    void this.o.network?.apply().catch((err: unknown) => this.o.log.error({ err }, 'could not extend the networks to the new node'));
    void this.pollNode(this.links.get(node)!);
    return { node, key: rec.key };
  }

  deregisterNode(node: string): void {
    if (!this.o.registry.remove(node)) throw new WireError('NoSuchNode', `node ${node} is not registered with this cluster`, 404);
    this.links.delete(node);
    for (const [id, r] of this.reservations) if (r.node === node) this.reservations.delete(id);
    this.o.log.info({ node }, 'node deregistered');
  }

  describeNodes(): Res<typeof cc.DescribeNodes> {
    return {
      nodes: [...this.links.values()].map((l) => ({
        node: l.name,
        url: l.record.url,
        state: l.state,
        ...(l.lastSeen !== undefined ? { lastSeen: l.lastSeen } : {}),
        ...(l.detail !== undefined ? { detail: l.detail } : {}),
      })),
    };
  }

  // --- placing instances ---------------------------------------------------------------------

  async runInstances(req: Req<typeof cc.RunInstances>): Promise<Res<typeof cc.RunInstances>> {
    const unique = [...new Map(req.instances.map((s) => [s.instanceId, s])).values()];
    // Fresh numbers and the policy in force first (the only awaits before placing), then known instances are sorted out.
    if (unique.some((s) => this.knownNode(s.instanceId, s) === undefined)) {
      await this.refreshResources();
      await this.refreshPolicy();
    }
    // From here until the reservations are made nothing awaits, so concurrent calls (including
    // retries of this very request) see each other's reservations and cannot overcommit or duplicate.
    const placed: { instanceId: string; node: string }[] = [];
    const todo: InstanceSpec[] = [];
    for (const spec of unique) {
      const where = this.knownNode(spec.instanceId, spec);
      if (where !== undefined) placed.push({ instanceId: spec.instanceId, node: where });
      else todo.push(spec);
    }
    if (todo.length === 0) return { placed };
    // A launch pinned where PlaceInstances held room for it takes that room over.
    for (const s of todo) if (this.reservations.get(s.instanceId)?.heldUntil !== undefined) this.reservations.delete(s.instanceId);
    const excluded = new Set<string>();
    const first = this.schedule(todo, excluded);
    if (placed.length + first.placed.length < req.minCount) {
      this.release(first.placed);
      throw this.insufficient(req.minCount, placed.length + first.placed.length, todo);
    }
    const started: { spec: InstanceSpec; node: string }[] = [];
    let pending = first.placed;
    // A node may still refuse (its own accounting is final) or fail: retry those on the other nodes.
    while (pending.length > 0) {
      const failed = await this.launch(pending, started, excluded);
      if (failed.length === 0) break;
      const retry = this.schedule(failed, excluded);
      pending = retry.placed;
    }
    if (placed.length + started.length < req.minCount) {
      await this.rollback(started);
      throw this.insufficient(req.minCount, placed.length + started.length, todo);
    }
    for (const s of started) placed.push({ instanceId: s.spec.instanceId, node: s.node });
    return { placed };
  }

  async placeInstances(req: Req<typeof cc.PlaceInstances>): Promise<Res<typeof cc.PlaceInstances>> {
    const unique = [...new Map(req.instances.map((i) => [i.instanceId, i])).values()];
    await this.refreshResources();
    await this.refreshPolicy();
    // From here nothing awaits: concurrent placements and launches see each other's holds.
    const now = Date.now();
    for (const [id, r] of this.reservations) if (r.heldUntil !== undefined && r.heldUntil < now) this.reservations.delete(id);
    const placed: { instanceId: string; node: string }[] = [];
    const todo: { instanceId: string; vmType: VmType; node?: string }[] = [];
    for (const i of unique) {
      const link = this.locate(i.instanceId);
      const held = this.reservations.get(i.instanceId);
      if (link && link.instance(i.instanceId)?.state !== 'terminated') placed.push({ instanceId: i.instanceId, node: link.name });
      else if (held) {
        if (held.heldUntil !== undefined) held.heldUntil = now + PLACEMENT_HOLD_MS;
        placed.push({ instanceId: i.instanceId, node: held.node });
      } else todo.push({ instanceId: i.instanceId, vmType: i.vmType });
    }
    for (const p of this.schedule(todo, new Set()).placed) {
      this.reservations.get(p.spec.instanceId)!.heldUntil = now + PLACEMENT_HOLD_MS;
      placed.push({ instanceId: p.spec.instanceId, node: p.node });
    }
    return { placed: placed.flatMap((p) => { const link = this.links.get(p.node); return link ? [{ ...p, url: link.record.url }] : []; }) };
  }

  private schedule<S extends Pick<InstanceSpec, 'instanceId' | 'vmType' | 'node'>>(specs: S[], excluded: Set<string>): { placed: { spec: S; node: string }[] } {
    const candidates: Candidate[] = [];
    for (const link of this.links.values()) {
      if (link.state !== 'ENABLED' || !link.resources || excluded.has(link.name)) continue;
      candidates.push({ node: link.name, free: this.freeRoom(link), busy: link.busy() || this.hasReservations(link.name) });
    }
    const free = specs.filter((s) => s.node === undefined);
    const chosen = new Map(this.scheduler.place(candidates, free.map((s) => s.vmType)).map((node, i) => [free[i]!, node]));
    // An EBS-backed launch comes pinned: its volumes are exported to that node's address only.
    for (const s of specs) if (s.node !== undefined) chosen.set(s, this.scheduler.placeOn(candidates.filter((c) => c.node === s.node), s.vmType));
    const placed: { spec: S; node: string }[] = [];
    specs.forEach((spec) => {
      const node = chosen.get(spec);
      if (node === undefined) return;
      this.reservations.set(spec.instanceId, { node, vmType: spec.vmType });
      placed.push({ spec, node });
    });
    return { placed };
  }

  /** Start each placed instance on its node; returns the specs that did not start. */
  private async launch(batch: { spec: InstanceSpec; node: string }[], started: { spec: InstanceSpec; node: string }[], excluded: Set<string>): Promise<InstanceSpec[]> {
    const failed: InstanceSpec[] = [];
    await forEachLimit(batch, this.o.launchConcurrency ?? 16, async ({ spec, node }) => {
      const link = this.links.get(node);
      try {
        if (!link) throw new WireError('NoSuchNode', `node ${node} was deregistered`, 404);
        const withNetwork = this.o.network ? await this.o.network.prepareLaunch(spec) : spec;
        const { instance } = await link.client.call(nc.ncRunInstance, this.sealedFor(link, withNetwork));
        link.learn(instance);
        this.scheduleFlush();
        const r = this.reservations.get(spec.instanceId);
        if (r) r.completedAt = Date.now();
        started.push({ spec, node });
      } catch (err) {
        this.reservations.delete(spec.instanceId);
        excluded.add(node);
        const code = (err as WireError).code;
        if (code === 'ServiceUnavailable') {
          link?.markDown(err as Error);
          // Timed out: the node may have taken the launch after all. It is placed elsewhere (or the call
          // fails), so it must not run here too (a second guest with the same id and private address).
          link?.client.call(nc.ncTerminateInstance, { instanceId: spec.instanceId, force: true }, { timeoutMs: 60_000 }).catch(() => undefined);
        }
        this.o.log.warn({ err, node, instanceId: spec.instanceId }, 'node did not start the instance; trying another');
        failed.push(spec);
      }
    });
    return failed;
  }

  /** The launch as this node may read it: its volumes' CHAP secrets re-sealed with the node's key. */
  private sealedFor(link: NodeLink, spec: InstanceSpec): InstanceSpec {
    if (!spec.ebsVolumes?.length) return spec;
    const from = this.o.cloudKey?.() ?? '';
    return { ...spec, ebsVolumes: spec.ebsVolumes.map((v) => ({ ...v, target: mapTargetSecret(v.target, (sealed) => resealSecret(from, link.record.key, sealed)) })) };
  }

  private async rollback(started: { spec: InstanceSpec; node: string }[]): Promise<void> {
    await forEachLimit(started, this.o.launchConcurrency ?? 16, async ({ spec, node }) => {
      try {
        const res = await this.links.get(node)?.client.call(nc.ncTerminateInstance, { instanceId: spec.instanceId, force: true });
        if (res) this.updateState(node, spec.instanceId, res.state);
      } catch (err) {
        this.o.log.error({ err, node, instanceId: spec.instanceId }, 'could not roll back a launch');
      }
    });
  }

  private insufficient(minCount: number, fit: number, todo: InstanceSpec[]): WireError {
    const types = [...new Set(todo.map((s) => s.vmType.name))].join(', ');
    const enabled = [...this.links.values()].filter((l) => l.state === 'ENABLED').length;
    const nodes = enabled === 0 ? `no node of this cluster is ENABLED (${this.links.size} registered)` : `${enabled} of ${this.links.size} nodes are ENABLED`;
    return new WireError('InsufficientInstanceCapacity', `only ${fit} of the minimum ${minCount} instances (${types}) fit; ${nodes}; none were started`);
  }

  private async refreshPolicy(): Promise<void> {
    if (!this.o.currentPolicy) return;
    const policy = await this.o.currentPolicy().catch(() => this.scheduler.current);
    if (policy !== this.scheduler.current) {
      this.o.log.info({ from: this.scheduler.current, to: policy }, 'scheduling policy changed (cluster.schedulingpolicy)');
      this.scheduler.setPolicy(policy);
    }
  }

  /** Fresh numbers from every answering node before placing (Eucalyptus refreshes resources per run). */
  private async refreshResources(): Promise<void> {
    await Promise.all(
      [...this.links.values()]
        .filter((l) => l.state === 'ENABLED')
        .map(async (l) => {
          const asOf = Date.now();
          try {
            l.setResources(await l.client.call(nc.ncDescribeResource, {}), asOf);
            this.pruneReservations(l);
          } catch (err) {
            l.markDown(err as Error);
            this.o.log.warn({ node: l.name, detail: l.detail }, `node ${l.name} is NOTREADY`);
          }
        }),
    );
  }

  private freeRoom(link: NodeLink): Room {
    const r = link.resources!;
    const free = { cores: r.cores.available, memoryMiB: r.memoryMiB.available, diskGiB: r.diskGiB.available };
    const now = Date.now();
    for (const res of this.reservations.values()) {
      if (res.node !== link.name || (res.completedAt !== undefined && res.completedAt < link.resourcesAsOf)) continue;
      if (res.heldUntil !== undefined && res.heldUntil < now) continue;
      free.cores -= res.vmType.cores;
      free.memoryMiB -= res.vmType.memoryMiB;
      free.diskGiB -= res.vmType.diskGiB;
    }
    return free;
  }

  /** Instances not terminated on any node, and launches in flight. */
  liveInstanceIds(): Set<string> {
    const out = new Set(this.reservations.keys());
    for (const l of this.links.values()) for (const i of l.instances()) if (i.state !== 'terminated') out.add(i.instanceId);
    return out;
  }

  /** Hosts of the registered nodes (from their URLs). */
  nodeHosts(): string[] {
    return [...this.links.values()].map((l) => new URL(l.record.url).hostname.replace(/^\[|\]$/g, ''));
  }

  launchesInFlight(): number {
    return this.reservations.size;
  }

  private hasReservations(node: string): boolean {
    for (const r of this.reservations.values()) if (r.node === node) return true;
    return false;
  }

  private pruneReservations(link: NodeLink): void {
    for (const [id, r] of this.reservations) {
      if (r.node === link.name && r.completedAt !== undefined && r.completedAt < link.resourcesAsOf) this.reservations.delete(id);
    }
  }

  private release(placed: { spec: InstanceSpec }[]): void {
    for (const p of placed) this.reservations.delete(p.spec.instanceId);
  }

  // --- per-instance operations ---------------------------------------------------------------

  /**
   * The node an instance runs on or is being launched on (idempotency of RunInstances). An EBS-backed instance
   * its node reports terminated was stopped: this launch starts it again (on whichever node it is pinned to).
   */
  private knownNode(instanceId: string, spec?: InstanceSpec): string | undefined {
    const link = this.locate(instanceId);
    const r = this.reservations.get(instanceId);
    const launching = r?.heldUntil === undefined ? r?.node : undefined; // a placement is not a launch yet
    if (link && spec && bootsFromVolume(spec) && link.instance(instanceId)?.state === 'terminated') return launching;
    return link?.name ?? launching;
  }

  /**
   * The node that has the instance. Should two report it (a launch refused late on one node and
   * placed on another), the one where it is not terminated wins.
   */
  private locate(instanceId: string): NodeLink | undefined {
    let found: NodeLink | undefined;
    for (const l of this.links.values()) {
      const i = l.instance(instanceId);
      if (!i) continue;
      if (i.state !== 'terminated') return l;
      found ??= l;
    }
    return found;
  }

  /** The link to the node running an instance (InvalidInstanceID.NotFound when none does). */
  nodeOf(instanceId: string): NodeLink {
    return this.linkOf(instanceId);
  }

  private linkOf(instanceId: string): NodeLink {
    const link = this.locate(instanceId);
    if (!link) throw new WireError(NOT_FOUND, `instance ${instanceId} is not known to this cluster`, 404);
    return link;
  }

  private updateState(node: string, instanceId: string, state: InstanceStateName): void {
    const link = this.links.get(node);
    const i = link?.instance(instanceId);
    if (link && i) link.learn({ ...i, state });
    this.scheduleFlush();
  }

  async terminateInstances(req: Req<typeof cc.TerminateInstances>): Promise<Res<typeof cc.TerminateInstances>> {
    const unreachable: string[] = [];
    const results = await Promise.all(
      req.instanceIds.map(async (instanceId) => {
        const link = this.locate(instanceId);
        // Unknown here: already gone (terminated and forgotten by its node), so report it terminated.
        if (!link) return { instanceId, previousState: 'terminated' as const, state: 'terminated' as const };
        try {
          const res = await link.client.call(nc.ncTerminateInstance, { instanceId, force: req.force });
          this.updateState(link.name, instanceId, res.state);
          return res;
        } catch (err) {
          if ((err as WireError).code === NOT_FOUND) {
            link.forget(instanceId);
            this.scheduleFlush();
            return { instanceId, previousState: 'terminated' as const, state: 'terminated' as const };
          }
          unreachable.push(`${instanceId} (node ${link.name}: ${(err as Error).message})`);
          return undefined;
        }
      }),
    );
    if (unreachable.length > 0) {
      throw new WireError('ServiceUnavailable', `could not terminate ${unreachable.join(', ')}; the other instances were terminated, retry is safe`, 503);
    }
    return { instances: results.filter((r) => r !== undefined) };
  }

  async rebootInstances(req: Req<typeof cc.RebootInstances>): Promise<Res<typeof cc.RebootInstances>> {
    const targets = req.instanceIds.map((id) => ({ id, link: this.linkOf(id) }));
    await Promise.all(targets.map(({ id, link }) => link.client.call(nc.ncRebootInstance, { instanceId: id })));
    return {};
  }

  async getConsoleOutput(req: Req<typeof cc.GetConsoleOutput>): Promise<Res<typeof cc.GetConsoleOutput>> {
    return this.linkOf(req.instanceId).client.call(nc.ncGetConsoleOutput, { instanceId: req.instanceId });
  }

  // --- live migration (issue 7) ----------------------------------------------------------------

  /**
   * Instances being migrated, with the source's view of each when the move began. Between the source letting go
   * and the destination confirming (ncFinishMigration, slow on a loaded node) neither node reports the instance;
   * DescribeInstances reports it from here meanwhile, or the clc would take it for gone and terminate it (it did).
   */
  private readonly migrating = new Map<string, { node: string; view: NodeInstance }>();

  /**
   * Move a running instance to another node: read its launch from the source, have the destination prepare
   * (capacity held, disks, bridge and anti-spoofing, volume secrets), have the source migrate it, tell the
   * destination how it went. Its network stays as it is here (private address, DHCP lease, EIP DNAT, metadata):
   * the destination joins the same network by its own tunnel, and QEMU announces the guest's MAC from there.
   */
  async migrateInstance(req: Req<typeof cc.MigrateInstance>): Promise<Res<typeof cc.MigrateInstance>> {
    const id = req.instanceId;
    const source = this.linkOf(id);
    const inst = source.instance(id);
    if (inst?.state !== 'running') throw new WireError('IncorrectInstanceState', `instance ${id} is ${inst?.state ?? 'unknown'}; only a running instance can be migrated`, 409);
    const dest = this.links.get(req.dest);
    if (!dest) throw new WireError('NoSuchNode', `node ${req.dest} is not registered with this cluster (nodes: ${[...this.links.keys()].join(', ')})`, 404);
    if (dest === source) throw new WireError('InvalidParameterValue', `instance ${id} already runs on node ${req.dest}`);
    if (dest.state !== 'ENABLED') throw new WireError('IncorrectState', `node ${req.dest} is ${dest.state}${dest.detail ? ` (${dest.detail})` : ''}; migrate to an ENABLED node`, 409);
    if (source.state !== 'ENABLED') throw new WireError('IncorrectState', `node ${source.name}, where ${id} runs, is ${source.state}; it cannot migrate it now`, 409);
    if (this.migrating.has(id)) throw new WireError('IncorrectInstanceState', `instance ${id} is already being migrated`, 409);
    this.migrating.set(id, { node: source.name, view: inst });
    const started = Date.now();
    try {
      const { spec, launchTime } = await source.client.call(nc.ncMigrationSource, { instanceId: id }).catch((err: unknown) => {
        throw this.unsupported(err, source.name);
      });
      const free = dest.resources ? this.freeRoom(dest) : undefined;
      const t = spec.vmType;
      if (!free || t.cores > free.cores || t.memoryMiB > free.memoryMiB || t.diskGiB > free.diskGiB) {
        throw new WireError('InsufficientInstanceCapacity', `${id} (${t.name}) does not fit on node ${dest.name}${free ? ` (${free.cores} cores, ${free.memoryMiB} MiB, ${free.diskGiB} GiB free)` : ''}`);
      }
      this.reservations.set(id, { node: dest.name, vmType: t });
      const cloudKey = this.o.cloudKey?.() ?? '';
      const volumes = req.volumes.map((v) => ({ ...v, target: mapTargetSecret(v.target, (sealed) => resealSecret(cloudKey, dest.record.key, sealed)) }));
      const { destination } = await dest.client.call(nc.ncPrepareMigration, { spec, launchTime, volumes }, { timeoutMs: 600_000 }).catch((err: unknown) => {
        throw this.unsupported(err, dest.name);
      });
      // As a URL has it: an IPv6 address keeps its brackets.
      const host = new URL(dest.record.url).hostname;
      let moved: Res<typeof nc.ncMigrateInstance>;
      try {
        const libvirtUri = (this.o.migrateLibvirtUri ?? 'qemu+tcp://{host}/system').split('{host}').join(host);
        moved = await source.client.call(nc.ncMigrateInstance, { instanceId: id, libvirtUri, migrateUri: `tcp://${host}`, destination }, { timeoutMs: 900_000 });
      } catch (err) {
        await dest.client.call(nc.ncFinishMigration, { instanceId: id, succeeded: false }, { timeoutMs: 60_000 }).catch((e: unknown) => this.o.log.warn({ err: e, instanceId: id }, 'could not tell the destination the migration failed'));
        throw err;
      }
      // The guest runs on the destination now, whatever its NC answers: a busy one (its libvirtd serialising jobs) is
      // asked again (ncFinishMigration is idempotent) rather than the move called off with the guest already there.
      const finish = { instanceId: id, succeeded: true, ...(moved.console ? { console: moved.console } : {}) };
      let instance: Res<typeof nc.ncFinishMigration>['instance'];
      for (let attempt = 1; ; attempt++) {
        try {
          ({ instance } = await dest.client.call(nc.ncFinishMigration, finish, { timeoutMs: 120_000 }));
          break;
        } catch (err) {
          if ((err as WireError).code !== 'ServiceUnavailable' || attempt === 5) throw err;
          this.o.log.warn({ instanceId: id, dest: dest.name, attempt, err: (err as Error).message }, 'the destination did not confirm the migrated guest; asking again');
          await new Promise((r) => setTimeout(r, 2000));
        }
      }
      if (instance) dest.learn(instance);
      source.forget(id);
      this.scheduleFlush();
      const ms = Date.now() - started;
      this.o.log.info({ instanceId: id, source: source.name, dest: dest.name, ms }, 'instance migrated');
      return { instanceId: id, source: source.name, dest: dest.name, ms };
    } finally {
      this.migrating.delete(id);
      this.reservations.delete(id);
    }
  }

  /** A node of the previous wire version does not know the migration operations: say so. */
  private unsupported(err: unknown, node: string): unknown {
    const code = (err as WireError).code;
    if (code === 'UnknownOperation' || code === 'InvalidAction' || code === 'NotImplemented') {
      return new WireError('UnsupportedOperation', `node ${node} does not support live migration (upgrade its nc): ${(err as Error).message}`);
    }
    return err;
  }

  describeInstances(req: Req<typeof cc.DescribeInstances>): Res<typeof cc.DescribeInstances> {
    const wanted = req.instanceIds.length > 0 ? new Set(req.instanceIds) : undefined;
    const byId = new Map<string, Res<typeof cc.DescribeInstances>['instances'][number]>();
    for (const l of this.links.values()) {
      for (const i of l.instances()) {
        if (wanted && !wanted.has(i.instanceId)) continue;
        const seen = byId.get(i.instanceId);
        if (!seen || (seen.state === 'terminated' && i.state !== 'terminated')) {
          byId.set(i.instanceId, { ...i, node: l.name, ...(l.unreachableSince !== undefined ? { nodeUnreachableSince: l.unreachableSince } : {}) });
        }
      }
    }
    for (const [id, m] of this.migrating) {
      if (wanted && !wanted.has(id)) continue;
      const seen = byId.get(id);
      if (!seen || seen.state === 'terminated') byId.set(id, { ...m.view, node: m.node });
    }
    return { instances: [...byId.values()] };
  }

  describeResources(req: Req<typeof cc.DescribeResources>): Res<typeof cc.DescribeResources> {
    const nodes: Res<typeof cc.DescribeResources>['nodes'] = [];
    const availability = req.vmTypes.map((t) => ({ name: t.name, max: 0, available: 0 }));
    for (const l of this.links.values()) {
      const enabled = l.state === 'ENABLED' && l.resources !== undefined;
      const r: NodeResources = l.resources ?? unknownResources();
      const free = l.resources ? this.freeRoom(l) : { cores: 0, memoryMiB: 0, diskGiB: 0 };
      nodes.push({
        node: l.name,
        url: l.record.url,
        ...(l.lastSeen !== undefined ? { lastSeen: l.lastSeen } : {}),
        status: enabled ? r.status : 'disabled',
        hypervisor: r.hypervisor,
        cores: { max: r.cores.max, available: free.cores },
        memoryMiB: { max: r.memoryMiB.max, available: free.memoryMiB },
        diskGiB: { max: r.diskGiB.max, available: free.diskGiB },
      });
      if (!enabled) continue;
      const max = { cores: r.cores.max, memoryMiB: r.memoryMiB.max, diskGiB: r.diskGiB.max };
      req.vmTypes.forEach((t, i) => {
        availability[i]!.max += fitCount(max, t);
        availability[i]!.available += fitCount(free, t);
      });
    }
    return { nodes, availability };
  }
}

function unknownResources(): NodeResources {
  const zero = { max: 0, available: 0 };
  return { status: 'disabled', hypervisor: 'unknown', cores: zero, memoryMiB: zero, diskGiB: zero };
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
