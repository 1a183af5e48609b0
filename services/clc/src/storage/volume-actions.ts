// CreateVolume, DeleteVolume, DescribeVolumes, DescribeVolumeStatus: the clc records the user's intent,
// the zone's SC does the work (in the background for restores) and the poller moves the state along.
import { z } from 'zod';
import { defineEc2Action, Ec2Error, errors, q, type Principal } from '@mallee/aws-protocol';
import { sc, WireError } from '@mallee/wire';
import type { Db } from '@mallee/store';
import { applyFilters, applyTagSpecifications, deleteTagsFor, newId, tagSpecificationsShape } from '../resources/index.js';
import { list, VERBOSE } from '../actions/context.js';
import type { Clusters } from '../clusters.js';
import type { StorageControllers } from './controllers.js';
import { ownVolumes, restorableSnapshot, volumeViews, volumeXml, type VolumeRow, type VolumeView } from './records.js';

export interface StorageContext {
  db: Db;
  controllers: StorageControllers;
  clusters: Clusters;
}

/** EC2's limits for the standard (magnetic) type. */
const MIN_GIB = 1;
const MAX_GIB = 1024;
const VOLUME_TYPES = ['standard', 'gp2', 'gp3', 'io1', 'io2', 'sc1', 'st1'];

export function scUnavailable(zone: string, err: unknown): Ec2Error {
  return new Ec2Error('ServiceUnavailable', `The storage controller of availability zone ${zone} is not available now (${(err as Error).message}); try again later.`, 503);
}

const flag = () => q.bool().optional();

const createVolumeShape = z.object({
  Size: q.int().optional(),
  SnapshotId: z.string().optional(),
  AvailabilityZone: z.string().optional(),
  VolumeType: z.string().optional(),
  Encrypted: flag(),
  Iops: q.int().optional(),
  ClientToken: z.string().optional(),
  TagSpecification: tagSpecificationsShape,
});

type CreateVolumeInput = z.infer<typeof createVolumeShape>;

/** What a ClientToken stands for: the request's parameters but the token, as JSON in a fixed order, defaults filled in. */
function requestOf(input: CreateVolumeInput): string {
  return JSON.stringify([input.AvailabilityZone, input.Size ?? null, input.SnapshotId ?? null, input.VolumeType ?? 'standard',
    input.Encrypted ?? false, input.Iops ?? null, input.TagSpecification]);
}

/**
 * The volume an earlier CreateVolume with this token made, as EC2: the same request gets the same volume (a
 * retry whose answer was lost makes no second one), another request with the token is refused. A token is the
 * account's; it is free again once its volume is deleted (or its creation failed and the row went).
 */
function volumeByClientToken(db: Db, accountId: string, input: CreateVolumeInput & { ClientToken: string }): VolumeRow | undefined {
  if (input.ClientToken.length > 64) throw errors.invalidValue('ClientToken', input.ClientToken, 'ClientToken is limited to 64 characters.');
  const earlier = db.prepare('SELECT * FROM volumes WHERE account_id = ? AND client_token = ?').get(accountId, input.ClientToken) as VolumeRow | undefined;
  if (earlier && earlier.client_request !== requestOf(input)) {
    throw new Ec2Error('IdempotentParameterMismatch', `The ClientToken '${input.ClientToken}' was used for volume ${earlier.volume_id} with other parameters; use another ClientToken for this request.`);
  }
  return earlier;
}

function createVolumeXml(db: Db, row: VolumeRow): Record<string, unknown> {
  const [view] = volumeViews(db, [row]);
  const x = volumeXml(view!);
  delete x.attachmentSet;
  return x;
}

