// The RSA pieces of a bundle: the AES key and IV travel as hex strings RSA-encrypted (PKCS#1 v1.5)
// to a certificate, and the manifest is signed RSA-SHA1 with the bundling user's private key.
import { X509Certificate, constants, createPublicKey, privateDecrypt, publicEncrypt, sign, verify, type KeyObject } from 'node:crypto';
import { ManifestError } from './manifest.js';

const publicKeyOf = (certOrKey: string | KeyObject): KeyObject =>
  typeof certOrKey === 'string' && certOrKey.includes('BEGIN CERTIFICATE') ? new X509Certificate(certOrKey).publicKey : createPublicKey(certOrKey);

/** Hex of `secret` (as the ASCII of its hex, as bundlers do) RSA-encrypted to a certificate or public key. */
export function wrapSecret(certificate: string | KeyObject, secret: Buffer): string {
  return publicEncrypt({ key: publicKeyOf(certificate), padding: constants.RSA_PKCS1_PADDING }, Buffer.from(secret.toString('hex'), 'ascii')).toString('hex');
}

/** RSA PKCS#1 v1.5 decryption, by hand: Node 20 refuses that padding in privateDecrypt (and bundles use it). */
export function rsaPkcs1Decrypt(key: KeyObject | string, data: Buffer): Buffer {
  let block: Buffer;
  try {
    block = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, data);
  } catch {
    throw new ManifestError('the image key was not encrypted for this cloud');
  }
  const sep = block.indexOf(0, 2);
  if (block[0] !== 0 || block[1] !== 2 || sep < 10) throw new ManifestError('the image key was not encrypted for this cloud');
  return block.subarray(sep + 1);
}

/** The AES-128 key and IV of a bundle, unwrapped with the private key they were wrapped for. */
export function unwrapBundleKey(privateKey: KeyObject | string, encryptedKeyHex: string, encryptedIvHex: string): { key: Buffer; iv: Buffer } {
  const unhex = (wrapped: string) => {
    const ascii = rsaPkcs1Decrypt(privateKey, Buffer.from(wrapped, 'hex')).toString('latin1').trim();
    if (!/^[0-9a-fA-F]{1,32}$/.test(ascii)) throw new ManifestError('the image key was not encrypted for this cloud');
    return Buffer.from(ascii.padStart(32, '0'), 'hex');
  };
  const key = unhex(encryptedKeyHex);
  const iv = unhex(encryptedIvHex);
  if (key.length !== 16 || iv.length !== 16) throw new ManifestError('the image key or IV is not 128 bits');
  return { key, iv };
}

/** Hex RSA-SHA1 signature of the manifest's signed text. */
export function signManifestText(signedText: string, privateKey: string | KeyObject): string {
  return sign('sha1', Buffer.from(signedText, 'utf8'), privateKey).toString('hex');
}

/** Whether `signature` over the signed text verifies with this certificate (or public key). */
export function verifyManifestText(signedText: string, signature: string, certificate: string | KeyObject): boolean {
  try {
    return verify('sha1', Buffer.from(signedText, 'utf8'), publicKeyOf(certificate), Buffer.from(signature, 'hex'));
  } catch {
    return false;
  }
}
