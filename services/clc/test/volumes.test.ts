// CreateVolume's ClientToken against the clc's real schema (migrations run) and a stand-in SC built with the
// real `wire` plugin, as the clc's other component tests use stand-ins for the daemons it calls (the real SC with
// ClientToken retries runs in test/faults/faults.test.ts, whose unacknowledged creates are retried with their token). It counts
// the CreateStorageVolume calls, so a retried create that made a second volume shows here as well as in the rows.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '@mallee/store';
import { Ec2Error, type Ec2Action, type Principal } from '@mallee/aws-protocol';
import { handler, sc, wire, WireError } from '@mallee/wire';
import { openClcDatabase } from '../src/daemon.js';
import { Clusters } from '../src/clusters.js';
import { ADMIN_ACCOUNT, accountByName, createAccount } from '../src/accounts.js';
import { StorageControllers } from '../src/storage/index.js';
import { volumeActions } from '../src/storage/volume-actions.js';
import { snapshotActions } from '../src/storage/snapshot-actions.js';

let dir: string;
let db: Db;
let app: FastifyInstance;
let controllers: StorageControllers;
let principal: Principal;
let scDown: boolean;
const created: string[] = [];
const log = pino({ level: 'silent' });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-clc-volumes-'));
  db = openClcDatabase(join(dir, 'clc.sqlite'));
  controllers = new StorageControllers(db, 5000);
  created.length = 0;
  scDown = false;
  let key = '';
  app = Fastify({ logger: false });
  app.register(wire, {
    keyFor: (from) => (from === 'clc' ? key : undefined),
    handlers: [
      handler(sc.CreateStorageVolume, (req) => {
        if (scDown) throw new WireError('ServiceUnavailable', 'stand-in SC is down', 503);
        created.push(req.volumeId);
        return { volume: { volumeId: req.volumeId, sizeGiB: req.sizeGiB, status: 'available' as const, progress: 100, exportedTo: [], createdAt: new Date().toISOString() } };
      }),
      handler(sc.DeleteStorageVolume, (req) => ({ volumeId: req.volumeId, deleted: true })),
      // As the real SC answers when its point-in-time copy does not fit (services/sc/test/disk-full.test.ts).
      handler(sc.CreateStorageSnapshot, (req) => {
        throw new WireError('InsufficientStorage', `the storage controller has no room for the point-in-time copy of ${req.volumeId} (cp: No space left on device); free space in its home and retry`, 507);
      }),
      handler(sc.DeleteStorageSnapshot, (req) => ({ snapshotId: req.snapshotId, deleted: true })),
    ],
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  key = controllers.register('zone-a', url);
  controllers.register('zone-b', url);
  const accountId = accountByName(db, ADMIN_ACCOUNT)!.accountId;
  principal = { accountId, accountName: ADMIN_ACCOUNT, userId: 'admin', accessKeyId: 'AKIATEST', isAdmin: true };
});
afterEach(async () => {
  await app.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const action = (name: string) => volumeActions({ db, controllers, clusters: new Clusters(db) }).find((a) => a.name === name) as unknown as Ec2Action<unknown>;
async function createVolume(params: Record<string, unknown>, as: Principal = principal): Promise<{ volumeId: string; size: number; status: string }> {
  const a = action('CreateVolume');
  return await a.handler(a.input.parse(params), { principal: as, log, requestId: 'test', apiVersion: '2016-11-15' }) as { volumeId: string; size: number; status: string };
}
const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err instanceof Ec2Error ? `${err.code}: ${err.message}` : String(err);
  }
  return 'no error';
};
const volumeCount = (accountId = principal.accountId) => db.prepare('SELECT COUNT(*) FROM volumes WHERE account_id = ?').pluck().get(accountId) as number;

