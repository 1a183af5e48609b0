// The signed-in user's keys: kept in this tab's sessionStorage only (gone when the tab closes or on
// sign-out), never sent anywhere but as SigV4 signatures.
import { AwsClient } from 'aws4fetch';

export interface Session {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  accountId: string;
  accountName: string;
  isAdmin: boolean;
}

const KEY = 'mallee.console.session';

export function loadSession(): Session | undefined {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(s: Session | undefined): void {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
}

const clients = new Map<string, AwsClient>();

/** A SigV4 signer for the service ("ec2" for EC2 and the console's JSON reads, "s3" for Walrus). */
export function signer(s: Pick<Session, 'accessKeyId' | 'secretAccessKey' | 'region'>, service: 'ec2' | 's3'): AwsClient {
  const k = `${s.accessKeyId}\u0000${service}`;
  let c = clients.get(k);
  if (!c) clients.set(k, (c = new AwsClient({ accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, region: s.region, service, retries: 0 })));
  return c;
}

export function forgetSigners(): void {
  clients.clear();
}
