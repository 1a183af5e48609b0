// The clc ↔ Walrus link, one key for both directions (the clc issues it at RegisterWalrus; Walrus
// keeps it as keys/walrus.key). The clc owns accounts, keys and user certificates and serves them to
// Walrus (sender "walrus", at /wire); Walrus owns the bundles and serves their checks to the clc
// (sender "clc", at /_mallee/wire, a path no bucket name can take).
import { z } from 'zod';
import { defineOperation } from '../protocol.js';
import { empty } from './common.js';

export const WALRUS_SENDER = 'walrus';
/** The clc's sender id on Walrus (as on every cc). */
export const CLC_SENDER = 'clc';
/** Where Walrus serves its wire operations. */
export const WALRUS_WIRE_PATH = '/_mallee/wire';

// ---- served by the clc (sender "walrus") ---------------------------------------------------------

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

/**
 * The X.509 certificates (PEM) of an account's users, which may sign its bundles' manifests, and
 * the cloud's own certificate (system bundles are signed with the cloud key, as in Eucalyptus).
 */
export const GetCertificates = defineOperation(
  'GetCertificates',
  z.object({ accountId: z.string().min(1).max(64) }),
  z.object({
    certificates: z.array(z.object({ certificateId: z.string(), userId: z.string(), pem: z.string() })),
    cloudCertificate: z.string().optional(),
  }),
);

// ---- served by Walrus (sender "clc") -------------------------------------------------------------

/**
 * RegisterImage's check (Eucalyptus's CheckImage): may this account read the manifest, is it its own,
 * is it signed by one of its users, do the parts, their digests and the cloud key turn it back into an
 * image? Walrus answers what the manifest says and what the image is (bytes and SHA-256 of the
 * decrypted image, which it now has in its cache). Faults: NoSuchBucket, NoSuchKey, AccessDenied,
 * InvalidManifest, ManifestNotOwned (the bundle names another account), ServiceUnavailable.
 */
export const CheckImage = defineOperation(
  'CheckImage',
  z.object({
    bucket: z.string().min(1),
    manifestKey: z.string().min(1),
    accountId: z.string().min(1),
    accountName: z.string(),
    userId: z.string(),
    isAdmin: z.boolean(),
  }),
  z.object({
    imageType: z.enum(['machine', 'kernel', 'ramdisk']),
    architecture: z.string(),
    kernelId: z.string().optional(),
    ramdiskId: z.string().optional(),
    imageName: z.string(),
    /** The decrypted image. */
    bytes: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bundledBytes: z.number().int().nonnegative(),
    parts: z.number().int().positive(),
    /** Which certificate verified the signature (its id, or "cloud"). */
    signedBy: z.string(),
  }),
);

/** Drops Walrus's decrypted copy of a bundle (after DeregisterImage); unknown bundles are no error. */
export const FlushCachedImage = defineOperation('FlushCachedImage', z.object({ bucket: z.string(), manifestKey: z.string() }), empty);

/** Walrus's state for DescribeServices: its store and whether it holds the cloud key for bundles. */
export const DescribeWalrus = defineOperation(
  'DescribeWalrus',
  empty,
  z.object({ buckets: z.number().int(), objects: z.number().int(), bytes: z.number(), cloudKey: z.boolean(), cachedImages: z.number().int() }),
);
