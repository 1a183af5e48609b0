// What the core EC2 actions work on: the clc database, its clusters and the launch dispatcher.
import { z } from 'zod';
import type { MalleeConfig } from '@mallee/config';
import type { Db } from '@mallee/store';
import { Ec2Error, type Principal } from '@mallee/aws-protocol';
import type { Clusters } from '../clusters.js';
import type { Dispatcher } from '../dispatch.js';
import type { NetworkSync } from '../network/index.js';
import type { CloudProperties } from '../properties.js';
import type { ServiceStatus } from '../services.js';
import type { StorageContext } from '../storage/index.js';
import { instanceRows, type InstanceRow } from '../instances.js';

export interface Clc {
  db: Db;
  config: MalleeConfig;
  clusters: Clusters;
  dispatcher: Dispatcher;
  /** MANAGED networking: addresses, and keeping the clusters' networks in step (absent in some tests). */
  network?: NetworkSync;
  properties: CloudProperties;
  /** Every component's health (DescribeServices). */
  services(): Promise<ServiceStatus[]>;
  /** This clc's own URL (known once it listens). */
  url(): string;
  /** EBS (the zones' SCs): root volumes of EBS-backed instances (absent in some tests). */
  storage?: StorageContext;
}

/** A `.N` list; absent → [], and a lone un-numbered value counts as a list of one. */
export const list = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (v === undefined ? [] : Array.isArray(v) ? v.filter((x) => x !== undefined) : [v]), z.array(item));

/** Eucalyptus's admin convention: `verbose` among the ids (euca-describe-* verbose) widens a listing. */
export const VERBOSE = 'verbose';

/** Short (8) and long (17) hex forms are both well-formed, as in EC2. */
export const INSTANCE_ID = /^i-(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{17})$/;

export function malformedInstanceId(id: string): Ec2Error {
  return new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${id}" (expecting "i-...")`);
}

export function instancesNotFound(ids: string[]): Ec2Error {
  return new Ec2Error('InvalidInstanceID.NotFound', ids.length === 1
    ? `The instance ID '${ids[0]}' does not exist`
    : `The instance IDs '${ids.join(', ')}' do not exist`);
}

/**
 * The principal's own instances with these ids, in the order asked: InvalidInstanceID.Malformed for
 * a malformed id, InvalidInstanceID.NotFound for unknown ones and for other accounts' instances.
 */
export function ownInstances(db: Db, principal: Principal, ids: string[], opts: { anyAccount?: boolean } = {}): InstanceRow[] {
  for (const id of ids) if (!INSTANCE_ID.test(id)) throw malformedInstanceId(id);
  const unique = [...new Set(ids)];
  const rows = instanceRows(db, `instance_id IN (SELECT value FROM json_each(@ids))${opts.anyAccount ? '' : ' AND account_id = @account'}`,
    { ids: JSON.stringify(unique), account: principal.accountId });
  const byId = new Map(rows.map((r) => [r.instance_id, r]));
  const missing = unique.filter((id) => !byId.has(id));
  if (missing.length) throw instancesNotFound(missing);
  return unique.map((id) => byId.get(id)!);
}

export const unauthorized = () => new Ec2Error('UnauthorizedOperation', 'You are not authorized to perform this operation.');
