// Keeps each cluster's MANAGED network in step with the clc's records (the source of truth): the
// networks of live instances with their groups' rules, and every public-address mapping, sent as one
// ConfigureNetwork whenever they change (and every 30 s regardless, so a cc that lost its state —
// restarted, or rebuilt — has it back within one push). StartNetwork goes out before a launch;
// AssignAddress/UnassignAddress carry a user's address change at once.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { ActionContext, Ec2Action } from '@mallee/aws-protocol';
import type { Db } from '@mallee/store';
import { cc } from '@mallee/wire';
import type { Clusters } from '../clusters.js';
import { releaseAddressesOfGoneInstances } from './allocate.js';
import type { NetworkPlan } from './plan.js';

const LIVE = "('pending', 'running')";
const NETWORK_ACTIONS = new Set(['AuthorizeSecurityGroupIngress', 'RevokeSecurityGroupIngress', 'DeleteSecurityGroup', 'TerminateInstances', 'RunInstances']);
/** A cluster gets the whole state again after this long even when nothing changed. */
const RESEND_MS = 30_000;

export class NetworkSync {
  private readonly pushed = new Map<string, { hash: string; at: number }>();
  private soonTimer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly lastPoll = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly clusters: Clusters,
    readonly plan: NetworkPlan,
    private readonly log: Logger,
    /** The clc's poll interval: a zone that missed polls (its cc restarting, say) gets the whole state at once. */
    private readonly pollIntervalMs = 2000,
  ) {}

  /** The network spec (with resolved rules) of one group's network. */
  private networkSpec(vlan: number): cc.NetworkSpec | undefined {
    const net = this.db.prepare(`SELECT n.vlan, n.account_id, n.group_id, g.name FROM networks n
      LEFT JOIN security_groups g ON g.group_id = n.group_id WHERE n.vlan = ?`).get(vlan) as { vlan: number; account_id: string; group_id: string; name: string | null } | undefined;
    if (!net) return undefined;
    const rules = this.db.prepare(`SELECT r.protocol, r.from_port, r.to_port, r.cidr, s.vlan AS source_vlan, r.source_group_id
      FROM security_group_rules r LEFT JOIN networks s ON s.group_id = r.source_group_id
      WHERE r.group_id = ? ORDER BY r.rule_id`).all(net.group_id) as { protocol: string; from_port: number | null; to_port: number | null; cidr: string | null; source_vlan: number | null; source_group_id: string | null }[];
    return {
      vlan: net.vlan,
      accountId: net.account_id,
      groupId: net.group_id,
      groupName: net.name ?? net.group_id,
      rules: rules
        // A source group without a network has no instances: nothing to let in.
        .filter((r) => r.cidr !== null || r.source_vlan !== null)
        .map((r) => ({
          protocol: r.protocol,
          ...(r.from_port !== null ? { fromPort: r.from_port } : {}),
          ...(r.to_port !== null ? { toPort: r.to_port } : {}),
          ...(r.cidr !== null ? { cidr: r.cidr } : {}),
          ...(r.source_vlan !== null ? { sourceVlan: r.source_vlan } : {}),
        })),
    };
  }

  /** What the zone's cc must have: networks of its live instances, and their address mappings. */
  desired(zone: string): { networks: cc.NetworkSpec[]; addresses: cc.AddressMapping[]; instances: cc.NetworkInstance[] } {
    const vlans = this.db.prepare(`SELECT DISTINCT vlan FROM instances WHERE zone = ? AND vlan IS NOT NULL AND state IN ${LIVE} ORDER BY vlan`).pluck().all(zone) as number[];
    const networks = vlans.map((v) => this.networkSpec(v)).filter((n): n is cc.NetworkSpec => n !== undefined);
    const addresses = (this.db.prepare(`SELECT a.public_ip, i.private_ip, i.instance_id FROM addresses a JOIN instances i ON i.instance_id = a.instance_id
      WHERE i.zone = ? AND i.state IN ${LIVE} AND i.private_ip IS NOT NULL ORDER BY a.public_ip`).all(zone) as { public_ip: string; private_ip: string; instance_id: string }[])
      .map((a) => ({ publicIp: a.public_ip, privateIp: a.private_ip, instanceId: a.instance_id }));
    const instances = (this.db.prepare(`SELECT instance_id, vlan, private_ip, mac_address FROM instances
      WHERE zone = ? AND vlan IS NOT NULL AND private_ip IS NOT NULL AND mac_address IS NOT NULL AND state IN ${LIVE} ORDER BY instance_id`).all(zone) as { instance_id: string; vlan: number; private_ip: string; mac_address: string }[])
      .map((i) => ({ instanceId: i.instance_id, vlan: i.vlan, privateIp: i.private_ip, macAddress: i.mac_address }));
    return { networks, addresses, instances };
  }

  /** Bring a network up on the zone's cc before its first instance starts there. */
  async startNetwork(zone: string, vlan: number): Promise<void> {
    if (!this.plan.managed) return;
    const spec = this.networkSpec(vlan);
    if (spec) await this.clusters.client(zone).call(cc.StartNetwork, spec);
  }

  async assign(zone: string, mapping: cc.AddressMapping): Promise<void> {
    if (this.clusters.get(zone)) await this.clusters.client(zone).call(cc.AssignAddress, mapping);
  }

  /** Unmaps the address on every cluster (it may have been mapped in any zone). */
  async unassign(publicIp: string): Promise<void> {
    await Promise.all(this.clusters.list().map((c) => this.clusters.client(c.name).call(cc.UnassignAddress, { publicIp })));
  }

  /** Push every zone's state soon (after a user action that changed rules, instances or addresses). */
  soon(): void {
    this.soonTimer ??= setTimeout(() => {
      this.soonTimer = undefined;
      for (const c of this.clusters.list()) void this.push(c.name, true);
    }, 50);
  }

  /** After each poll of a zone: release addresses of instances that went, push when something moved. */
  async afterPoll(zone: string): Promise<void> {
    if (releaseAddressesOfGoneInstances(this.db) > 0) this.soon();
    const now = Date.now();
    const last = this.lastPoll.get(zone);
    this.lastPoll.set(zone, now);
    // A cc that did not answer for a while may have restarted on a fresh home: it gets everything now.
    await this.push(zone, last !== undefined && now - last > Math.max(3000, 2.5 * this.pollIntervalMs));
  }

  /** ConfigureNetwork with the zone's whole state when it changed, when forced, or every RESEND_MS. */
  push(zone: string, force: boolean): Promise<void> {
    if (!this.plan.managed) return Promise.resolve();
    const running = this.inFlight.get(zone);
    if (running) return force ? running.then(() => this.push(zone, true)) : running;
    const work = (async () => {
      const state = this.desired(zone);
      const hash = createHash('sha256').update(JSON.stringify(state)).digest('hex');
      const last = this.pushed.get(zone);
      if (!force && last && last.hash === hash && Date.now() - last.at < RESEND_MS) return;
      try {
        await this.clusters.client(zone).call(cc.ConfigureNetwork, state);
        this.pushed.set(zone, { hash, at: Date.now() });
      } catch (err) {
        this.pushed.delete(zone);
        this.log.warn({ zone, err: (err as Error).message }, 'could not configure the cluster\'s network; retrying at the next poll');
      }
    })().finally(() => this.inFlight.delete(zone));
    this.inFlight.set(zone, work);
    return work;
  }

  /** The actions that change what a cluster's network must look like push it soon after they succeed. */
  watch(actions: Ec2Action[]): Ec2Action[] {
    return actions.map((a) =>
      !NETWORK_ACTIONS.has(a.name) ? a : { ...a, handler: async (input: unknown, ctx: ActionContext) => {
        const result = await a.handler(input, ctx);
        this.soon();
        return result;
      } },
    );
  }

  stop(): void {
    if (this.soonTimer) clearTimeout(this.soonTimer);
    this.soonTimer = undefined;
  }
}
