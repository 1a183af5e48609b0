import { execFileSync, execSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findKeyPair } from '../../src/resources/index.js';
import { ACCOUNT_A, ACCOUNT_B, errorCode, openCloud, principalOf, type Cloud } from './harness.js';

let cloud: Cloud;
beforeEach(() => { cloud = openCloud(); });
afterEach(() => cloud.close());

const B = principalOf(ACCOUNT_B);
const sh = (cmd: string) => execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
/** "MD5(stdin)= ab:cd:…" → "ab:cd:…" */
const digestOf = (out: string) => out.slice(out.lastIndexOf(' ') + 1);

function sshKeygen(type: 'rsa' | 'ed25519', name: string): { pubLine: string; pubFile: string } {
  const file = join(cloud.dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', 'me@example', '-f', file], { stdio: 'ignore' });
  return { pubLine: readFileSync(`${file}.pub`, 'utf8').trim(), pubFile: `${file}.pub` };
}

type KeyItem = { keyName: string; keyFingerprint: string; publicKey?: string; keyType: string };
const keySet = (r: Record<string, unknown>) => r.keySet as KeyItem[];

describe('CreateKeyPair', () => {
  it('returns a PKCS#1 RSA 2048 key whose fingerprint is the SHA-1 of its PKCS#8 DER, as openssl computes', async () => {
    const r = await cloud.call('CreateKeyPair', { KeyName: 'mykey' });
    const pem = r.keyMaterial as string;
    expect(pem.startsWith('-----BEGIN RSA PRIVATE KEY-----\n')).toBe(true);
    const file = join(cloud.dir, 'mykey.pem');
    writeFileSync(file, pem, { mode: 0o600 });
    expect(sh(`openssl rsa -in ${file} -noout -text | head -1`)).toContain('2048 bit');
    const expected = digestOf(sh(`openssl pkcs8 -in ${file} -topk8 -nocrypt -outform DER | openssl sha1 -c`));
    expect(r.keyFingerprint).toBe(expected);
    // The stored public key is the one ssh-keygen derives from the private key.
    const derived = sh(`ssh-keygen -y -f ${file}`).split(' ').slice(0, 2).join(' ');
    const described = keySet(await cloud.call('DescribeKeyPairs', { KeyName: ['mykey'], IncludePublicKey: 'true' }));
    expect(described[0]!.publicKey!.split(' ').slice(0, 2).join(' ')).toBe(derived);
    expect(findKeyPair(cloud.db, ACCOUNT_A, 'mykey')!.publicKey.startsWith(derived)).toBe(true);
  });

  it('creates ED25519 keys as OpenSSH private keys that ssh-keygen reads, with its SHA-256 fingerprint', async () => {
    const r = await cloud.call('CreateKeyPair', { KeyName: 'ed', KeyType: 'ed25519' });
    const file = join(cloud.dir, 'ed.pem');
    writeFileSync(file, r.keyMaterial as string);
    chmodSync(file, 0o600);
    const derived = sh(`ssh-keygen -y -f ${file}`).split(' ').slice(0, 2).join(' ');
    expect(findKeyPair(cloud.db, ACCOUNT_A, 'ed')!.publicKey.startsWith(derived)).toBe(true);
    const sha = sh(`ssh-keygen -l -E sha256 -f ${file}`).split(' ')[1]!.replace(/^SHA256:/, '');
    expect((r.keyFingerprint as string).replace(/=+$/, '')).toBe(sha);
  });

  it('refuses a second key pair of the same name in an account, but not in another account', async () => {
    await cloud.call('CreateKeyPair', { KeyName: 'dup' });
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'dup' }))).toBe('InvalidKeyPair.Duplicate');
    expect(await errorCode(cloud.call('ImportKeyPair', {
      KeyName: 'dup', PublicKeyMaterial: Buffer.from(sshKeygen('rsa', 'd').pubLine).toString('base64'),
    }))).toBe('InvalidKeyPair.Duplicate');
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'dup' }, B))).toBe('no error');
  });

  it('validates key names: required, ASCII, at most 255 characters', async () => {
    expect(await errorCode(cloud.call('CreateKeyPair', {}))).toBe('MissingParameter');
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'k'.repeat(256) }))).toBe('InvalidParameterValue');
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'clé' }))).toBe('InvalidParameterValue');
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'k'.repeat(255) }))).toBe('no error');
    expect(await errorCode(cloud.call('CreateKeyPair', { KeyName: 'x', KeyType: 'dsa' }))).toBe('InvalidParameterValue');
  });
});

