// The cloud's certificate authority and its users' X.509 certificates, as Eucalyptus keeps them:
// keys/cloud-cert.pem + cloud-pk.pem (made at the first start; bundles are encrypted to the
// certificate and Walrus decrypts them with the key), and per user certificates signed by it, which
// `mallee credentials` hands out with their private key (euca2-<user>-cert.pem / -pk.pem, EC2_CERT /
// EC2_PRIVATE_KEY) so bundles the user signs can be verified. The clc keeps only the certificates.
import { createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import 'reflect-metadata'; // @peculiar/x509's dependency injection (tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import type { Db } from '@mallee/store';
import { WireError } from '@mallee/wire';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type SubtleKey = webcrypto.CryptoKey;

const ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const YEAR = 365 * 24 * 3600 * 1000;

export const cloudCertFile = (home: string) => join(home, 'keys', 'cloud-cert.pem');
export const cloudKeyFile = (home: string) => join(home, 'keys', 'cloud-pk.pem');

function writeAtomically(file: string, text: string, mode: number): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

const serial = () => {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
};

async function subtleKey(pem: string, usage: 'sign' | 'verify'): Promise<SubtleKey> {
  if (usage === 'sign') {
    const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
    return webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
  }
  return webcrypto.subtle.importKey('spki', new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }), ALG, true, ['verify']);
}

/** The cloud certificate and key in `home`: made when missing (an existing key is certified, never replaced). */
export async function ensureCloudCa(home: string): Promise<{ certificate: string }> {
  const certFile = cloudCertFile(home);
  const keyFile = cloudKeyFile(home);
  if (existsSync(certFile) && existsSync(keyFile)) return { certificate: readFileSync(certFile, 'utf8') };
  let keyPem: string;
  if (existsSync(keyFile)) keyPem = readFileSync(keyFile, 'utf8');
  else {
    const pair = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
    keyPem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    writeAtomically(keyFile, keyPem, 0o600);
  }
  const privateKey = await subtleKey(keyPem, 'sign');
  const publicDer = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  const publicKey = await webcrypto.subtle.importKey('spki', publicDer, ALG, true, ['verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=cloud, O=Mallee',
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 10 * YEAR),
    signingAlgorithm: ALG,
    keys: { privateKey, publicKey },
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    ],
  });
  const certificate = cert.toString('pem') + '\n';
  writeAtomically(certFile, certificate, 0o644);
  return { certificate };
}

export interface IssuedCertificate {
  certificateId: string;
  certificate: string;
  privateKey: string;
}

/** Certificate ids look like IAM's server certificate ids: 32 upper-case letters and digits. */
const newCertificateId = () => randomBytes(20).toString('base64').replace(/[^A-Za-z0-9]/g, '').toUpperCase().padEnd(32, 'X').slice(0, 32);

/** A new key pair and certificate for a user, signed by the cloud CA; the clc keeps the certificate only. */
export async function issueUserCertificate(db: Db, home: string, user: { userId: string; userName: string; accountId: string; accountName: string }): Promise<IssuedCertificate> {
  const ca = await ensureCloudCa(home);
  const caCert = new x509.X509Certificate(ca.certificate);
  const signingKey = await subtleKey(readFileSync(cloudKeyFile(home), 'utf8'), 'sign');
  const pair = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const publicKey = await webcrypto.subtle.importKey('spki', pair.publicKey.export({ type: 'spki', format: 'der' }), ALG, true, ['verify']);
  const now = Date.now();
  const esc = (s: string) => s.replace(/[,+="\\<>;#]/g, (c) => `\\${c}`);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${esc(user.userName)}, OU=${esc(user.accountName)}, O=Mallee`,
    issuer: caCert.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 5 * YEAR),
    signingAlgorithm: ALG,
    publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    ],
  });
  const certificate = cert.toString('pem') + '\n';
  const certificateId = newCertificateId();
  const fingerprint = createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex');
  db.prepare('INSERT INTO certificates (certificate_id, user_id, pem, fingerprint, active, created_at) VALUES (?, ?, ?, ?, 1, ?)')
    .run(certificateId, user.userId, certificate, fingerprint, new Date().toISOString());
  return { certificateId, certificate, privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

export interface CertificateRecord { certificateId: string; userId: string; pem: string; fingerprint: string }

/** The active certificates of an account's users (what may sign its bundles). */
export function accountCertificates(db: Db, accountId: string): CertificateRecord[] {
  return db.prepare(`SELECT c.certificate_id AS certificateId, c.user_id AS userId, c.pem, c.fingerprint FROM certificates c
      JOIN users u ON u.user_id = c.user_id WHERE u.account_id = ? AND c.active = 1 ORDER BY c.created_at`).all(accountId) as CertificateRecord[];
}

/** The SHA-256 fingerprint of a PEM certificate (as the clc records it). */
export function fingerprintOf(pem: string): string {
  try {
    return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
  } catch {
    throw new WireError('MalformedCertificate', 'the certificate is not a PEM X.509 certificate', 400);
  }
}
