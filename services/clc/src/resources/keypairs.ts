// Key pairs: real RSA (or ED25519) keys generated or imported per account; only the public half and
// its fingerprint are kept.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '@mallee/store';
import { Ec2Error, errors, q } from '@mallee/aws-protocol';
import { applyFilters } from './filters.js';
import { list, resourceAction } from './params.js';
import { generateKeyPair, importedKeyFingerprint, InvalidKeyError, openSshLine, parsePublicKeyText, type PublicKey, type SshKeyType } from './sshkeys.js';

export interface KeyPairRecord { accountId: string; name: string; fingerprint: string; /** OpenSSH public key line */ publicKey: string }

interface KeyPairRow { account_id: string; name: string; key_pair_id: string; key_type: string; fingerprint: string; public_key: string; created_at: string }

const toRecord = (r: KeyPairRow): KeyPairRecord => ({ accountId: r.account_id, name: r.name, fingerprint: r.fingerprint, publicKey: r.public_key });

export function findKeyPair(db: Db, accountId: string, name: string): KeyPairRecord | undefined {
  const row = db.prepare('SELECT * FROM key_pairs WHERE account_id = ? AND name = ?').get(accountId, name) as KeyPairRow | undefined;
  return row && toRecord(row);
}

const keyPairNotFound = (name: string) => new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${name}' does not exist`);

function checkKeyName(name: string | undefined): string {
  if (name === undefined || name === '') throw errors.missing('KeyName');
  if (!/^[\x20-\x7e]*$/.test(name)) throw errors.invalidValue('KeyName', name, 'Character sets beyond ASCII are not supported.');
  if (name.length > 255) throw errors.invalidValue('KeyName', name, 'Length exceeds maximum of 255.');
  return name;
}

/** `key-` + 17 hex digits, as EC2 numbers key pairs. */
const newKeyPairId = () => `key-${randomBytes(9).toString('hex').slice(0, 17)}`;

function insertKeyPair(db: Db, accountId: string, name: string, type: SshKeyType, fingerprint: string, pk: PublicKey): string {
  const keyPairId = newKeyPairId();
  db.transaction(() => {
    if (findKeyPair(db, accountId, name)) throw new Ec2Error('InvalidKeyPair.Duplicate', `The keypair '${name}' already exists.`);
    db.prepare(`INSERT INTO key_pairs (account_id, name, key_pair_id, key_type, fingerprint, public_key, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)`).run(accountId, name, keyPairId, type, fingerprint, openSshLine(pk, name), new Date().toISOString());
  })();
  return keyPairId;
}

export const createKeyPairAction = resourceAction('CreateKeyPair',
  z.object({ KeyName: z.string().optional(), KeyType: z.string().optional(), KeyFormat: z.string().optional() }),
  async (db, input, { principal }) => {
    const name = checkKeyName(input.KeyName);
    const type = input.KeyType ?? 'rsa';
    if (type !== 'rsa' && type !== 'ed25519') throw errors.invalidValue('KeyType', type, 'Valid values: rsa, ed25519.');
    if (input.KeyFormat !== undefined && input.KeyFormat !== 'pem') throw errors.invalidValue('KeyFormat', input.KeyFormat, 'Only pem is supported.');
    if (findKeyPair(db, principal.accountId, name)) throw new Ec2Error('InvalidKeyPair.Duplicate', `The keypair '${name}' already exists.`);
    const created = await generateKeyPair(type, name);
    const keyPairId = insertKeyPair(db, principal.accountId, name, type, created.fingerprint, created.publicKey);
    return { keyName: name, keyFingerprint: created.fingerprint, keyMaterial: created.material, keyPairId };
  });

