// A fixed table of access keys, for tests and for running Walrus without a clc.
import type { CredentialLookup } from '@mallee/aws-protocol';

export interface StaticKey {
  secretAccessKey: string;
  accountId: string;
  accountName: string;
  isAdmin?: boolean;
}

export function staticCredentials(keys: Record<string, StaticKey>): CredentialLookup {
  return (accessKeyId) => {
    const k = Object.hasOwn(keys, accessKeyId) ? keys[accessKeyId] : undefined;
    if (!k) return undefined;
    return {
      secretAccessKey: k.secretAccessKey,
      principal: { accountId: k.accountId, accountName: k.accountName, userId: k.accountId, accessKeyId, isAdmin: k.isAdmin ?? false },
    };
  };
}
