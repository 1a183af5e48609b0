// The cluster poller and the account store on a temp database, with a FakeCc standing in for the cc.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '@mallee/store';
import { openClcDatabase } from '../src/daemon.js';
import { Clusters } from '../src/clusters.js';
import { Dispatcher } from '../src/dispatch.js';
import { ClusterPoller } from '../src/cluster-poller.js';
import { insertReservation, instanceRow, type NewInstance } from '../src/instances.js';
import { ADMIN_ACCOUNT, accountByName, createAccount, credentialLookup, walrusCredential } from '../src/accounts.js';
import { FakeCc } from './fake-cc.js';

let dir: string;
let db: Db;
let fake: FakeCc;
let clusters: Clusters;
let dispatcher: Dispatcher;
const log = pino({ level: 'silent' });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-clc-poller-'));
  db = openClcDatabase(join(dir, 'clc.sqlite'));
  fake = new FakeCc();
  await fake.start();
  clusters = new Clusters(db);
  fake.key = clusters.register('zone-a', fake.url);
  dispatcher = new Dispatcher(clusters);
});
afterEach(async () => {
  await fake.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const poller = (staleLaunchMs?: number) =>
  new ClusterPoller({ db, clusters, dispatcher, log, pollIntervalMs: 3_600_000, retentionMs: 3_600_000, ...(staleLaunchMs !== undefined ? { staleLaunchMs } : {}) });

function recordPending(instanceId: string): void {
  const accountId = accountByName(db, ADMIN_ACCOUNT)!.accountId;
  const now = new Date(Date.now() - 1000).toISOString();
  const i: NewInstance = {
    instance_id: instanceId, account_id: accountId, reservation_id: `r-${instanceId.slice(2)}`, launch_index: 0, zone: 'zone-a',
    image_id: 'emi-12345678', image_location: '', kernel_id: null, ramdisk_id: null, architecture: 'x86_64', platform: null,
    root_device_type: 'instance-store', root_device_name: null, virtualization_type: 'hvm', instance_type: 'm1.small',
    vm_cpu: 1, vm_memory_mib: 512, vm_disk_gib: 5, key_name: null, public_key: null, user_data: null, launch_time: now,
  };
  db.transaction(() => insertReservation(db, { reservationId: i.reservation_id, accountId, createdAt: now }, [i], []))();
}

describe('cluster poller', () => {
  it('a launch the cc lost before ever reporting it is sent again once it is stale, without a restart', async () => {
    recordPending('i-00000001');
    const p = poller(0);
    await p.pollAll(); // first poll after start: reconciliation sends it
    expect(fake.runCount('i-00000001')).toBe(1);
    fake.instances.delete('i-00000001');
    await p.pollAll();
    expect(fake.runCount('i-00000001')).toBe(2);
    await p.pollAll(); // reported now: not sent again
    expect(fake.runCount('i-00000001')).toBe(2);
    expect(instanceRow(db, 'i-00000001')!.reported).toBe(1);
  });

  it('a launch that is not yet stale is left alone between restarts', async () => {
    recordPending('i-00000002');
    const p = poller();
    await p.pollAll();
    fake.instances.delete('i-00000002');
    await p.pollAll();
    await p.pollAll();
    expect(fake.runCount('i-00000002')).toBe(1);
    expect(instanceRow(db, 'i-00000002')!.state).toBe('pending');
  });

  it('a relaunch the cc has no room for ends the instance with InsufficientInstanceCapacity', async () => {
    recordPending('i-00000003');
    fake.capacity = 0;
    await poller().pollAll();
    const row = instanceRow(db, 'i-00000003')!;
    expect(row.state).toBe('terminated');
    expect(row.state_reason).toMatch(/^Server\.InsufficientInstanceCapacity/);
  });

  it('instances the cc runs but the clc never recorded are not adopted', async () => {
    fake.instances.set('i-0000dead', { spec: { instanceId: 'i-0000dead', reservationId: 'r-0000dead', ownerId: '1', launchIndex: 0, imageId: 'emi-1', imageLocation: '', vmType: { name: 'm1.small', cores: 1, memoryMiB: 512, diskGiB: 5 }, groupNames: [] }, state: 'running', node: 'node1' });
    await poller().pollAll();
    expect(instanceRow(db, 'i-0000dead')).toBeUndefined();
  });

  it('records ENABLED with a last contact, then NOTREADY with the reason while keeping the last contact', async () => {
    const p = poller();
    await p.pollAll();
    const up = clusters.get('zone-a')!;
    expect(up.state).toBe('ENABLED');
    expect(clusters.availability('zone-a').find((a) => a.name === 'm1.small')).toMatchObject({ max: 100 });
    fake.down = true;
    await p.pollAll();
    const down = clusters.get('zone-a')!;
    expect(down.state).toBe('NOTREADY');
    expect(down.detail).toMatch(/ServiceUnavailable/);
    expect(down.lastContact).toBe(up.lastContact);
  });
});

describe('accounts', () => {
  it('the admin account exists from the first start and its key signs as an admin principal', async () => {
    const adminAccount = accountByName(db, ADMIN_ACCOUNT)!;
    expect(adminAccount.isAdmin).toBe(true);
    const key = db.prepare('SELECT access_key_id FROM access_keys').pluck().get() as string;
    const found = await credentialLookup(db)(key);
    expect(found?.principal).toMatchObject({ accountId: adminAccount.accountId, accountName: 'eucalyptus', isAdmin: true });
    expect(found?.secretAccessKey).toHaveLength(40);
  });

  it('an ordinary account is no admin, and a deactivated key signs nothing', async () => {
    const creds = createAccount(db, 'dora');
    expect((await credentialLookup(db)(creds.accessKeyId))?.principal.isAdmin).toBe(false);
    expect(walrusCredential(db, creds.accessKeyId)).toMatchObject({ accountName: 'dora', secretAccessKey: creds.secretAccessKey, isAdmin: false });
    db.prepare('UPDATE access_keys SET active = 0 WHERE access_key_id = ?').run(creds.accessKeyId);
    expect(await credentialLookup(db)(creds.accessKeyId)).toBeUndefined();
    expect(walrusCredential(db, creds.accessKeyId)).toBeUndefined();
    expect(await credentialLookup(db)('AKIDOESNOTEXIST00000')).toBeUndefined();
  });
});
