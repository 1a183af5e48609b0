// The admin wire operations the `mallee` CLI calls (sender "admin"): accounts, keys and certificates,
// Walrus, cluster and node registration, and the health of every component (DescribeServices).
import type { Db } from '@mallee/store';
import { admin, cc, handler, WireError, type WireHandler } from '@mallee/wire';
import type { z } from 'zod';
import { accountByName, createAccessKey, createAccount, getCredentials, listAccounts, userOf } from './accounts.js';
import { accountCertificates, ensureCloudCa, issueUserCertificate } from './certificates.js';
import type { Clusters } from './clusters.js';
import type { WalrusLink } from './walrus.js';

type ServiceStatus = z.infer<typeof admin.serviceStatus>;

export interface AdminDeps {
  db: Db;
  /** The clc's home (the cloud CA lives in its keys/). */
  home: string;
  clusters: Clusters;
  walrus: WalrusLink;
  region: string;
  url(): string;
  /** Ask for a poll now (after a registration, so the new component shows up without waiting). */
  pollSoon(): void;
}

const fromAdmin = (from: string) => from === admin.ADMIN_SENDER;

async function describeServices(d: AdminDeps): Promise<ServiceStatus[]> {
  const now = new Date().toISOString();
  const services: ServiceStatus[] = [{ type: 'clc', name: 'clc', partition: d.region, url: d.url(), state: 'ENABLED', lastContact: now }, ...(await d.walrus.serviceStatus())];
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
    handler(admin.GetCredentials, async (req) => ({ ...getCredentials(d.db, req.accountName), cloudCertificate: (await ensureCloudCa(d.home)).certificate }), fromAdmin),
    handler(admin.CreateCertificate, async (req) => {
      const user = userOf(d.db, req.accountName, req.userName);
      const issued = await issueUserCertificate(d.db, d.home, user);
      return { ...issued, userName: user.userName };
    }, fromAdmin),
    handler(admin.DescribeCertificates, (req) => {
      const account = accountByName(d.db, req.accountName);
      if (!account) throw new WireError('NoSuchEntity', `no account named ${req.accountName}`, 404);
      return { certificates: accountCertificates(d.db, account.accountId).map(({ certificateId, userId, fingerprint }) => ({ certificateId, userId, fingerprint })) };
    }, fromAdmin),
    handler(admin.RegisterWalrus, (req) => ({ name: 'walrus', key: d.walrus.register(req.url) }), fromAdmin),
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
  ];
}
