// Operations the clc serves to the `mallee` admin command (sender id "admin", key in the clc's home).
import { z } from 'zod';
import { defineOperation } from '../protocol.js';
import { empty } from './common.js';
import { propertySource } from './properties.js';

export const ADMIN_SENDER = 'admin';

export const RegisterCluster = defineOperation(
  'RegisterCluster',
  z.object({ name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/), url: z.string().url() }),
  /** key: the wire key the clc will sign with; install it as the cc's keys/cloud.key. */
  z.object({ name: z.string(), key: z.string() }),
);
export const DeregisterCluster = defineOperation('DeregisterCluster', z.object({ name: z.string() }), empty);

/** Forwarded by the clc to the cluster's cc; key goes to the nc's keys/node.key. */
export const RegisterNodeAdmin = defineOperation(
  'RegisterNodeAdmin',
  z.object({ cluster: z.string(), node: z.string(), url: z.string().url() }),
  z.object({ node: z.string(), key: z.string() }),
);

export const serviceStatus = z.object({
  type: z.enum(['clc', 'walrus', 'sc', 'cc', 'nc']),
  name: z.string(),
  partition: z.string(),
  url: z.string(),
  state: z.enum(['ENABLED', 'NOTREADY', 'DISABLED', 'BROKEN']),
  lastContact: z.string().optional(),
  detail: z.string().optional(),
});
export const DescribeServices = defineOperation('DescribeServices', empty, z.object({ services: z.array(serviceStatus) }));

export const accountCredentials = z.object({
  accountId: z.string(),
  accountName: z.string(),
  userName: z.string(),
  accessKeyId: z.string(),
  secretAccessKey: z.string(),
});
export type AccountCredentials = z.infer<typeof accountCredentials>;

export const CreateAccount = defineOperation('CreateAccount', z.object({ name: z.string().regex(/^[a-z0-9][a-z0-9.@_-]{0,62}$/) }), accountCredentials);
export const DescribeAccounts = defineOperation('DescribeAccounts', empty, z.object({ accounts: z.array(z.object({ accountId: z.string(), accountName: z.string() })) }));
/** A new access key for the account's admin user (`mallee user key create`). */
export const CreateAccessKey = defineOperation('CreateAccessKey', z.object({ accountName: z.string() }), accountCredentials);
/** An active access key of the account (for `mallee credentials`), creating one if it has none. */
export const GetCredentials = defineOperation('GetCredentials', z.object({ accountName: z.string() }), accountCredentials);

/**
 * Sets a cloud property (`mallee property NAME=VALUE`), or with `reset` returns it to its default
 * (Eucalyptus's ModifyPropertyValue). `oldValue` is what applied before.
 */
export const ModifyPropertyValue = defineOperation(
  'ModifyPropertyValue',
  z.object({ name: z.string().min(1).max(200), value: z.string().max(4096).optional(), reset: z.boolean().optional() }),
  z.object({ name: z.string(), oldValue: z.string(), value: z.string(), source: propertySource }),
);
