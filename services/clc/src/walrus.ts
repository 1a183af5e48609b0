// The clc's link to Walrus (euca_conf --register-walrus): where it is and the key both sides sign with
// (issued here at RegisterWalrus, kept by Walrus as keys/walrus.key); RegisterImage's manifest check
// (Walrus's CheckImage); Walrus's health for DescribeServices; and the short-lived presigned URLs of
// decrypted images that launches carry to the NCs, signed with the cloud's image-delivery key.
import type { Db } from '@mallee/store';
import { Ec2Error, signV4, uriEncode, type Principal } from '@mallee/aws-protocol';
import { WireClient, WireError, admin, generateKey, walrus, type InstanceSpec } from '@mallee/wire';
import type { z } from 'zod';
import { systemCredential } from './accounts.js';
import type { CheckManifest } from './resources/index.js';

export const WALRUS_NAME = 'walrus';
/** The admin account's user whose key signs image URLs for NCs (GetDecryptedImage is admin only). */
export const IMAGE_DELIVERY_USER = 'image-delivery';
/** How long an image URL in a launch stays valid (the NC fetches at once; a re-dispatch gets new ones). */
export const IMAGE_URL_TTL_SECONDS = 15 * 60;

type ServiceStatus = z.infer<typeof admin.serviceStatus>;
type ImageSource = NonNullable<NonNullable<InstanceSpec['imageSources']>['machine']>;

interface WalrusRow { name: string; url: string; wire_key: string; registered_at: string }
interface BundleRow { image_id: string; bucket: string; manifest_key: string; image_bytes: number; image_sha256: string }

export interface WalrusLinkOptions {
  region: string;
  /** Seconds a presigned image URL stays valid (default IMAGE_URL_TTL_SECONDS). */
  imageUrlTtl?: number;
}

export class WalrusLink {
  private cached: { url: string; key: string; client: WireClient } | undefined;

  constructor(private readonly db: Db, private readonly opts: WalrusLinkOptions) {}

  /** Registers (or re-registers, with a new key) the cloud's Walrus; returns the key to install as its keys/walrus.key. */
  register(url: string): string {
    const key = generateKey();
    this.db.prepare(`INSERT INTO walrus (name, url, wire_key, registered_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET url = excluded.url, wire_key = excluded.wire_key, registered_at = excluded.registered_at`)
      .run(WALRUS_NAME, url.replace(/\/+$/, ''), key, new Date().toISOString());
    return key;
  }

  /** Forgets the registered Walrus: its key stops working here at once (NoSuchEntity when none is registered). */
  deregister(name = WALRUS_NAME): void {
    if (!this.db.prepare('DELETE FROM walrus WHERE name = ?').run(name).changes) throw new WireError('NoSuchEntity', `no Walrus named ${name} is registered`, 404);
    this.cached = undefined;
  }

  private row(): WalrusRow | undefined {
    return this.db.prepare('SELECT * FROM walrus WHERE name = ?').get(WALRUS_NAME) as WalrusRow | undefined;
  }

  /** The link key, for the wire plugin's keyFor('walrus'). */
  key(): string | undefined {
    return this.row()?.wire_key;
  }

  url(): string | undefined {
    return this.row()?.url;
  }

  private client(): WireClient {
    const row = this.row();
    if (!row) throw new WireError('NoSuchEntity', 'no Walrus is registered with this cloud: run `mallee register-walrus URL`', 404);
    if (this.cached?.url !== row.url || this.cached.key !== row.wire_key) {
      // CheckImage decrypts the whole bundle: big images take a while.
      this.cached = { url: row.url, key: row.wire_key, client: new WireClient({ url: row.url, from: walrus.CLC_SENDER, key: row.wire_key, path: walrus.WALRUS_WIRE_PATH, timeoutMs: 30 * 60_000 }) };
    }
    return this.cached.client;
  }

  /** Walrus as DescribeServices shows it (none when no Walrus is registered). */
  async serviceStatus(): Promise<ServiceStatus[]> {
    const row = this.row();
    if (!row) return [];
    const base = { type: 'walrus' as const, name: WALRUS_NAME, partition: WALRUS_NAME, url: row.url };
    try {
      const d = await this.client().call(walrus.DescribeWalrus, {}, { timeoutMs: 5000 });
      const now = new Date().toISOString();
      if (!d.cloudKey) return [{ ...base, state: 'NOTREADY', lastContact: now, detail: 'Walrus has no keys/cloud-pk.pem: copy the clc\'s keys/cloud-pk.pem and cloud-cert.pem there (mode 0600) to serve images' }];
      return [{ ...base, state: 'ENABLED', lastContact: now }];
    } catch (err) {
      return [{ ...base, state: 'NOTREADY', detail: `Walrus does not answer: ${(err as Error).message}` }];
    }
  }

