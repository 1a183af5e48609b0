// The clc side of the Walrus link: answers LookupAccessKey (sender "walrus") from the clc's accounts,
// so Walrus can verify S3 signatures without its own copy of any secret. Register the returned
// handler with the clc's wire plugin and give keyFor('walrus') the key issued to Walrus.
import { handler, walrus, type WireHandler } from '@mallee/wire';

/** Resolves an active access key to its secret and owner, or undefined. */
export type AccessKeyLookup = (accessKeyId: string) => walrus.AccessKeyCredential | undefined | Promise<walrus.AccessKeyCredential | undefined>;

export function walrusLinkHandler(lookup: AccessKeyLookup): WireHandler<{ accessKeyId: string }, { credential?: walrus.AccessKeyCredential }> {
  return handler(
    walrus.LookupAccessKey,
    async (req) => {
      const credential = await lookup(req.accessKeyId);
      return credential === undefined ? {} : { credential };
    },
    (from) => from === walrus.WALRUS_SENDER,
  );
}
