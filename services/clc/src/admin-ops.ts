// The admin wire operations the `mallee` CLI calls (sender "admin"): accounts and keys, cluster and
// node registration, the health of every component (DescribeServices) and cloud properties.
import type { Db } from '@mallee/store';
import { admin, cc, handler, properties as propertyOps, WireError, type WireHandler } from '@mallee/wire';
import type { z } from 'zod';
import { createAccessKey, createAccount, getCredentials, listAccounts } from './accounts.js';
import type { Clusters } from './clusters.js';
import type { CloudProperties } from './properties.js';

type ServiceStatus = z.infer<typeof admin.serviceStatus>;

export interface AdminDeps {
  db: Db;
  clusters: Clusters;
  properties: CloudProperties;
  region: string;
  url(): string;
  /** Ask for a poll now (after a registration, so the new component shows up without waiting). */
  pollSoon(): void;
}

const fromAdmin = (from: string) => from === admin.ADMIN_SENDER;
/** Every component with a key here reads properties: the CLI, Walrus, SCs and CCs (sc:<zone>, cc:<zone>). */
const readsProperties = (from: string) => fromAdmin(from) || from === 'walrus' || /^(sc|cc)(:|$)/.test(from);

async function describeServices(d: AdminDeps): Promise<ServiceStatus[]> {
  const now = new Date().toISOString();
  const services: ServiceStatus[] = [{ type: 'clc', name: 'clc', partition: d.region, url: d.url(), state: 'ENABLED', lastContact: now }];
  const clusters = d.clusters.list();
  const nodes = await Promise.all(clusters.map(async (c) => {
    if (c.state !== 'ENABLED') return [];
    try {
      const res = await d.clusters.client(c.name).call(cc.DescribeNodes, {}, { timeoutMs: 5000 });
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
  return services;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function adminHandlers(d: AdminDeps): WireHandler<any, any>[] {
  return [
    handler(admin.CreateAccount, (req) => createAccount(d.db, req.name), fromAdmin),
    handler(admin.DescribeAccounts, () => ({ accounts: listAccounts(d.db).map((a) => ({ accountId: a.accountId, accountName: a.name })) }), fromAdmin),
    handler(admin.CreateAccessKey, (req) => createAccessKey(d.db, req.accountName), fromAdmin),
    handler(admin.GetCredentials, (req) => getCredentials(d.db, req.accountName), fromAdmin),
    handler(admin.RegisterCluster, (req) => {
      const key = d.clusters.register(req.name, req.url);
      d.pollSoon();
      return { name: req.name, key };
    }, fromAdmin),
    handler(admin.DeregisterCluster, (req) => {
      d.clusters.deregister(req.name);
      return {};
    }, fromAdmin),
    handler(admin.RegisterNodeAdmin, async (req) => {
      if (!d.clusters.get(req.cluster)) throw new WireError('NoSuchEntity', `no cluster named ${req.cluster}`, 404);
      const res = await d.clusters.client(req.cluster).call(cc.RegisterNode, { node: req.node, url: req.url });
      d.pollSoon();
      return res;
    }, fromAdmin),
    handler(admin.DescribeServices, async () => ({ services: await describeServices(d) }), fromAdmin),
    handler(propertyOps.DescribeProperties, (req) => ({ properties: d.properties.describe(req) }), readsProperties),
    handler(admin.ModifyPropertyValue, (req) => {
      if (req.reset && req.value !== undefined) throw new WireError('InvalidParameterCombination', 'give a value or reset, not both');
      if (!req.reset && req.value === undefined) throw new WireError('MissingParameter', 'a value (or reset) is required');
      return d.properties.modify(req.name, req.reset ? undefined : req.value);
    }, fromAdmin),
  ];
}
