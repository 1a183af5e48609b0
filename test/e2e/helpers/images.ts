// Images for the end-to-end suites, made as a user makes them: a small file bundled and uploaded to the
// cloud's Walrus with `mallee bundle-and-upload` under an account's eucarc (EC2_CERT, EC2_PRIVATE_KEY,
// EUCALYPTUS_CERT, S3_URL), then registered by whatever client the test drives.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientEnv, mallee, type Cloud } from './cloud.js';
import type { Ec2Client } from './ec2-client.js';

/**
 * Bundles `size` random bytes as <bucket>/<prefix>.manifest.xml (the location RegisterImage takes) with
 * the credentials in `env` (default: the cloud's admin eucarc); returns that location.
 */
export async function uploadTestBundle(cloud: Cloud, location: string, opts: { env?: Record<string, string>; size?: number; imageType?: 'machine' | 'kernel' | 'ramdisk' } = {}): Promise<string> {
  const m = /^([^/]+)\/(?:(.+)\/)?([^/]+)\.manifest\.xml$/.exec(location);
  if (!m) throw new Error(`not a manifest location: ${location}`);
  const [, bucket, path, prefix] = m;
  const dir = mkdtempSync(join(tmpdir(), 'mallee-e2e-image-'));
  try {
    const file = join(dir, prefix!);
    writeFileSync(file, randomBytes(opts.size ?? 64 * 1024));
    await mallee(['bundle-and-upload', '-i', file, '-b', path ? `${bucket}/${path}` : bucket!, ...(opts.imageType ? ['--image-type', opts.imageType] : [])],
      { ...clientEnv(opts.env ?? cloud.env), TMPDIR: dir });
    return location;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Uploads a test bundle and registers it with `client` (the cloud's admin client by default); returns the image id. */
export async function registerTestImage(cloud: Cloud, location: string, name: string, opts: { env?: Record<string, string>; client?: Ec2Client } = {}): Promise<string> {
  await uploadTestBundle(cloud, location, opts.env ? { env: opts.env } : {});
  return String((await (opts.client ?? cloud.client).ok('RegisterImage', { ImageLocation: location, Name: name })).imageId);
}
