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

/** Forwarded to the cluster's cc; the node's key stops working there at once. */
export const DeregisterNodeAdmin = defineOperation('DeregisterNodeAdmin', z.object({ cluster: z.string(), node: z.string() }), empty);

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
  /** The cloud certificate (EUCALYPTUS_CERT: bundles are encrypted to it). */
  cloudCertificate: z.string().optional(),
});
export type AccountCredentials = z.infer<typeof accountCredentials>;

export const CreateAccount = defineOperation('CreateAccount', z.object({ name: z.string().regex(/^[a-z0-9][a-z0-9.@_-]{0,62}$/) }), accountCredentials);
export const DescribeAccounts = defineOperation('DescribeAccounts', empty, z.object({ accounts: z.array(z.object({ accountId: z.string(), accountName: z.string() })) }));
/** A new access key for the account's admin user (`mallee user key create`). */
export const CreateAccessKey = defineOperation('CreateAccessKey', z.object({ accountName: z.string() }), accountCredentials);
/** An active access key of the account (for `mallee credentials`), creating one if it has none. */
export const GetCredentials = defineOperation('GetCredentials', z.object({ accountName: z.string() }), accountCredentials);

/** Register the cloud's Walrus (euca_conf --register-walrus); key: install it as Walrus's keys/walrus.key. */
export const RegisterWalrus = defineOperation('RegisterWalrus', z.object({ url: z.string().url() }), z.object({ name: z.string(), key: z.string() }));
/** euca_conf --deregister-walrus: the clc forgets Walrus and its key (Walrus's requests are refused from then on). */
export const DeregisterWalrus = defineOperation('DeregisterWalrus', z.object({ name: z.string().default('walrus') }), empty);

/**
 * A new X.509 certificate and private key for an account's user, signed by the cloud (what Eucalyptus's
 * credentials zip holds as euca2-<user>-cert.pem / -pk.pem): the user signs bundle manifests with it.
 * The clc keeps the certificate only; the private key is in this answer and nowhere else.
 */
export const CreateCertificate = defineOperation(
  'CreateCertificate',
  z.object({ accountName: z.string(), userName: z.string().optional() }),
  z.object({ certificateId: z.string(), userName: z.string(), certificate: z.string(), privateKey: z.string() }),
);

/** The active certificates of an account's users (id, user, SHA-256 fingerprint). */
export const DescribeCertificates = defineOperation(
  'DescribeCertificates',
  z.object({ accountName: z.string() }),
  z.object({ certificates: z.array(z.object({ certificateId: z.string(), userId: z.string(), fingerprint: z.string() })) }),
);

/**
 * Sets a cloud property (`mallee property NAME=VALUE`), or with `reset` returns it to its default
 * (Eucalyptus's ModifyPropertyValue). `oldValue` is what applied before.
 */
export const ModifyPropertyValue = defineOperation(
  'ModifyPropertyValue',
  z.object({ name: z.string().min(1).max(200), value: z.string().max(4096).optional(), reset: z.boolean().optional() }),
  z.object({ name: z.string(), oldValue: z.string(), value: z.string(), source: propertySource }),
);

// --- storage controllers (sc) -------------------------------------------------------------------

/** What an SC needs to reach Walrus: the S3 endpoint and the block-storage system account's key. */
export const blockStorageCredentials = z.object({
  walrusUrl: z.string().url(),
  bucket: z.string(),
  accessKeyId: z.string(),
  secretAccessKey: z.string(),
});
export type BlockStorageCredentials = z.infer<typeof blockStorageCredentials>;

/**
 * Register the SC of a zone (one per cluster). key: install as the SC's keys/sc.key; storage: its
 * keys/blockstorage.json (the clc creates the `blockstorage` system account for it, once). walrusUrl
 * defaults to the Walrus registered with the clc.
 */
export const RegisterStorageController = defineOperation(
  'RegisterStorageController',
  z.object({ zone: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/), url: z.string().url(), walrusUrl: z.string().url().optional() }),
  z.object({ zone: z.string(), key: z.string(), storage: blockStorageCredentials }),
);
export const DeregisterStorageController = defineOperation('DeregisterStorageController', z.object({ zone: z.string() }), empty);

/** Every account's volumes with what the SC knows of them (`mallee describe-volumes --verbose`). */
export const DescribeVolumesAdmin = defineOperation(
  'DescribeVolumesAdmin',
  z.object({ verbose: z.boolean().default(false) }),
  z.object({
    volumes: z.array(z.object({
      volumeId: z.string(), accountName: z.string(), zone: z.string(), sizeGiB: z.number(), status: z.string(),
      snapshotId: z.string().optional(), instanceId: z.string().optional(), device: z.string().optional(),
      attachmentStatus: z.string().optional(), scStatus: z.string().optional(), exportedTo: z.string().optional(), detail: z.string().optional(),
    })),
    controllers: z.array(z.object({ zone: z.string(), url: z.string(), state: z.string(), totalGiB: z.number().optional(), maxTotalGiB: z.number().optional(), maxVolumeGiB: z.number().optional(), detail: z.string().optional() })),
  }),
);

// --- live migration (issue 7) -------------------------------------------------------------------

/**
 * `mallee migrate-instance ID [--dest NODE]` (instanceId) and `mallee evacuate-node NODE` (sourceNode: every
 * running instance of that node, one after another). Without dest the clc picks the ENABLED node of the
 * instance's cluster with the most free memory that fits it. Each result says where it went or why not.
 */
export const MigrateInstances = defineOperation(
  'MigrateInstances',
  z.object({ instanceId: z.string().min(1).optional(), sourceNode: z.string().min(1).optional(), dest: z.string().min(1).optional() }),
  z.object({
    migrations: z.array(z.object({
      instanceId: z.string(), source: z.string(), dest: z.string().optional(), ms: z.number().optional(),
      volumes: z.array(z.string()).default([]), error: z.string().optional(),
    })),
  }),
);
