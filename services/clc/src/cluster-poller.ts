// The clc's view of its clusters, refreshed every POLL_INTERVAL: cc.DescribeInstances moves instance
// states along, cc.DescribeResources gives free/max per type and marks the zone ENABLED or NOTREADY.
// The first successful poll of each cluster after a start re-sends the pending launches the cc does
// not know (a clc killed between recording a launch and sending it): the cc is idempotent by id.
import type { Logger } from 'pino';
import type { Db } from '@mallee/store';
import { cc, WireError } from '@mallee/wire';

type CcInstance = cc.CcInstance;
import type { Clusters } from './clusters.js';
import type { Dispatcher } from './dispatch.js';
import { listInstanceTypes, vmTypeOf } from './instance-types.js';
import { groupsOf, instanceRows, purgeTerminated, setState, specOf, type InstanceRow } from './instances.js';

export interface PollerOptions {
  db: Db;
  clusters: Clusters;
  dispatcher: Dispatcher;
  log: Logger;
  pollIntervalMs: number;
  /** How long terminated instances stay visible (cloud.vmstate.terminated_time), read at each poll. */
  retentionMs: number | (() => number);
  /** A launch the cc has not reported for this long is sent again; default max(3 polls, 10 s). */
  staleLaunchMs?: number;
  /** After each successful poll of a zone (the network sync releases addresses and pushes changes). */
  afterPoll?: (zone: string) => Promise<void>;
  /**
   * Asked before each round: whether this clc moves states along (PollerLease). When not, a round only
   * refreshes this clc's view of each cluster (capacity, contact). Default: always.
   */
  leading?: () => boolean;
}

/** Polls in a row an instance the cc used to report may be missing before it counts as gone (a cc restarting rebuilds its view from its nodes). */
const LOST_AFTER_POLLS = 3;
/** A launch the cc has not reported for this long (and at least three polls) is sent to it again. */
const STALE_LAUNCH_MS = 10_000;
/** Polls in a row the cc must report an instance the clc has as terminated before the clc terminates it there again. */
const ZOMBIE_AFTER_POLLS = 2;
/** How long a discarded launch is remembered once its cc no longer runs it (a cc down longer than this keeps it unknown). */
const DISCARD_KEEP_MS = 24 * 3600_000;

export class ClusterPoller {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly reconciled = new Set<string>();
  private readonly missedPolls = new Map<string, number>();
  /** Instances the cc runs that the clc has as terminated: polls in a row seen. */
  private readonly zombiePolls = new Map<string, number>();
  /** Instances a cc runs that this clc has no record of, by zone (reported, not touched). */
  private readonly unknown = new Map<string, Set<string>>();
  private lastPollMs = 0;

  constructor(private readonly o: PollerOptions) {}

