// SSH key material: OpenSSH public-key lines, new key pairs, and the fingerprints EC2 shows for them
// (created RSA: SHA-1 of the PKCS#8 private key; imported RSA: MD5 of the public key DER; ED25519:
// SHA-256 of the OpenSSH public key blob, base64).
import { createHash, createPublicKey, generateKeyPair as generateKeyObjects, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';

export type SshKeyType = 'rsa' | 'ed25519';

export interface PublicKey { type: SshKeyType; /** The OpenSSH wire-format blob. */ blob: Buffer; key: KeyObject }

export class InvalidKeyError extends Error {}

const b64url = (b: Buffer) => b.toString('base64url');

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** An SSH mpint: big-endian, minimal, with a zero byte in front when the high bit is set. */
function sshMpint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return sshString(v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function readStrings(blob: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < blob.length) {
    if (off + 4 > blob.length) throw new InvalidKeyError('truncated key blob');
    const len = blob.readUInt32BE(off);
    off += 4;
    if (off + len > blob.length) throw new InvalidKeyError('truncated key blob');
    out.push(blob.subarray(off, off + len));
    off += len;
  }
  return out;
}

function stripMpint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** Reads an OpenSSH wire-format public key blob (ssh-rsa or ssh-ed25519). */
export function parseKeyBlob(blob: Buffer): PublicKey {
  const parts = readStrings(blob);
  const type = parts[0]?.toString('latin1');
  try {
    if (type === 'ssh-rsa' && parts.length === 3) {
      const [e, n] = [stripMpint(parts[1]!), stripMpint(parts[2]!)];
      if (n.length * 8 < 1024 || n.length * 8 > 16384) throw new InvalidKeyError('unsupported RSA modulus size');
      const key = createPublicKey({ key: { kty: 'RSA', n: b64url(n), e: b64url(e) }, format: 'jwk' });
      return { type: 'rsa', blob, key };
    }
    if (type === 'ssh-ed25519' && parts.length === 2 && parts[1]!.length === 32) {
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(parts[1]!) }, format: 'jwk' });
      return { type: 'ed25519', blob, key };
    }
  } catch (e) {
    if (e instanceof InvalidKeyError) throw e;
    throw new InvalidKeyError(`unreadable ${type} key`);
  }
  throw new InvalidKeyError(`unsupported key type ${type}`);
}

/**
 * Reads public key material as EC2's ImportKeyPair accepts it: an OpenSSH line (`ssh-rsa AAAA… comment`)
 * or an RFC 4716 block (`---- BEGIN SSH2 PUBLIC KEY ----`).
 */
export function parsePublicKeyText(text: string): PublicKey {
  const t = text.trim();
  if (t.startsWith('---- BEGIN SSH2 PUBLIC KEY ----')) {
    const body = t.split(/\r?\n/).slice(1).filter((l) => !l.startsWith('----'));
    // Header lines ("Comment: …") may continue with a trailing backslash.
    const lines: string[] = [];
    let continued = false;
    for (const l of body) {
      if (continued || /^[\w-]+:/.test(l)) { continued = l.endsWith('\\'); continue; }
      lines.push(l.trim());
    }
    return parseKeyBlob(strictBase64(lines.join('')));
  }
  const m = /^(ssh-rsa|ssh-ed25519)\s+([A-Za-z0-9+/=]+)(?:\s.*)?$/s.exec(t);
  if (!m) throw new InvalidKeyError('not an OpenSSH public key line');
  const pk = parseKeyBlob(strictBase64(m[2]!));
  if (`ssh-${pk.type}` !== m[1]) throw new InvalidKeyError('key type does not match its blob');
  return pk;
}

function strictBase64(s: string): Buffer {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s) || s.length % 4 !== 0) throw new InvalidKeyError('invalid base64');
  return Buffer.from(s, 'base64');
}

/** The OpenSSH authorized_keys line of a public key. */
export function openSshLine(pk: PublicKey, comment?: string): string {
  return `ssh-${pk.type} ${pk.blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

function blobOf(key: KeyObject): PublicKey {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty === 'RSA') {
    const blob = Buffer.concat([sshString('ssh-rsa'), sshMpint(Buffer.from(jwk.e!, 'base64url')), sshMpint(Buffer.from(jwk.n!, 'base64url'))]);
    return { type: 'rsa', blob, key };
  }
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
    return { type: 'ed25519', blob: Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.from(jwk.x!, 'base64url'))]), key };
  }
  throw new Error(`unsupported key ${jwk.kty}`);
}

const colonHex = (b: Buffer) => b.toString('hex').match(/../g)!.join(':');

/** Fingerprint EC2 shows for a key it generated. */
export function createdKeyFingerprint(privateKey: KeyObject): string {
  if (privateKey.asymmetricKeyType === 'ed25519') return ed25519Fingerprint(blobOf(createPublicKey(privateKey)));
  return colonHex(createHash('sha1').update(privateKey.export({ type: 'pkcs8', format: 'der' })).digest());
}

/** Fingerprint EC2 shows for an imported public key. */
export function importedKeyFingerprint(pk: PublicKey): string {
  if (pk.type === 'ed25519') return ed25519Fingerprint(pk);
  return colonHex(createHash('md5').update(pk.key.export({ type: 'spki', format: 'der' })).digest());
}

function ed25519Fingerprint(pk: PublicKey): string {
  return createHash('sha256').update(pk.blob).digest('base64');
}

export interface NewKeyPair { material: string; publicKey: PublicKey; fingerprint: string }

/**
 * A fresh key pair as CreateKeyPair returns it: RSA 2048 as PKCS#1 PEM, ED25519 as an OpenSSH private key.
 * RSA generation runs off the event loop (it takes long enough to stall other requests).
 */
export async function generateKeyPair(type: SshKeyType, comment: string): Promise<NewKeyPair> {
  if (type === 'ed25519') {
    const { privateKey } = generateKeyPairSync('ed25519');
    const publicKey = blobOf(createPublicKey(privateKey));
    return { material: openSshPrivateKey(privateKey, publicKey, comment), publicKey, fingerprint: createdKeyFingerprint(privateKey) };
  }
  const privateKey = await new Promise<KeyObject>((resolve, reject) => {
    generateKeyObjects('rsa', { modulusLength: 2048, publicExponent: 0x10001 }, (err, _pub, priv) => (err ? reject(err) : resolve(priv)));
  });
  const material = privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  return { material, publicKey: blobOf(createPublicKey(privateKey)), fingerprint: createdKeyFingerprint(privateKey) };
}

/** Unencrypted `openssh-key-v1` private key (the only format OpenSSH reads for ED25519). */
function openSshPrivateKey(privateKey: KeyObject, pk: PublicKey, comment: string): string {
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d!, 'base64url');
  const pub = Buffer.from(jwk.x!, 'base64url');
  const check = randomBytes(4);
  let priv = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const one = Buffer.alloc(4);
  one.writeUInt32BE(1);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0', 'latin1'), sshString('none'), sshString('none'), sshString(''), one, sshString(pk.blob), sshString(priv)]);
  const b64 = body.toString('base64').match(/.{1,70}/g)!.join('\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`;
}
