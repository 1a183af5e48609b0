// The admin wire operations the `mallee` CLI calls (sender "admin"): accounts, keys and certificates,
// Walrus, cluster and node registration, the health of every component (DescribeServices) and cloud
// properties.
import type { Db } from '@mallee/store';
import { admin, cc, handler, properties as propertyOps, WireError, type WireHandler } from '@mallee/wire';
import { accountByName, createAccessKey, createAccount, getCredentials, listAccounts, userOf } from './accounts.js';
import { accountCertificates, ensureCloudCa, issueUserCertificate } from './certificates.js';
import type { Clusters } from './clusters.js';
import type { WalrusLink } from './walrus.js';
import type { CloudProperties } from './properties.js';
import type { ServiceStatus } from './services.js';

export interface AdminDeps {
  db: Db;
  /** The clc's home (the cloud CA lives in its keys/). */
  home: string;
  clusters: Clusters;
  walrus: WalrusLink;
  properties: CloudProperties;
  /** Every component's health (services.ts). */
  services(): Promise<ServiceStatus[]>;
  /** Ask for a poll now (after a registration, so the new component shows up without waiting). */
  pollSoon(): void;
}

const fromAdmin = (from: string) => from === admin.ADMIN_SENDER;
/** Every component with a key here reads properties: the CLI, Walrus, SCs and CCs (sc:<zone>, cc:<zone>). */
const readsProperties = (from: string) => fromAdmin(from) || from === 'walrus' || /^(sc|cc)(:|$)/.test(from);

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
    handler(admin.DeregisterWalrus, (req) => {
      d.walrus.deregister(req.name);
      return {};
    }, fromAdmin),
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
    handler(admin.DeregisterNodeAdmin, async (req) => {
      if (!d.clusters.get(req.cluster)) throw new WireError('NoSuchEntity', `no cluster named ${req.cluster}`, 404);
      await d.clusters.client(req.cluster).call(cc.DeregisterNode, { node: req.node });
      d.pollSoon();
      return {};
    }, fromAdmin),
    handler(admin.DescribeServices, async () => ({ services: await d.services() }), fromAdmin),
    handler(propertyOps.DescribeProperties, (req) => ({ properties: d.properties.describe(req) }), readsProperties),
    handler(admin.ModifyPropertyValue, (req) => {
      if (req.reset && req.value !== undefined) throw new WireError('InvalidParameterCombination', 'give a value or reset, not both');
      if (!req.reset && req.value === undefined) throw new WireError('MissingParameter', 'a value (or reset) is required');
      return d.properties.modify(req.name, req.reset ? undefined : req.value);
    }, fromAdmin),
  ];
}