/** PublicKeyMaterial arrives base64-encoded (botocore, boto 2, euca2ools); a raw key line is accepted too. */
function decodeKeyMaterial(material: string): PublicKey {
  const raw = material.trim();
  const candidates = [raw];
  if (/^[A-Za-z0-9+/=\s]+$/.test(raw)) candidates.unshift(Buffer.from(raw, 'base64').toString('utf8'));
  for (const text of candidates) {
    try {
      return parsePublicKeyText(text);
    } catch (e) {
      if (!(e instanceof InvalidKeyError)) throw e;
    }
  }
  throw new Ec2Error('InvalidKey.Format', 'Key is not in valid OpenSSH public key format');
}

export const importKeyPairAction = resourceAction('ImportKeyPair',
  z.object({ KeyName: z.string().optional(), PublicKeyMaterial: z.string().optional() }),
  (db, input, { principal }) => {
    const name = checkKeyName(input.KeyName);
    if (!input.PublicKeyMaterial) throw errors.missing('PublicKeyMaterial');
    const pk = decodeKeyMaterial(input.PublicKeyMaterial);
    const fingerprint = importedKeyFingerprint(pk);
    const keyPairId = insertKeyPair(db, principal.accountId, name, pk.type, fingerprint, pk);
    return { keyName: name, keyFingerprint: fingerprint, keyPairId };
  });

export const deleteKeyPairAction = resourceAction('DeleteKeyPair',
  z.object({ KeyName: z.string().optional(), KeyPairId: z.string().optional() }),
  (db, input, { principal }) => {
    // Idempotent, as in EC2: deleting a missing key pair succeeds.
    if (input.KeyName) {
      db.prepare('DELETE FROM key_pairs WHERE account_id = ? AND name = ?').run(principal.accountId, input.KeyName);
    } else if (input.KeyPairId) {
      db.prepare('DELETE FROM key_pairs WHERE account_id = ? AND key_pair_id = ?').run(principal.accountId, input.KeyPairId);
    } else {
      throw errors.missing('KeyName');
    }
    return { return: true };
  });

export const describeKeyPairsAction = resourceAction('DescribeKeyPairs',
  z.object({ KeyName: list(z.string()), KeyPairId: list(z.string()), Filter: q.filters(), IncludePublicKey: q.bool().optional() }),
  (db, input, { principal }) => {
    // Eucalyptus: an administrator asking for "verbose" sees every account's key pairs.
    const verbose = principal.isAdmin && input.KeyName.includes('verbose');
    const names = input.KeyName.filter((n) => !(verbose && n === 'verbose'));
    const rows = (verbose
      ? db.prepare('SELECT * FROM key_pairs ORDER BY account_id, name').all()
      : db.prepare('SELECT * FROM key_pairs WHERE account_id = ? ORDER BY name').all(principal.accountId)) as KeyPairRow[];
    let selected = rows;
    if (names.length) {
      const missing = names.find((n) => !rows.some((r) => r.name === n));
      if (missing !== undefined) throw keyPairNotFound(missing);
      selected = selected.filter((r) => names.includes(r.name));
    }
    if (input.KeyPairId.length) {
      const missing = input.KeyPairId.find((id) => !rows.some((r) => r.key_pair_id === id));
      if (missing !== undefined) throw new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${missing}' does not exist`);
      selected = selected.filter((r) => input.KeyPairId.includes(r.key_pair_id));
    }
    const kept = applyFilters(selected, input.Filter, {
      'key-name': (r) => r.name,
      fingerprint: (r) => r.fingerprint,
      'key-pair-id': (r) => r.key_pair_id,
      'key-type': (r) => r.key_type,
    });
    return {
      keySet: kept.map((r) => ({
        keyPairId: r.key_pair_id,
        keyName: r.name,
        keyFingerprint: r.fingerprint,
        keyType: r.key_type,
        publicKey: input.IncludePublicKey ? r.public_key : undefined,
        createTime: new Date(r.created_at),
      })),
    };
  });

export const keyPairActions = [createKeyPairAction, importKeyPairAction, deleteKeyPairAction, describeKeyPairsAction];
