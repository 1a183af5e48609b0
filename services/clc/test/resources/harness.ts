// Test harness: a temp clc database with this module's migration, and a way to call an action's
// handler as the protocol layer would (schema-parsed nested Query params, a principal).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { openDaemonDatabase, type Db, type Migration } from '@mallee/store';
import type { Ec2Action, Ec2Result, Principal } from '@mallee/aws-protocol';
import { resourceActionsFor, resourcesMigration, type ResourceHooks } from '../../src/resources/index.js';

/**
 * Stand-in for the core's migration 1, in the tests only: just the columns of its accounts, instances
 * and instance_groups tables that this module reads (the core's migration owns their full shape).
 */
export const coreMigrationStandIn: Migration = {
  id: 1,
  name: 'core (test stand-in)',
  up: `
    CREATE TABLE accounts (account_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, is_admin INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE instances (instance_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, state TEXT NOT NULL);
    CREATE TABLE instance_groups (
      instance_id TEXT NOT NULL REFERENCES instances(instance_id) ON DELETE CASCADE,
      group_id TEXT NOT NULL,
      PRIMARY KEY (instance_id, group_id));
  `,
};

/**
 * Stand-in for Walrus's manifest check (CheckImage), in these unit tests of image semantics only:
 * the type is read from the manifest's name as Eucalyptus names bundles (vmlinuz*, initrd*). Real
 * bundles are checked by Walrus in services/clc/test/register-image.test.ts and the e2e suites.
 */
export const manifestNamesOnly: ResourceHooks = {
  checkManifest: async (_principal, _bucket, key) => {
    const file = key.slice(key.lastIndexOf('/') + 1).toLowerCase();
    return { imageType: /vmlinuz|kernel/.test(file) ? 'kernel' : /initrd|ramdisk|loader/.test(file) ? 'ramdisk' : 'machine', architecture: 'x86_64' };
  },
};

export const ACCOUNT_A = '111111111111';
export const ACCOUNT_B = '222222222222';
export const ADMIN_ACCOUNT = '999999999999';

export function principalOf(accountId: string, isAdmin = false): Principal {
  return { accountId, accountName: `acct-${accountId}`, userId: accountId, accessKeyId: `AK${accountId}`, isAdmin };
}

export interface Cloud {
  db: Db;
  dir: string;
  /** Calls an action as `principal` with nested Query params (validated by the action's own schema). */
  call(name: string, params: Record<string, unknown>, principal?: Principal): Promise<Ec2Result>;
  /** Records an instance of `accountId` in `groupIds`, as the core's RunInstances would. */
  addInstance(instanceId: string, accountId: string, groupIds?: string[], state?: string): void;
  close(): void;
}

const log = pino({ level: 'silent' });

/** `hooks` replace the stand-in image store's (e.g. an EBS `rootSnapshot`). */
export function openCloud(hooks: Partial<ResourceHooks> = {}): Cloud {
  const dir = mkdtempSync(join(tmpdir(), 'mallee-resources-'));
  const db = openDaemonDatabase('', join(dir, 'clc.sqlite'), 'clc', { migrations: [coreMigrationStandIn, resourcesMigration] });
  db.prepare('INSERT INTO accounts (account_id, name, is_admin) VALUES (?, ?, 0), (?, ?, 0), (?, ?, 1)')
    .run(ACCOUNT_A, 'alice', ACCOUNT_B, 'bob', ADMIN_ACCOUNT, 'eucalyptus');
  const actions = new Map<string, Ec2Action>(resourceActionsFor(db, { ...manifestNamesOnly, ...hooks }).map((a) => [a.name, a]));
  return {
    db,
    dir,
    async call(name, params, principal = principalOf(ACCOUNT_A)) {
      const action = actions.get(name);
      if (!action) throw new Error(`no action ${name}`);
      const input = action.input.parse(params);
      return action.handler(input, { principal, requestId: 'test', apiVersion: '2016-11-15', log });
    },
    addInstance(instanceId, accountId, groupIds = [], state = 'running') {
      db.prepare('INSERT INTO instances (instance_id, account_id, state) VALUES (?, ?, ?)').run(instanceId, accountId, state);
      for (const g of groupIds) db.prepare('INSERT INTO instance_groups (instance_id, group_id) VALUES (?, ?)').run(instanceId, g);
    },
    close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Ec2Error code a call fails with (or 'no error'). */
export async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
