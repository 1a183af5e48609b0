// The CLI's image-side set-up: registering Walrus with the clc (euca_conf --register-walrus) and the
// X.509 material credentials carry (the cloud certificate, and a certificate and key per user,
// issued by the clc, kept while the clc still knows them).
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { admin, readKeyFile, writeKeyFile } from '@mallee/wire';
import type { AdminLink } from './admin.js';
import type { Home } from './home.js';

type Say = (line: string) => void;

/** All-in-one: register this home's Walrus unless the clc already has it at this URL, working. */
export async function ensureWalrusRegistered(link: AdminLink, home: Home, url: string, say: Say): Promise<void> {
  const keyFile = join(home.keysDir, 'walrus.key');
  const { services } = await link.call(admin.DescribeServices, {});
  const w = services.find((s) => s.type === 'walrus');
  if (w && w.url === url.replace(/\/+$/, '') && readKeyFile(keyFile) && !(w.state === 'NOTREADY' && /does not answer/.test(w.detail ?? ''))) return;
  const { key } = await link.call(admin.RegisterWalrus, { url });
  writeKeyFile(keyFile, key);
  say(`registered walrus (${url}); its key is in ${keyFile}`);
}

export interface UserCertificateFiles {
  certFile: string;
  keyFile: string;
  /** True when a new certificate was issued now. */
  issued: boolean;
}

const fingerprint = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

/**
 * euca2-<user>-cert.pem and -pk.pem in `dir` for the account's user: the ones there when the clc still
 * knows that certificate, else a new pair from the clc (CreateCertificate).
 */
export async function ensureUserCertificate(link: AdminLink, accountName: string, userName: string, dir: string): Promise<UserCertificateFiles> {
  const certFile = join(dir, `euca2-${userName}-cert.pem`);
  const keyFile = join(dir, `euca2-${userName}-pk.pem`);
  if (existsSync(certFile) && existsSync(keyFile)) {
    try {
      const mine = fingerprint(readFileSync(certFile, 'utf8'));
      const { certificates } = await link.call(admin.DescribeCertificates, { accountName });
      if (certificates.some((c) => c.fingerprint === mine)) return { certFile, keyFile, issued: false };
    } catch {
      // unreadable or unknown: issue a new one below
    }
  }
  const issued = await link.call(admin.CreateCertificate, { accountName, userName });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(keyFile, issued.privateKey, { mode: 0o600 });
  writeFileSync(certFile, issued.certificate, { mode: 0o644 });
  return { certFile, keyFile, issued: true };
}

/** The cloud certificate from GetCredentials into `file` (kept when it is already that certificate). */
export function writeCloudCertificate(file: string, pem: string): void {
  if (existsSync(file) && readFileSync(file, 'utf8') === pem) return;
  writeFileSync(file, pem, { mode: 0o644 });
}