  /** RegisterImage's check: asks Walrus to verify and describe the bundle, as EC2 errors when it cannot. */
  checkManifest(): CheckManifest {
    return async (principal: Principal, bucket: string, manifestKey: string) => {
      const location = `${bucket}/${manifestKey}`;
      let r;
      try {
        r = await this.client().call(walrus.CheckImage, {
          bucket, manifestKey, accountId: principal.accountId, accountName: principal.accountName, userId: principal.userId, isAdmin: principal.isAdmin,
        });
      } catch (err) {
        throw manifestError(err, location);
      }
      return {
        imageType: r.imageType,
        architecture: r.architecture,
        ...(r.kernelId ? { kernelId: r.kernelId } : {}),
        ...(r.ramdiskId ? { ramdiskId: r.ramdiskId } : {}),
        record: (db: Db, imageId: string) => {
          db.prepare(`INSERT INTO image_bundles (image_id, bucket, manifest_key, image_bytes, image_sha256, bundled_bytes, signed_by, checked_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(imageId, bucket, manifestKey, r.bytes, r.sha256, r.bundledBytes, r.signedBy, new Date().toISOString());
        },
      };
    };
  }

  /** After DeregisterImage: Walrus may drop its decrypted copy (best effort; a later launch would rebuild it). */
  flush(image: { location: string }): void {
    const slash = image.location.indexOf('/');
    if (slash < 0 || !this.row()) return;
    this.client().call(walrus.FlushCachedImage, { bucket: image.location.slice(0, slash), manifestKey: image.location.slice(slash + 1) }).catch(() => undefined);
  }

  /** A presigned GetDecryptedImage URL for a registered bundle, with what the NC must find there. */
  imageSource(imageId: string, now = new Date()): ImageSource | undefined {
    const row = this.row();
    const bundle = this.db.prepare('SELECT * FROM image_bundles WHERE image_id = ?').get(imageId) as BundleRow | undefined;
    if (!row || !bundle) return undefined;
    const cred = systemCredential(this.db, IMAGE_DELIVERY_USER);
    const base = new URL(row.url);
    const prefix = base.pathname.replace(/\/+$/, '');
    const path = `${prefix}/${uriEncode(bundle.bucket)}/${uriEncode(bundle.manifest_key, true)}`;
    // Pinned to the image recorded at registration: Walrus answers that image or refuses (PreconditionFailed).
    const signed = signV4({
      method: 'GET', path, query: `decrypted=&image-sha256=${bundle.image_sha256}`, headers: { host: base.host },
      accessKeyId: cred.accessKeyId, secretAccessKey: cred.secretAccessKey, region: this.opts.region, service: 's3',
      doubleEncodePath: false, presignExpires: this.opts.imageUrlTtl ?? IMAGE_URL_TTL_SECONDS, date: now,
    });
    return { url: `${base.protocol}//${base.host}${path}?${signed.query}`, sha256: bundle.image_sha256, bytes: bundle.image_bytes };
  }

  /** The launch specs with URLs for their machine image, kernel and ramdisk (those registered from Walrus bundles). */
  withImageSources(specs: InstanceSpec[]): InstanceSpec[] {
    if (!this.row()) return specs;
    const now = new Date();
    const memo = new Map<string, ImageSource | undefined>();
    const source = (id: string | undefined) => {
      if (!id) return undefined;
      if (!memo.has(id)) memo.set(id, this.imageSource(id, now));
      return memo.get(id);
    };
    return specs.map((spec) => {
      const machine = source(spec.imageId);
      const kernel = source(spec.kernelId);
      const ramdisk = source(spec.ramdiskId);
      if (!machine && !kernel && !ramdisk) return spec;
      return { ...spec, imageSources: { ...(machine ? { machine } : {}), ...(kernel ? { kernel } : {}), ...(ramdisk ? { ramdisk } : {}) } };
    });
  }
}

/** Walrus's refusal of a bundle as the EC2 error RegisterImage answers (InvalidManifest, as EC2 does). */
function manifestError(err: unknown, location: string): Ec2Error {
  if (!(err instanceof WireError)) return new Ec2Error('InternalError', `checking the manifest ${location} failed: ${(err as Error).message}`, 500);
  switch (err.code) {
    case 'NoSuchBucket':
    case 'NoSuchKey':
      return new Ec2Error('InvalidManifest', `The manifest ${location} does not exist: upload the bundle first (mallee upload-bundle or euca-upload-bundle).`);
    case 'AccessDenied':
      return new Ec2Error('InvalidManifest', `You may not read the manifest ${location}.`);
    case 'ManifestNotOwned':
      return new Ec2Error('AuthFailure', `Manifest is not accessible: ${err.message}`);
    case 'InvalidManifest':
      return new Ec2Error('InvalidManifest', `The manifest ${location} is not valid: ${err.message.replace(/^The image bundle is not valid: /, '')}`);
    case 'NoSuchEntity':
      return new Ec2Error('InvalidManifest', `The manifest ${location} cannot be read: ${err.message}`);
    case 'ServiceUnavailable':
      return new Ec2Error('Unavailable', `Walrus cannot check the manifest ${location} now: ${err.message}`, 503);
    default:
      return new Ec2Error('InvalidManifest', `The manifest ${location} cannot be used: ${err.code}: ${err.message}`);
  }
}