describe('ImportKeyPair', () => {
  it('fingerprints an imported RSA key as the MD5 of its public DER, as openssl computes from ssh-keygen output', async () => {
    const { pubLine, pubFile } = sshKeygen('rsa', 'id_rsa');
    const r = await cloud.call('ImportKeyPair', { KeyName: 'imported', PublicKeyMaterial: Buffer.from(pubLine).toString('base64') });
    const expected = digestOf(sh(`ssh-keygen -e -m PKCS8 -f ${pubFile} | openssl pkey -pubin -outform DER | openssl md5 -c`));
    expect(r.keyFingerprint).toBe(expected);
    const stored = findKeyPair(cloud.db, ACCOUNT_A, 'imported')!;
    expect(stored.publicKey.split(' ').slice(0, 2)).toEqual(pubLine.split(' ').slice(0, 2));
  });

  it('accepts ED25519 keys, fingerprinted as ssh-keygen does (SHA-256)', async () => {
    const { pubLine, pubFile } = sshKeygen('ed25519', 'id_ed');
    const r = await cloud.call('ImportKeyPair', { KeyName: 'ed', PublicKeyMaterial: Buffer.from(pubLine).toString('base64') });
    const sha = sh(`ssh-keygen -l -E sha256 -f ${pubFile}`).split(' ')[1]!.replace(/^SHA256:/, '');
    expect((r.keyFingerprint as string).replace(/=+$/, '')).toBe(sha);
    expect(keySet(await cloud.call('DescribeKeyPairs', { KeyName: ['ed'] }))[0]!.keyType).toBe('ed25519');
  });

  it('accepts an RFC 4716 public key and a raw (not base64) OpenSSH line', async () => {
    const { pubLine, pubFile } = sshKeygen('rsa', 'id_rfc');
    const rfc = sh(`ssh-keygen -e -f ${pubFile}`);
    const a = await cloud.call('ImportKeyPair', { KeyName: 'rfc', PublicKeyMaterial: Buffer.from(rfc).toString('base64') });
    const b = await cloud.call('ImportKeyPair', { KeyName: 'raw', PublicKeyMaterial: pubLine });
    expect(a.keyFingerprint).toBe(b.keyFingerprint);
  });

  it('rejects material that is not a public key with InvalidKey.Format', async () => {
    for (const junk of ['bm90IGEga2V5', Buffer.from('ssh-rsa AAAAB3NzaC1yc2E= x').toString('base64'), Buffer.from('ssh-rsa !!!').toString('base64')]) {
      expect(await errorCode(cloud.call('ImportKeyPair', { KeyName: 'bad', PublicKeyMaterial: junk }))).toBe('InvalidKey.Format');
    }
    expect(await errorCode(cloud.call('ImportKeyPair', { KeyName: 'bad' }))).toBe('MissingParameter');
  });
});

describe('DescribeKeyPairs and DeleteKeyPair', () => {
  it('names a missing key pair with InvalidKeyPair.NotFound and filters by name and fingerprint', async () => {
    const a = await cloud.call('CreateKeyPair', { KeyName: 'alpha' });
    await cloud.call('CreateKeyPair', { KeyName: 'beta' });
    expect(keySet(await cloud.call('DescribeKeyPairs', {})).map((k) => k.keyName)).toEqual(['alpha', 'beta']);
    expect(await errorCode(cloud.call('DescribeKeyPairs', { KeyName: ['alpha', 'gamma'] }))).toBe('InvalidKeyPair.NotFound');
    const byPrint = await cloud.call('DescribeKeyPairs', { Filter: [{ Name: 'fingerprint', Value: [a.keyFingerprint] }] });
    expect(keySet(byPrint).map((k) => k.keyName)).toEqual(['alpha']);
    const byName = await cloud.call('DescribeKeyPairs', { Filter: [{ Name: 'key-name', Value: ['b*'] }] });
    expect(keySet(byName).map((k) => k.keyName)).toEqual(['beta']);
    expect(keySet(await cloud.call('DescribeKeyPairs', {}))[0]!.publicKey).toBeUndefined();
  });

  it('keeps accounts apart: B neither sees nor deletes A\'s key pair', async () => {
    await cloud.call('CreateKeyPair', { KeyName: 'secret' });
    expect(keySet(await cloud.call('DescribeKeyPairs', {}, B))).toEqual([]);
    expect(await errorCode(cloud.call('DescribeKeyPairs', { KeyName: ['secret'] }, B))).toBe('InvalidKeyPair.NotFound');
    expect(await cloud.call('DeleteKeyPair', { KeyName: 'secret' }, B)).toEqual({ return: true });
    expect(findKeyPair(cloud.db, ACCOUNT_A, 'secret')).toBeDefined();
  });

  it('deletes idempotently, as EC2 does', async () => {
    await cloud.call('CreateKeyPair', { KeyName: 'gone' });
    expect(await cloud.call('DeleteKeyPair', { KeyName: 'gone' })).toEqual({ return: true });
    expect(findKeyPair(cloud.db, ACCOUNT_A, 'gone')).toBeUndefined();
    expect(await cloud.call('DeleteKeyPair', { KeyName: 'gone' })).toEqual({ return: true });
    expect(await errorCode(cloud.call('DeleteKeyPair', {}))).toBe('MissingParameter');
  });

  it('shows an administrator every account\'s key pairs with "verbose"', async () => {
    await cloud.call('CreateKeyPair', { KeyName: 'a1' });
    await cloud.call('CreateKeyPair', { KeyName: 'b1' }, B);
    const admin = principalOf('999999999999', true);
    expect(keySet(await cloud.call('DescribeKeyPairs', { KeyName: ['verbose'] }, admin)).map((k) => k.keyName).sort()).toEqual(['a1', 'b1']);
    expect(await errorCode(cloud.call('DescribeKeyPairs', { KeyName: ['verbose'] }, B))).toBe('InvalidKeyPair.NotFound');
  });
});
