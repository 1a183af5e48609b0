// Walrus's side of the clc link for images: the wire operations it serves to the clc (CheckImage for
// RegisterImage, FlushCachedImage after DeregisterImage, DescribeWalrus for DescribeServices) and the
// signature check of manifests against the certificates the clc holds (GetCertificates, cached briefly).
import { S3Error, type Principal } from '@mallee/aws-protocol';
import { verifyManifestText, type BundleManifest } from '@mallee/image';
import { WireClient, WireError, handler, walrus, type WireHandler } from '@mallee/wire';
import type { z } from 'zod';
import { readableObject } from '../s3/actions-objects.js';
import type { ObjectStore } from '../store/types.js';
import { invalidManifest, type DecryptedImageCache } from './decrypt.js';

export type Certificates = z.infer<typeof walrus.GetCertificates.response>;
/** The certificates that may sign an account's manifests. */
export type CertificateSource = (accountId: string) => Promise<Certificates>;

/** GetCertificates from the clc, each answer kept ttlMs (a new certificate is usable within that time). */
export function clcCertificates(opts: { clcUrl: string; key: () => string | Buffer; ttlMs?: number }): CertificateSource {
  const client = new WireClient({ url: opts.clcUrl, from: walrus.WALRUS_SENDER, key: opts.key, timeoutMs: 10_000 });
  const cache = new Map<string, { at: number; value: Promise<Certificates> }>();
  const ttl = opts.ttlMs ?? 30_000;
  return (accountId) => {
    const hit = cache.get(accountId);
    if (hit && Date.now() - hit.at < ttl) return hit.value;
    const value = client.call(walrus.GetCertificates, { accountId });
    if (cache.size > 1000) cache.clear();
    cache.set(accountId, { at: Date.now(), value });
    value.catch(() => cache.delete(accountId));
    return value;
  };
}

/** The manifest check for the image cache: signed by one of the bundling account's users, or by the cloud. */
export function manifestVerifier(certificates: CertificateSource, localCloudCertificate: () => string | undefined): (m: BundleManifest) => Promise<string> {
  return async (manifest) => {
    let found: Certificates;
    try {
      found = await certificates(manifest.accountId);
    } catch (e) {
      throw new S3Error('ServiceUnavailable', `Walrus cannot get the certificates of account ${manifest.accountId} from the clc to check the manifest's signature: ${(e as Error).message}`);
    }
    for (const c of found.certificates) if (verifyManifestText(manifest.signedText, manifest.signature, c.pem)) return c.certificateId;
    const cloud = found.cloudCertificate ?? localCloudCertificate();
    if (cloud && verifyManifestText(manifest.signedText, manifest.signature, cloud)) return 'cloud';
    throw invalidManifest(`its signature does not verify with any certificate of account ${manifest.accountId}; bundle it with that account's certificate and key (EC2_CERT and EC2_PRIVATE_KEY from \`mallee credentials\`)`);
  };
}

const asWire = (e: unknown): never => {
  if (e instanceof S3Error) throw new WireError(e.code, e.message, e.status);
  throw e;
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function imageLinkHandlers(deps: { store: ObjectStore; images: DecryptedImageCache }): WireHandler<any, any>[] {
  const fromClc = (from: string) => from === walrus.CLC_SENDER;
  return [
    handler(walrus.CheckImage, async (req) => {
      try {
        const principal: Principal = { accountId: req.accountId, accountName: req.accountName, userId: req.userId, accessKeyId: '', isAdmin: req.isAdmin };
        readableObject({ principal, store: deps.store }, req.bucket, req.manifestKey);
        // One manifest version throughout: what is checked here is what is decrypted and described.
        const info = deps.images.manifestInfo(req.bucket, req.manifestKey);
        const manifest = await deps.images.manifest(info);
        if (manifest.accountId !== req.accountId) {
          throw new WireError('ManifestNotOwned', `the bundle was made by account ${manifest.accountId}, not ${req.accountId}: register your own bundles`, 403);
        }
        const image = await deps.images.get(req.bucket, req.manifestKey, { manifest: info });
        return {
          imageType: manifest.imageType,
          architecture: manifest.architecture,
          ...(manifest.kernelId ? { kernelId: manifest.kernelId } : {}),
          ...(manifest.ramdiskId ? { ramdiskId: manifest.ramdiskId } : {}),
          imageName: manifest.imageName,
          bytes: image.bytes,
          sha256: image.sha256,
          bundledBytes: manifest.bundledSize ?? 0,
          parts: manifest.parts.length,
          signedBy: image.signedBy,
        };
      } catch (e) {
        return asWire(e);
      }
    }, fromClc),
    handler(walrus.FlushCachedImage, (req) => {
      deps.images.flush(req.bucket, req.manifestKey);
      return {};
    }, fromClc),
    handler(walrus.DescribeWalrus, () => ({ ...deps.store.usage(), cloudKey: deps.images.hasCloudKey(), cachedImages: deps.images.count() }), fromClc),
  ];
}
