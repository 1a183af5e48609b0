// Operations the clc serves to Walrus (sender id "walrus"): the clc owns accounts and access keys,
// Walrus asks it who signed a request.
import { z } from 'zod';
import { defineOperation } from '../protocol.js';

export const WALRUS_SENDER = 'walrus';

export const accessKeyCredential = z.object({
  secretAccessKey: z.string(),
  accountId: z.string(),
  accountName: z.string(),
  /** The key's user (defaults to the account's admin user when the clc has no separate users). */
  userId: z.string().optional(),
  /** Member of the cloud's admin account. */
  isAdmin: z.boolean(),
});
export type AccessKeyCredential = z.infer<typeof accessKeyCredential>;

/** An active access key's secret and owner; `credential` is absent for an unknown or inactive key. */
export const LookupAccessKey = defineOperation(
  'LookupAccessKey',
  z.object({ accessKeyId: z.string().min(1).max(128) }),
  z.object({ credential: accessKeyCredential.optional() }),
);
