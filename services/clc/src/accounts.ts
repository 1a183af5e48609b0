// Accounts, their users and access keys: who may sign requests, and which account owns what they
// create. The admin account ("eucalyptus", as in Eucalyptus) is made at first start.
import { randomBytes, randomInt } from 'node:crypto';
import type { Db } from '@mallee/store';
import type { CredentialLookup, Principal } from '@mallee/aws-protocol';
import type { admin, walrus } from '@mallee/wire';
import { WireError } from '@mallee/wire';
import { ensureDefaultGroup } from './resources/index.js';

export const ADMIN_ACCOUNT = 'eucalyptus';
export const ADMIN_USER = 'admin';

const ALNUM_UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const SECRET_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function randomFrom(alphabet: string, length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  // alphabet lengths used here (36, 64) make the modulo bias negligible (36) or nil (64)
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

/** 12-digit account number, never starting with 0 (clients sometimes read it as a number). */
export function newAccountId(): string {
  return String(randomInt(1, 10)) + Array.from({ length: 11 }, () => String(randomInt(0, 10))).join('');
}
export const newAccessKeyId = () => 'AKI' + randomFrom(ALNUM_UPPER, 17);
export const newSecretKey = () => randomFrom(SECRET_CHARS, 40);
const newUserId = () => 'AID' + randomFrom(ALNUM_UPPER, 17);

export interface AccountRecord { accountId: string; name: string; isAdmin: boolean }

interface AccountRow { account_id: string; name: string; is_admin: number }
const toAccount = (r: AccountRow): AccountRecord => ({ accountId: r.account_id, name: r.name, isAdmin: r.is_admin === 1 });

export function accountByName(db: Db, name: string): AccountRecord | undefined {
  const row = db.prepare('SELECT * FROM accounts WHERE name = ?').get(name) as AccountRow | undefined;
  return row && toAccount(row);
}

export function listAccounts(db: Db): AccountRecord[] {
  return (db.prepare('SELECT * FROM accounts ORDER BY created_at, name').all() as AccountRow[]).map(toAccount);
}

function adminUserOf(db: Db, accountId: string): string {
  const id = db.prepare('SELECT user_id FROM users WHERE account_id = ? AND name = ?').pluck().get(accountId, ADMIN_USER) as string | undefined;
  if (!id) throw new WireError('InternalError', `account ${accountId} has no ${ADMIN_USER} user`, 500);
  return id;
}

function insertAccessKey(db: Db, account: AccountRecord): admin.AccountCredentials {
  const userId = adminUserOf(db, account.accountId);
  const accessKeyId = newAccessKeyId();
  const secretAccessKey = newSecretKey();
  db.prepare('INSERT INTO access_keys (access_key_id, secret_access_key, user_id, created_at) VALUES (?, ?, ?, ?)')
    .run(accessKeyId, secretAccessKey, userId, new Date().toISOString());
  return { accountId: account.accountId, accountName: account.name, userName: ADMIN_USER, accessKeyId, secretAccessKey };
}

/** A new account with its admin user, one access key and its "default" security group. */
export function createAccount(db: Db, name: string, opts: { isAdmin?: boolean } = {}): admin.AccountCredentials {
  return db.transaction(() => {
    if (accountByName(db, name)) throw new WireError('EntityAlreadyExists', `account ${name} already exists`, 409);
    let accountId = newAccountId();
    while (db.prepare('SELECT 1 FROM accounts WHERE account_id = ?').get(accountId)) accountId = newAccountId();
    const now = new Date().toISOString();
    db.prepare('INSERT INTO accounts (account_id, name, is_admin, created_at) VALUES (?, ?, ?, ?)').run(accountId, name, opts.isAdmin ? 1 : 0, now);
    db.prepare('INSERT INTO users (user_id, account_id, name, created_at) VALUES (?, ?, ?, ?)').run(newUserId(), accountId, ADMIN_USER, now);
    ensureDefaultGroup(db, accountId);
    return insertAccessKey(db, { accountId, name, isAdmin: opts.isAdmin ?? false });
  })();
}

/** The admin account, created on the first start of a new cloud. */
export function ensureAdminAccount(db: Db): AccountRecord {
  if (!accountByName(db, ADMIN_ACCOUNT)) createAccount(db, ADMIN_ACCOUNT, { isAdmin: true });
  return accountByName(db, ADMIN_ACCOUNT)!;
}

function requireAccount(db: Db, name: string): AccountRecord {
  const account = accountByName(db, name);
  if (!account) throw new WireError('NoSuchEntity', `no account named ${name}`, 404);
  return account;
}

export function createAccessKey(db: Db, accountName: string): admin.AccountCredentials {
  return db.transaction(() => insertAccessKey(db, requireAccount(db, accountName)))();
}

/** The account admin's oldest active key, or a new one when it has none. */
export function getCredentials(db: Db, accountName: string): admin.AccountCredentials {
  return db.transaction(() => {
    const account = requireAccount(db, accountName);
    const row = db.prepare(`SELECT k.access_key_id, k.secret_access_key FROM access_keys k
      WHERE k.user_id = ? AND k.active = 1 ORDER BY k.created_at, k.access_key_id LIMIT 1`)
      .get(adminUserOf(db, account.accountId)) as { access_key_id: string; secret_access_key: string } | undefined;
    if (!row) return insertAccessKey(db, account);
    return { accountId: account.accountId, accountName: account.name, userName: ADMIN_USER, accessKeyId: row.access_key_id, secretAccessKey: row.secret_access_key };
  })();
}

interface KeyRow { secret_access_key: string; user_id: string; account_id: string; name: string; is_admin: number }

// Every signed request looks its key up: the statement is prepared once per database, not per request
// (preparing it was the clc's largest single cost under 32 clients, bench/results/ec2-workload.md).
const keyStatements = new WeakMap<Db, ReturnType<typeof prepareKeyRow>>();

const prepareKeyRow = (db: Db) =>
  db.prepare<[string], KeyRow>(`SELECT k.secret_access_key, u.user_id, a.account_id, a.name, a.is_admin
    FROM access_keys k JOIN users u ON u.user_id = k.user_id JOIN accounts a ON a.account_id = u.account_id
    WHERE k.access_key_id = ? AND k.active = 1`);

function keyRow(db: Db, accessKeyId: string): KeyRow | undefined {
  let stmt = keyStatements.get(db);
  if (!stmt) {
    stmt = prepareKeyRow(db);
    keyStatements.set(db, stmt);
  }
  return stmt.get(accessKeyId);
}

/** Who signed an EC2 request, for the ec2Api plugin. */
export function credentialLookup(db: Db): CredentialLookup {
  return (accessKeyId) => {
    const row = keyRow(db, accessKeyId);
    if (!row) return undefined;
    const principal: Principal = { accountId: row.account_id, accountName: row.name, userId: row.user_id, accessKeyId, isAdmin: row.is_admin === 1 };
    return { secretAccessKey: row.secret_access_key, principal };
  };
}

/** The same answer for Walrus (LookupAccessKey over the wire). */
export function walrusCredential(db: Db, accessKeyId: string): walrus.AccessKeyCredential | undefined {
  const row = keyRow(db, accessKeyId);
  return row && { secretAccessKey: row.secret_access_key, accountId: row.account_id, accountName: row.name, userId: row.user_id, isAdmin: row.is_admin === 1 };
}

/**
 * A system user of the admin account and its access key (made on first use): what the clc signs
 * with when it hands out URLs on the cloud's behalf (e.g. image-delivery, for NCs fetching images).
 */
export function systemCredential(db: Db, userName: string): { accessKeyId: string; secretAccessKey: string } {
  return db.transaction(() => {
    const account = ensureAdminAccount(db);
    let userId = db.prepare('SELECT user_id FROM users WHERE account_id = ? AND name = ?').pluck().get(account.accountId, userName) as string | undefined;
    if (!userId) {
      userId = newUserId();
      db.prepare('INSERT INTO users (user_id, account_id, name, created_at) VALUES (?, ?, ?, ?)').run(userId, account.accountId, userName, new Date().toISOString());
    }
    const row = db.prepare('SELECT access_key_id, secret_access_key FROM access_keys WHERE user_id = ? AND active = 1 ORDER BY created_at LIMIT 1')
      .get(userId) as { access_key_id: string; secret_access_key: string } | undefined;
    if (row) return { accessKeyId: row.access_key_id, secretAccessKey: row.secret_access_key };
    const accessKeyId = newAccessKeyId();
    const secretAccessKey = newSecretKey();
    db.prepare('INSERT INTO access_keys (access_key_id, secret_access_key, user_id, created_at) VALUES (?, ?, ?, ?)').run(accessKeyId, secretAccessKey, userId, new Date().toISOString());
    return { accessKeyId, secretAccessKey };
  })();
}

/** The account's users (its admin user first), for certificates and credentials. */
export function userOf(db: Db, accountName: string, userName = ADMIN_USER): { userId: string; userName: string; accountId: string; accountName: string } {
  const account = requireAccount(db, accountName);
  const userId = db.prepare('SELECT user_id FROM users WHERE account_id = ? AND name = ?').pluck().get(account.accountId, userName) as string | undefined;
  if (!userId) throw new WireError('NoSuchEntity', `account ${accountName} has no user ${userName}`, 404);
  return { userId, userName, accountId: account.accountId, accountName: account.name };
}
