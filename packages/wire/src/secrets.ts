// Secrets that cross the wire (iSCSI CHAP passwords) travel sealed, hop by hop: AES-256-GCM under a key
// derived from the link's own wire key, so only the two ends of that link can read them (the wire
// itself is signed, not encrypted). A component re-seals with the next link's key before passing one on.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { WireError } from './protocol.js';

const PREFIX = 'sealed1:';

function derive(wireKey: Buffer | string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(wireKey), Buffer.alloc(0), 'mallee wire sealed secret', 32));
}

export function sealSecret(wireKey: Buffer | string, plaintext: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', derive(wireKey), iv);
  const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
  return PREFIX + Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64');
}

export function openSecret(wireKey: Buffer | string, sealed: string): string {
  if (!sealed.startsWith(PREFIX)) throw new WireError('InvalidParameterValue', 'secret is not sealed');
  const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64');
  try {
    const d = createDecipheriv('aes-256-gcm', derive(wireKey), raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  } catch {
    throw new WireError('InvalidParameterValue', 'sealed secret does not open with this link\'s key');
  }
}

/** A sealed secret passed on to the next link: opened with the incoming link's key, sealed with the outgoing one's. */
export function resealSecret(fromKey: Buffer | string, toKey: Buffer | string, sealed: string): string {
  return sealSecret(toKey, openSecret(fromKey, sealed));
}
