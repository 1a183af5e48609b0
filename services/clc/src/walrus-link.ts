// The clc side of the Walrus link (sender "walrus"): LookupAccessKey from the clc's accounts, so Walrus
// can verify S3 signatures without its own copy of any secret, and GetCertificates, so it can verify
// the signatures of bundle manifests. Register the handlers with the clc's wire plugin and give
// keyFor('walrus') the key issued to Walrus.
import { handler, walrus, type WireHandler } from '@mallee/wire';
import type { z } from 'zod';

/** Resolves an active access key to its secret and owner, or undefined. */
export type AccessKeyLookup = (accessKeyId: string) => walrus.AccessKeyCredential | undefined | Promise<walrus.AccessKeyCredential | undefined>;
export type CertificateLookup = (accountId: string) => z.infer<typeof walrus.GetCertificates.response>;

const fromWalrus = (from: string) => from === walrus.WALRUS_SENDER;

export function walrusLinkHandler(lookup: AccessKeyLookup): WireHandler<{ accessKeyId: string }, { credential?: walrus.AccessKeyCredential }> {
  return handler(
    walrus.LookupAccessKey,
    async (req) => {
      const credential = await lookup(req.accessKeyId);
      return credential === undefined ? {} : { credential };
    },
    fromWalrus,
  );
}

export function certificatesHandler(lookup: CertificateLookup): WireHandler<{ accountId: string }, z.infer<typeof walrus.GetCertificates.response>> {
  return handler(walrus.GetCertificates, (req) => lookup(req.accountId), fromWalrus);
}