async function createVolume(s: StorageContext, principal: Principal, input: CreateVolumeInput): Promise<Record<string, unknown>> {
  const { db, controllers } = s;
  if (input.ClientToken !== undefined) {
    const earlier = volumeByClientToken(db, principal.accountId, { ...input, ClientToken: input.ClientToken });
    if (earlier) return createVolumeXml(db, earlier);
  }
  if (!input.AvailabilityZone) throw errors.missing('AvailabilityZone');
  const zone = input.AvailabilityZone;
  if (!controllers.get(zone)) throw new Ec2Error('InvalidParameterValue', `Invalid availability zone: [${zone}]`);
  if (input.Encrypted) throw new Ec2Error('InvalidParameterValue', 'Encrypted volumes are not supported by this cloud.');
  const type = input.VolumeType ?? 'standard';
  if (!VOLUME_TYPES.includes(type)) throw errors.invalidValue('VolumeType', type);
  const snapshot = input.SnapshotId ? restorableSnapshot(db, principal.accountId, input.SnapshotId) : undefined;
  if (input.Size === undefined && !snapshot) throw new Ec2Error('MissingParameter', 'The request must contain the parameter size or snapshotId');
  const size = input.Size ?? snapshot!.volume_size;
  if (size < MIN_GIB || size > MAX_GIB) throw new Ec2Error('InvalidParameterValue', `Volume of ${size}GiB is too large; maximum is ${MAX_GIB}GiB` + (size < MIN_GIB ? ` and minimum is ${MIN_GIB}GiB` : ''));
  if (snapshot && size < snapshot.volume_size) throw new Ec2Error('InvalidParameterValue', `The size of the volume, in GiB, must be equal to or greater than the size of the snapshot (${snapshot.volume_size} GiB).`);
  const volumeId = newId('vol');
  const now = new Date().toISOString();
  // The token is looked up again in the transaction that records the volume: another clc on the same
  // PostgreSQL may have recorded it since (serializable: this transaction is then run again and finds it).
  const raced = db.transaction((): VolumeRow | undefined => {
    const earlier = input.ClientToken !== undefined ? volumeByClientToken(db, principal.accountId, { ...input, ClientToken: input.ClientToken }) : undefined;
    if (earlier) return earlier;
    db.prepare(`INSERT INTO volumes (volume_id, account_id, zone, size_gib, snapshot_id, volume_type, status, create_time, client_token, client_request)
      VALUES (?, ?, ?, ?, ?, ?, 'creating', ?, ?, ?)`)
      .run(volumeId, principal.accountId, zone, size, snapshot?.snapshot_id ?? null, type, now, input.ClientToken ?? null, input.ClientToken !== undefined ? requestOf(input) : null);
    applyTagSpecifications(db, principal.accountId, [volumeId], 'volume', input.TagSpecification);
    return undefined;
  })();
  if (raced) return createVolumeXml(db, raced);
  try {
    const res = await controllers.client(zone).call(sc.CreateStorageVolume, {
      volumeId,
      sizeGiB: size,
      ...(snapshot ? { snapshot: { snapshotId: snapshot.snapshot_id, location: { bucket: snapshot.bucket!, manifestKey: snapshot.manifest_key! } } } : {}),
    });
    if (res.volume.status === 'available') db.prepare("UPDATE volumes SET status = 'available' WHERE volume_id = ? AND status = 'creating'").run(volumeId);
    if (res.volume.status === 'failed') db.prepare("UPDATE volumes SET status = 'error', status_reason = ? WHERE volume_id = ?").run(res.volume.reason ?? null, volumeId);
  } catch (err) {
    // Nothing was made (or the SC will be told to drop it by the poller): the volume never existed for the user.
    db.transaction(() => {
      deleteTagsFor(db, volumeId);
      db.prepare('DELETE FROM volumes WHERE volume_id = ?').run(volumeId);
    })();
    if (err instanceof WireError && err.code === 'VolumeSizeExceeded') throw new Ec2Error('InvalidParameterValue', err.message);
    if (err instanceof WireError && err.code === 'VolumeLimitExceeded') throw new Ec2Error('VolumeLimitExceeded', err.message);
    throw scUnavailable(zone, err);
  }
  return createVolumeXml(db, db.prepare('SELECT * FROM volumes WHERE volume_id = ?').get(volumeId) as VolumeRow);
}

async function deleteVolume(s: StorageContext, principal: Principal, id: string | undefined): Promise<Record<string, unknown>> {
  if (!id) throw errors.missing('VolumeId');
  const { db } = s;
  const [v] = ownVolumes(db, principal, [id]);
  const att = db.prepare('SELECT instance_id FROM volume_attachments WHERE volume_id = ?').pluck().get(id) as string | undefined;
  if (att) throw new Ec2Error('VolumeInUse', `Volume ${id} is currently attached to ${att}`);
  if (v!.status === 'creating') throw new Ec2Error('IncorrectState', `The volume '${id}' is 'creating'; delete it once it is available.`);
  db.prepare("UPDATE volumes SET status = 'deleting' WHERE volume_id = ?").run(id);
  await finishVolumeDelete(s, v!);
  return { return: true };
}

/**
 * The SC deletes; then the row goes. An SC that does not answer now ('failed'), or refuses for now ('refused': an
 * RBD image a client still has open, VolumeInUse), is asked again by the poller.
 */
export async function finishVolumeDelete(s: StorageContext, v: VolumeRow): Promise<'deleted' | 'refused' | 'failed'> {
  try {
    await s.controllers.client(v.zone).call(sc.DeleteStorageVolume, { volumeId: v.volume_id });
  } catch (err) {
    if (!(err instanceof WireError && err.code === 'NoSuchEntity')) return err instanceof WireError && err.code === 'VolumeInUse' ? 'refused' : 'failed';
  }
  s.db.transaction(() => {
    deleteTagsFor(s.db, v.volume_id);
    s.db.prepare('DELETE FROM volumes WHERE volume_id = ?').run(v.volume_id);
  })();
  return 'deleted';
}