describe('CreateVolume ClientToken', () => {
  it('a create retried with its token (its answer lost) is the same volume: one row, one volume on the SC', async () => {
    const first = await createVolume({ AvailabilityZone: 'zone-a', Size: '2', ClientToken: 'retry-1' });
    expect(first).toMatchObject({ size: 2, status: 'available' });
    const again = await createVolume({ AvailabilityZone: 'zone-a', Size: '2', ClientToken: 'retry-1' });
    expect(again.volumeId).toBe(first.volumeId);
    expect(again).toMatchObject({ size: 2, status: 'available', availabilityZone: 'zone-a' });
    expect(volumeCount()).toBe(1);
    expect(created).toEqual([first.volumeId]);

    // VolumeType's default is the same request as naming it.
    expect((await createVolume({ AvailabilityZone: 'zone-a', Size: '2', VolumeType: 'standard', ClientToken: 'retry-1' })).volumeId).toBe(first.volumeId);
    // Without a token every create is a new volume (botocore fills one in for each call it makes).
    const a = await createVolume({ AvailabilityZone: 'zone-a', Size: '2' });
    const b = await createVolume({ AvailabilityZone: 'zone-a', Size: '2' });
    expect(new Set([first.volumeId, a.volumeId, b.volumeId]).size).toBe(3);
    expect(volumeCount()).toBe(3);
  });

  it('the token with other parameters is IdempotentParameterMismatch, and nothing is made', async () => {
    const first = await createVolume({ AvailabilityZone: 'zone-a', Size: '2', ClientToken: 'tok' });
    for (const other of [
      { AvailabilityZone: 'zone-a', Size: '3' },
      { AvailabilityZone: 'zone-b', Size: '2' },
      { AvailabilityZone: 'zone-a', Size: '2', VolumeType: 'gp2' },
      { AvailabilityZone: 'zone-a', Size: '2', TagSpecification: [{ ResourceType: 'volume', Tag: [{ Key: 'k', Value: 'v' }] }] },
    ]) {
      expect(await codeOf(createVolume({ ...other, ClientToken: 'tok' })))
        .toBe(`IdempotentParameterMismatch: The ClientToken 'tok' was used for volume ${first.volumeId} with other parameters; use another ClientToken for this request.`);
    }
    expect(volumeCount()).toBe(1);
    expect(created).toHaveLength(1);
    expect(await codeOf(createVolume({ AvailabilityZone: 'zone-a', Size: '2', ClientToken: 'x'.repeat(65) }))).toMatch(/^InvalidParameterValue: .*ClientToken is limited to 64 characters/);
  });

  it('tokens are per account: another account\'s same token is its own volume', async () => {
    createAccount(db, 'other');
    const otherId = accountByName(db, 'other')!.accountId;
    const other: Principal = { accountId: otherId, accountName: 'other', userId: 'admin', accessKeyId: 'AKIAOTHER', isAdmin: false };
    const mine = await createVolume({ AvailabilityZone: 'zone-a', Size: '1', ClientToken: 'shared' });
    const theirs = await createVolume({ AvailabilityZone: 'zone-a', Size: '5', ClientToken: 'shared' }, other);
    expect(theirs.volumeId).not.toBe(mine.volumeId);
    expect(theirs.size).toBe(5);
    expect((await createVolume({ AvailabilityZone: 'zone-a', Size: '5', ClientToken: 'shared' }, other)).volumeId).toBe(theirs.volumeId);
    expect(volumeCount()).toBe(1);
    expect(volumeCount(otherId)).toBe(1);
  });

  it('a create the SC refused leaves the token free: its retry makes the volume', async () => {
    scDown = true;
    expect(await codeOf(createVolume({ AvailabilityZone: 'zone-a', Size: '1', ClientToken: 'later' }))).toMatch(/^ServiceUnavailable/);
    expect(volumeCount()).toBe(0);
    scDown = false;
    const v = await createVolume({ AvailabilityZone: 'zone-a', Size: '1', ClientToken: 'later' });
    expect(created).toEqual([v.volumeId]);
    // Deleted, its token names no volume any more: the same request makes a new one.
    const del = action('DeleteVolume');
    await del.handler(del.input.parse({ VolumeId: v.volumeId }), { principal, log, requestId: 'test', apiVersion: '2016-11-15' });
    expect(volumeCount()).toBe(0);
    const next = await createVolume({ AvailabilityZone: 'zone-a', Size: '1', ClientToken: 'later' });
    expect(next.volumeId).not.toBe(v.volumeId);
    expect(created).toEqual([v.volumeId, next.volumeId]);
  });
});

describe('CreateSnapshot on a full storage controller', () => {
  it('is InsufficientVolumeCapacity with the SC\'s reason (not "unavailable"), and leaves no snapshot behind', async () => {
    const v = await createVolume({ AvailabilityZone: 'zone-a', Size: '1' });
    const a = snapshotActions({ db, controllers, clusters: new Clusters(db) }, 'mallee').find((x) => x.name === 'CreateSnapshot') as unknown as Ec2Action<unknown>;
    const err = await codeOf(Promise.resolve().then(() => a.handler(a.input.parse({ VolumeId: v.volumeId }), { principal, log, requestId: 'test', apiVersion: '2016-11-15' })));
    expect(err).toBe(`InsufficientVolumeCapacity: Snapshot of ${v.volumeId} not taken: the storage controller has no room for the point-in-time copy of ${v.volumeId} (cp: No space left on device); free space in its home and retry`);
    expect(db.prepare('SELECT COUNT(*) FROM snapshots').pluck().get()).toBe(0);
  });
});
