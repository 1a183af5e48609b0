// Images for the clc's tests, made the way users make them: a real Walrus in-process (sharing the
// clc's home, so it has the cloud key), registered with RegisterWalrus; a small file bundled with
// @mallee/image and the account's certificate from CreateCertificate, uploaded over S3, registered.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { signV4, UNSIGNED_PAYLOAD } from '@mallee/aws-protocol';
import { bundleImage, type ImageType } from '@mallee/image';
import { admin, writeKeyFile } from '@mallee/wire';
import { startDaemon as startWalrus, walrusKeyFile } from '@mallee/walrus';
import { cloudCertFile } from '../src/certificates.js';
import type { MalleeConfig } from '@mallee/config';
import type { Ec2, TestCloud } from './harness.js';

export interface Bundler {
  walrusUrl: string;
  /** Bundles, uploads and registers a small image as `who`; returns its id. */
  register(who: { accountName: string; accountId: string; ec2: Ec2 }, name: string, opts?: { type?: ImageType; kernelId?: string; ramdiskId?: string; bucket?: string }): Promise<string>;
  /** Bundles and uploads only; returns the manifest location. */
  upload(who: { accountName: string; accountId: string; ec2: Ec2 }, name: string, opts?: { type?: ImageType; bucket?: string }): Promise<string>;
  close(): Promise<void>;
}

async function s3(url: string, ec2: Ec2, method: string, path: string, body: Buffer | string = ''): Promise<number> {
  const u = new URL(url);
  const signed = signV4({ method, path, headers: { host: u.host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD }, accessKeyId: ec2.accessKeyId, secretAccessKey: ec2.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: UNSIGNED_PAYLOAD });
  const res = await fetch(new URL(path, url), { method, headers: signed.headers, body: method === 'PUT' ? body : undefined });
  await res.arrayBuffer();
  return res.status;
}

/** Walrus beside the test cloud's clc, registered; stop it with close() before the cloud stops. */
export async function startBundler(cloud: Pick<TestCloud, 'clcHome' | 'url' | 'admin'>, config: MalleeConfig): Promise<Bundler> {
  const walrus = await startWalrus({ home: cloud.clcHome, config, port: 0, clcUrl: cloud.url });
  const { key } = await cloud.admin(admin.RegisterWalrus, { url: walrus.url });
  writeKeyFile(walrusKeyFile(cloud.clcHome), key);
  const work = mkdtempSync(join(tmpdir(), 'mallee-bundles-'));
  const certs = new Map<string, { certificate: string; privateKey: string }>();

  const upload: Bundler['upload'] = async (who, name, opts = {}) => {
    let cert = certs.get(who.accountName);
    if (!cert) {
      cert = await cloud.admin(admin.CreateCertificate, { accountName: who.accountName });
      certs.set(who.accountName, cert);
    }
    const file = join(work, name);
    writeFileSync(file, randomBytes(64 * 1024));
    const b = await bundleImage({
      image: file, destination: join(work, `${name}.bundle`), architecture: 'x86_64', imageType: opts.type ?? 'machine', accountId: who.accountId,
      userCertificate: cert.certificate, userPrivateKey: cert.privateKey, cloudCertificate: readFileSync(cloudCertFile(cloud.clcHome), 'utf8'),
    });
    const bucket = opts.bucket ?? `images-${who.accountId}`;
    await s3(walrus.url, who.ec2, 'PUT', `/${bucket}`);
    for (const p of [...b.partPaths, b.manifestPath]) {
      const status = await s3(walrus.url, who.ec2, 'PUT', `/${bucket}/${basename(p)}`, readFileSync(p));
      if (status !== 200) throw new Error(`uploading ${basename(p)}: ${status}`);
    }
    return `${bucket}/${basename(b.manifestPath)}`;
  };

  return {
    walrusUrl: walrus.url,
    upload,
    async register(who, name, opts = {}) {
      const location = await upload(who, name, opts);
      const params: Record<string, string> = { ImageLocation: location, Name: name };
      if (opts.kernelId) params.KernelId = opts.kernelId;
      if (opts.ramdiskId) params.RamdiskId = opts.ramdiskId;
      return String((await who.ec2.ok('RegisterImage', params)).imageId);
    },
    async close() {
      await walrus.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