  start(): void {
    void this.pollAll();
    this.timer = setInterval(() => void this.pollAll(), this.o.pollIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Instances the clusters run that the clc has no record of (e.g. a clc restored from an older backup). */
  unknownInstances(): { zone: string; instanceId: string }[] {
    return [...this.unknown].flatMap(([zone, ids]) => [...ids].map((instanceId) => ({ zone, instanceId })));
  }

  lastPollSeconds(): number {
    return this.lastPollMs / 1000;
  }

  /** One round over every cluster; overlapping calls share the round in progress. */
  pollAll(): Promise<void> {
    this.running ??= (async () => {
      const started = performance.now();
      try {
        const leading = this.o.leading?.() ?? true;
        await Promise.all(this.o.clusters.list().map((c) => this.pollCluster(c.name, leading)));
        if (!leading) return;
        const purged = purgeTerminated(this.o.db, new Date(Date.now() - (typeof this.o.retentionMs === 'function' ? this.o.retentionMs() : this.o.retentionMs)));
        if (purged) this.o.log.info({ purged }, 'purged terminated instances past their retention');
      } catch (err) {
        this.o.log.error({ err }, 'cluster poll failed');
      } finally {
        this.lastPollMs = performance.now() - started;
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async pollCluster(zone: string, leading: boolean): Promise<void> {
    const { clusters, log } = this.o;
    let reports: CcInstance[];
    const askedAt = new Date().toISOString();
    try {
      const client = clusters.client(zone);
      const vmTypes = listInstanceTypes(this.o.db).map(vmTypeOf);
      const [instances, resources] = await Promise.all([
        client.call(cc.DescribeInstances, { instanceIds: [] }),
        client.call(cc.DescribeResources, { vmTypes }),
      ]);
      if (!clusters.get(zone)) return; // deregistered while we asked
      reports = instances.instances;
      clusters.recordResources(zone, resources);
      clusters.recordUnreachable(zone, new Map(reports.flatMap((r) => (r.nodeUnreachableSince ? [[r.instanceId, r.nodeUnreachableSince] as const] : []))));
      clusters.recordContact(zone, true);
    } catch (err) {
      const detail = err instanceof WireError ? `${err.code}: ${err.message}` : (err as Error).message;
      if (clusters.get(zone)?.state !== 'NOTREADY') log.warn({ zone, detail }, 'cluster not answering; its instances keep their last known state');
      if (clusters.get(zone)) clusters.recordContact(zone, false, detail);
      return;
    }
    if (!leading) {
      // Another clc moves states along; when this one takes over, its first round re-sends what the cc lost.
      this.reconciled.delete(zone);
      return;
    }
    this.applyReports(zone, reports, askedAt);
    if (!this.reconciled.has(zone)) {
      this.reconciled.add(zone);
      await this.redispatchUnknown(zone, reports);
    } else {
      // Between restarts too: a launch the cc never came to report (it lost it before its nodes did) is sent again.
      await this.redispatchUnknown(zone, reports, new Date(Date.now() - (this.o.staleLaunchMs ?? Math.max(3 * this.o.pollIntervalMs, STALE_LAUNCH_MS))));
    }
    await this.retryTerminations(zone, reports);
    await this.settleOrphans(zone, reports);
    await this.o.afterPoll?.(zone).catch((err: unknown) => log.warn({ zone, err }, 'network sync after the poll failed'));
  }

  /**
   * Moves each live instance of the zone to the state its cc reports. A stopped instance has no guest anywhere:
   * it is not among these rows, so no report (or its absence) moves it. `askedAt`: when the reports were asked
   * for; an instance whose state changed since (a stop or start meanwhile) waits for the next poll.
   */
  applyReports(zone: string, reports: CcInstance[], askedAt?: string): void {
    const { db, dispatcher } = this.o;
    const byId = new Map(reports.map((r) => [r.instanceId, r]));
    const rows = db.prepare(`SELECT instance_id, state, state_reason, state_changed_at, reported, node, private_ip, public_ip, mac_address, root_device_type FROM instances
      WHERE zone = ? AND state IN ('pending', 'running', 'shutting-down', 'stopping')`).all(zone) as ReportedRow[];
    const update = db.prepare(`UPDATE instances SET reported = 1, node = @node, private_ip = COALESCE(@privateIp, private_ip),
      public_ip = COALESCE(@publicIp, public_ip), mac_address = COALESCE(@mac, mac_address) WHERE instance_id = @id`);
    const setReason = db.prepare('UPDATE instances SET state_reason = ? WHERE instance_id = ?');
    db.transaction(() => {
      for (const row of rows) {
        const rep = byId.get(row.instance_id);
        if (askedAt && row.state_changed_at > askedAt) continue;
        if (row.root_device_type === 'ebs' && dispatcher.isInFlight(row.instance_id)) continue; // a start on its way: older reports say nothing of it
        if (rep) {
          this.missedPolls.delete(row.instance_id);
          // Most polls change nothing: write only what moved (thousands of instances per poll).
          const moved = !row.reported || row.node !== rep.node || (rep.privateIp !== undefined && rep.privateIp !== row.private_ip)
            || (rep.publicIp !== undefined && rep.publicIp !== row.public_ip) || (rep.macAddress !== undefined && rep.macAddress !== row.mac_address);
          if (moved) update.run({ id: row.instance_id, node: rep.node, privateIp: rep.privateIp ?? null, publicIp: rep.publicIp ?? null, mac: rep.macAddress ?? null });
          const next = nextState(row, rep);
          // A reason the user's own termination gave (or an earlier failure) stays unless the cc says why.
          const reason = row.state === 'stopping' ? row.state_reason
            : rep.stateReason ?? (next === 'shutting-down' || next === 'terminated' ? row.state_reason : null);
          if (next !== row.state) setState(db, row.instance_id, next, reason);
          else if (rep.stateReason && rep.stateReason !== row.state_reason) setReason.run(rep.stateReason, row.instance_id);
          continue;
        }
        // Not (yet) known to the cc: a launch still being sent, or one a restart will re-send.
        if (dispatcher.isInFlight(row.instance_id) || (row.state === 'pending' && !row.reported)) continue;
        const missed = (this.missedPolls.get(row.instance_id) ?? 0) + 1;
        this.missedPolls.set(row.instance_id, missed);
        if (missed < (row.state === 'shutting-down' || row.state === 'stopping' ? 2 : LOST_AFTER_POLLS)) continue;
        this.missedPolls.delete(row.instance_id);
        if (row.state === 'shutting-down') setState(db, row.instance_id, 'terminated', row.state_reason);
        else if (row.state === 'stopping') setState(db, row.instance_id, 'stopped', row.state_reason);
        else if (row.root_device_type === 'ebs') {
          // Its guest is gone but its volumes are not: stopped, to be started again (EC2 stops a lost EBS-backed instance).
          this.o.log.warn({ zone, instanceId: row.instance_id, state: row.state }, 'cluster no longer reports the EBS-backed instance; it is stopped');
          setState(db, row.instance_id, 'stopped', 'Server.InternalError: the instance disappeared from its cluster');
        } else {
          // EC2: an instance that is gone goes through shutting-down to terminated.
          this.o.log.warn({ zone, instanceId: row.instance_id, state: row.state }, 'cluster no longer reports the instance; terminating it');
          setState(db, row.instance_id, 'shutting-down', 'Server.InternalError: the instance disappeared from its cluster');
          this.missedPolls.set(row.instance_id, 1);
        }
      }
    })();
  }

  /**
   * Pending launches the cc does not know are sent again, per reservation: after a restart all of them
   * (the clc may have died before sending), later only those never reported and older than `olderThan`.
   */
  private async redispatchUnknown(zone: string, reports: CcInstance[], olderThan?: Date): Promise<void> {
    const { db, dispatcher, log } = this.o;
    const known = new Set(reports.map((r) => r.instanceId));
    const pending = instanceRows(db, "zone = @zone AND state = 'pending'", { zone })
      .filter((r) => !known.has(r.instance_id) && !dispatcher.isInFlight(r.instance_id))
      .filter((r) => !olderThan || (!r.reported && r.state_changed_at < olderThan.toISOString()));
    if (!pending.length) return;
    const groups = groupsOf(db, pending.map((r) => r.instance_id));
    const byReservation = new Map<string, InstanceRow[]>();
    for (const r of pending) byReservation.set(r.reservation_id, [...(byReservation.get(r.reservation_id) ?? []), r]);
    for (const [reservationId, rows] of byReservation) {
      const specs = rows.map((r) => specOf(r, (groups.get(r.instance_id) ?? []).map((g) => g.groupName)));
      log.info({ zone, reservationId, instances: specs.map((s) => s.instanceId) }, 're-sending launches the cluster does not know');
      try {
        const placed = new Set((await dispatcher.run(zone, specs, 1)).map((p) => p.instanceId));
        for (const r of rows) if (!placed.has(r.instance_id)) setState(db, r.instance_id, 'terminated', 'Server.InsufficientInstanceCapacity: no room left in the zone');
      } catch (err) {
        if (err instanceof WireError && err.code === 'InsufficientInstanceCapacity') {
          for (const r of rows) setState(db, r.instance_id, 'terminated', `Server.InsufficientInstanceCapacity: ${err.message}`);
        } else {
          log.warn({ zone, reservationId, err }, 're-sending launches failed; will retry at a later poll');
        }
      }
    }
  }

  /**
   * Instances the cc runs that the clc does not have as live. One the clc has as terminated (it was lost and given up
   * on, or its launch was written off) is terminated at the cc once two polls in a row show it: EC2 never brings a
   * terminated instance back, and its addresses may already be another's. One whose launch RunInstances discarded
   * (`discarded_launches`: the cc failed or was killed mid-launch, and was down when told to drop it) is terminated
   * at once: nobody was ever told it exists. One the clc has no record of at all (a clc restored from an older
   * backup) is not touched: it is logged once and counted (`mallee_clc_unknown_instances`), for the admin to look
   * at; its owner may still be using it.
   */
  private async settleOrphans(zone: string, reports: CcInstance[]): Promise<void> {
    const { db, clusters, log, dispatcher } = this.o;
    const live = reports.filter((r) => (r.state === 'pending' || r.state === 'running') && !dispatcher.isInFlight(r.instanceId));
    const rows = live.length
      ? new Map((db.prepare('SELECT instance_id, state FROM instances WHERE instance_id IN (SELECT value FROM json_each(?))').all(JSON.stringify(live.map((r) => r.instanceId))) as { instance_id: string; state: string }[])
        .map((r) => [r.instance_id, r.state]))
      : new Map<string, string>();
    const zombies: string[] = [];
    const unknown = new Set<string>();
    const seen = new Set<string>();
    const notKnown = live.filter((r) => !rows.has(r.instanceId)).map((r) => r.instanceId);
    const discarded = new Set(notKnown.length
      ? db.prepare('SELECT instance_id FROM discarded_launches WHERE instance_id IN (SELECT value FROM json_each(?))').pluck().all(JSON.stringify(notKnown)) as string[]
      : []);
    // Discarded launches the cc no longer runs (gone, or terminated) are forgotten after a while.
    const reported = reports.filter((r) => r.state === 'pending' || r.state === 'running').map((r) => r.instanceId);
    db.prepare('DELETE FROM discarded_launches WHERE zone = ? AND discarded_at < ? AND instance_id NOT IN (SELECT value FROM json_each(?))')
      .run(zone, new Date(Date.now() - DISCARD_KEEP_MS).toISOString(), JSON.stringify(reported));
    for (const r of live) {
      const state = rows.get(r.instanceId);
      if (state === undefined && discarded.has(r.instanceId)) {
        zombies.push(r.instanceId);
        continue;
      }
      if (state === undefined) {
        unknown.add(r.instanceId);
        if (!this.unknown.get(zone)?.has(r.instanceId)) {
          log.warn({ zone, instanceId: r.instanceId, node: r.node, ownerId: r.ownerId, state: r.state }, 'the cluster runs an instance this clc has no record of; leaving it alone (terminate it with the cc, or restore the clc database that knew it)');
        }
        continue;
      }
      if (state !== 'terminated') continue;
      seen.add(r.instanceId);
      const n = (this.zombiePolls.get(r.instanceId) ?? 0) + 1;
      this.zombiePolls.set(r.instanceId, n);
      if (n >= ZOMBIE_AFTER_POLLS) zombies.push(r.instanceId);
    }
    for (const id of this.zombiePolls.keys()) if (!seen.has(id) && !reports.some((r) => r.instanceId === id)) this.zombiePolls.delete(id);
    if (unknown.size) this.unknown.set(zone, unknown);
    else this.unknown.delete(zone);
    if (!zombies.length) return;
    log.warn({ zone, instanceIds: zombies }, 'the cluster still runs instances this clc has as terminated or whose launch it discarded; terminating them there');
    try {
      await clusters.client(zone).call(cc.TerminateInstances, { instanceIds: zombies, force: false });
      for (const id of zombies) this.zombiePolls.delete(id);
    } catch (err) {
      log.warn({ zone, instanceIds: zombies, err }, 'terminating instances the clc has as terminated failed; will retry at the next poll');
    }
  }

  /** Instances the user terminated or stopped that the cc still runs (it was unreachable at the time). */
  private async retryTerminations(zone: string, reports: CcInstance[]): Promise<void> {
    const { db, clusters, log } = this.o;
    const live = new Set(reports.filter((r) => r.state === 'pending' || r.state === 'running').map((r) => r.instanceId));
    const ids = instanceRows(db, "zone = @zone AND state IN ('shutting-down', 'stopping')", { zone }).map((r) => r.instance_id).filter((id) => live.has(id));
    if (!ids.length) return;
    try {
      await clusters.client(zone).call(cc.TerminateInstances, { instanceIds: ids, force: false });
    } catch (err) {
      log.warn({ zone, instanceIds: ids, err }, 'retrying termination failed; will retry at the next poll');
    }
  }
}

type ReportedRow = Pick<InstanceRow, 'instance_id' | 'state' | 'state_reason' | 'state_changed_at' | 'reported' | 'node' | 'private_ip' | 'public_ip' | 'mac_address' | 'root_device_type'>;

/**
 * The state a reported instance moves to: a termination or stop the user asked for is never undone by a stale
 * report. An EBS-backed instance whose guest ended (a stop, or the guest powered itself off) is stopped, not terminated.
 */
function nextState(row: ReportedRow, rep: CcInstance): InstanceRow['state'] {
  if (row.state === 'stopping') return rep.state === 'terminated' ? 'stopped' : 'stopping';
  if (row.root_device_type === 'ebs' && row.state === 'running' && rep.state === 'terminated') return 'stopped';
  if (row.state === 'shutting-down' && (rep.state === 'pending' || rep.state === 'running')) return 'shutting-down';
  if (row.state === 'running' && rep.state === 'pending') return 'running';
  return rep.state;
}
