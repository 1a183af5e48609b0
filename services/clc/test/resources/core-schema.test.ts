// This module on the core's real schema (clcMigrations: migration 1 + 2), with accounts and
// instances written by the core's own functions: the queries into the core's tables must fit them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openDaemonDatabase, type Db } from '@mallee/store';
import type { Ec2Result, Principal } from '@mallee/aws-protocol';
import { createAccount, ensureAdminAccount } from '../../src/accounts.js';
import { deleteInstances, insertReservation, type NewInstance } from '../../src/instances.js';
import { clcMigrations } from '../../src/migrations.js';
import { resourceActionsFor, resolveGroups, tagSetFor } from '../../src/resources/index.js';
import { errorCode, manifestNamesOnly } from './harness.js';

let dir: string;
let db: Db;
let call: (name: string, params: Record<string, unknown>, p: Principal) => Promise<Ec2Result>;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-resources-core-'));
  db = openDaemonDatabase('', join(dir, 'clc.sqlite'), 'clc', { migrations: clcMigrations });
  const actions = new Map(resourceActionsFor(db, manifestNamesOnly).map((a) => [a.name, a]));
  const log = pino({ level: 'silent' });
  call = async (name, params, principal) => {
    const a = actions.get(name)!;
    return a.handler(a.input.parse(params), { principal, requestId: 't', apiVersion: '2016-11-15', log });
  };
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function principalOf(name: string): Principal {
  const c = createAccount(db, name);
  return { accountId: c.accountId, accountName: name, userId: 'admin', accessKeyId: c.accessKeyId, isAdmin: false };
}

function launch(owner: Principal, instanceId: string, groupId: string): void {
  const i: NewInstance = {
    instance_id: instanceId, account_id: owner.accountId, reservation_id: `r-${instanceId.slice(2)}`, launch_index: 0, zone: 'zone-a',
    image_id: 'emi-00000000', image_location: '', kernel_id: null, ramdisk_id: null, architecture: 'x86_64', platform: null,
    root_device_type: 'instance-store', root_device_name: null, virtualization_type: 'hvm', instance_type: 'm1.small',
    vm_cpu: 1, vm_memory_mib: 256, vm_disk_gib: 5, key_name: null, public_key: null, user_data: null, launch_time: new Date().toISOString(),
  };
  insertReservation(db, { reservationId: i.reservation_id, accountId: owner.accountId, createdAt: i.launch_time }, [i], [{ groupId, groupName: 'g' }]);
}

it('on the core schema: a group in use by a live instance is kept, instance tags follow ownership and go with the instance', async () => {
  const alice = principalOf('alice');
  const bob = principalOf('bob');
  // createAccount made the default group through ensureDefaultGroup.
  expect(resolveGroups(db, alice.accountId, { names: [], ids: [] })[0]!.name).toBe('default');
  const g = (await call('CreateSecurityGroup', { GroupName: 'web', GroupDescription: 'w' }, alice)).groupId as string;
  launch(alice, 'i-0000000a', g);
  expect(await errorCode(call('DeleteSecurityGroup', { GroupId: g }, alice))).toBe('InvalidGroup.InUse');
  await call('CreateTags', { ResourceId: ['i-0000000a'], Tag: [{ Key: 'Name', Value: 'web-1' }] }, alice);
  expect(await errorCode(call('CreateTags', { ResourceId: ['i-0000000a'], Tag: [{ Key: 'x' }] }, bob))).toBe('InvalidInstanceID.NotFound');
  expect(tagSetFor(db, alice.accountId, 'i-0000000a')).toEqual([{ key: 'Name', value: 'web-1' }]);
  db.prepare("UPDATE instances SET state = 'terminated', terminated_at = ? WHERE instance_id = 'i-0000000a'").run(new Date().toISOString());
  expect(await errorCode(call('DeleteSecurityGroup', { GroupId: g }, alice))).toBe('no error');
  deleteInstances(db, ['i-0000000a']);
  expect(tagSetFor(db, alice.accountId, 'i-0000000a')).toEqual([]);
});

it('on the core schema: Owner=amazon lists the cloud admin account\'s images', async () => {
  const admin = ensureAdminAccount(db);
  const adminPrincipal: Principal = { accountId: admin.accountId, accountName: admin.name, userId: 'admin', accessKeyId: 'x', isAdmin: true };
  const alice = principalOf('alice');
  const eki = (await call('RegisterImage', { ImageLocation: 'kernels/vmlinuz.manifest.xml' }, adminPrincipal)).imageId as string;
  await call('ModifyImageAttribute', { ImageId: eki, LaunchPermission: { Add: [{ Group: 'all' }] } }, adminPrincipal);
  await call('RegisterImage', { ImageLocation: 'mine/own.manifest.xml' }, alice);
  const r = await call('DescribeImages', { Owner: ['amazon'] }, alice);
  expect((r.imagesSet as { imageId: string }[]).map((i) => i.imageId)).toEqual([eki]);
});