const VOLUME_FILTERS: Record<string, (v: VolumeView) => unknown> = {
  'volume-id': (v) => v.row.volume_id,
  status: (v) => v.row.status,
  'availability-zone': (v) => v.row.zone,
  size: (v) => v.row.size_gib,
  'snapshot-id': (v) => v.row.snapshot_id,
  'create-time': (v) => v.row.create_time,
  'volume-type': (v) => v.row.volume_type,
  encrypted: () => 'false',
  'multi-attach-enabled': () => 'false',
  'attachment.instance-id': (v) => v.attachment?.instance_id,
  'attachment.device': (v) => v.attachment?.device,
  'attachment.status': (v) => v.attachment?.status,
  'attachment.attach-time': (v) => v.attachment?.attach_time,
  'attachment.delete-on-termination': (v) => (v.attachment ? String(v.attachment.delete_on_termination === 1) : undefined),
};

function visibleVolumes(db: Db, principal: Principal, ids: string[]): VolumeRow[] {
  const verbose = ids.includes(VERBOSE) && principal.isAdmin;
  const wanted = ids.filter((i) => i !== VERBOSE);
  if (wanted.length) return ownVolumes(db, principal, wanted, verbose);
  return (verbose
    ? db.prepare('SELECT * FROM volumes ORDER BY create_time, volume_id').all()
    : db.prepare('SELECT * FROM volumes WHERE account_id = ? ORDER BY create_time, volume_id').all(principal.accountId)) as VolumeRow[];
}

/** NextToken is the index of the next item, as an opaque string. */
function page<T>(items: T[], maxResults: number | undefined, token: string | undefined): { items: T[]; nextToken?: string } {
  let start = 0;
  if (token) {
    start = Number(Buffer.from(token, 'base64url').toString('utf8'));
    if (!Number.isSafeInteger(start) || start < 0) throw new Ec2Error('InvalidParameterValue', `Invalid value '${token}' for NextToken`);
  }
  if (maxResults === undefined) return { items: items.slice(start) };
  if (maxResults < 5) throw errors.invalidValue('MaxResults', maxResults, 'MaxResults must be between 5 and 500.');
  // EC2 returns at most 500 per page whatever larger number is asked for (awscli pages with 1000).
  maxResults = Math.min(maxResults, 500);
  const slice = items.slice(start, start + maxResults);
  return { items: slice, ...(start + maxResults < items.length ? { nextToken: Buffer.from(String(start + maxResults)).toString('base64url') } : {}) };
}

function describeVolumes(db: Db, principal: Principal, input: { VolumeId: string[]; Filter: { Name: string; Value: string[] }[]; MaxResults?: number; NextToken?: string }) {
  const views = applyFilters(volumeViews(db, visibleVolumes(db, principal, input.VolumeId)), input.Filter, VOLUME_FILTERS, (v) => v.tags);
  const p = page(views, input.MaxResults, input.NextToken);
  return { volumeSet: p.items.map(volumeXml), nextToken: p.nextToken };
}

function volumeStatusOf(v: VolumeView): 'ok' | 'impaired' | 'insufficient-data' {
  if (v.row.status === 'error') return 'impaired';
  if (v.row.status === 'creating' || v.row.status === 'deleting') return 'insufficient-data';
  return 'ok';
}

function describeVolumeStatus(db: Db, principal: Principal, input: { VolumeId: string[]; Filter: { Name: string; Value: string[] }[]; MaxResults?: number; NextToken?: string }) {
  const views = applyFilters(volumeViews(db, visibleVolumes(db, principal, input.VolumeId)), input.Filter, {
    'volume-id': (v) => v.row.volume_id,
    'availability-zone': (v) => v.row.zone,
    'volume-status.status': volumeStatusOf,
    'volume-status.details-name': () => 'io-enabled',
    'volume-status.details-status': (v) => (volumeStatusOf(v) === 'impaired' ? 'failed' : 'passed'),
  });
  const p = page(views, input.MaxResults, input.NextToken);
  return {
    volumeStatusSet: p.items.map((v) => {
      const status = volumeStatusOf(v);
      return {
        volumeId: v.row.volume_id,
        availabilityZone: v.row.zone,
        volumeStatus: { status, details: [{ name: 'io-enabled', status: status === 'impaired' ? 'failed' : status === 'ok' ? 'passed' : 'insufficient-data' }] },
        eventsSet: [],
        actionsSet: [],
        attachmentStatuses: v.attachment ? [{ instanceId: v.attachment.instance_id, ioPerformance: 'normal' }] : [],
      };
    }),
    nextToken: p.nextToken,
  };
}

const describeShape = z.object({ VolumeId: list(z.string()), Filter: q.filters(), MaxResults: q.int().optional(), NextToken: z.string().optional() });

export const volumeActions = (s: StorageContext) => [
  defineEc2Action('CreateVolume', createVolumeShape, (input, { principal }) => createVolume(s, principal, input)),
  defineEc2Action('DeleteVolume', z.object({ VolumeId: z.string().optional() }), (input, { principal }) => deleteVolume(s, principal, input.VolumeId)),
  defineEc2Action('DescribeVolumes', describeShape, (input, { principal }) => describeVolumes(s.db, principal, input)),
  defineEc2Action('DescribeVolumeStatus', describeShape, (input, { principal }) => describeVolumeStatus(s.db, principal, input)),
];
