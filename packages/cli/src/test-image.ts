// `mallee test-image`: builds the tiny test image set (EKI kernel, ERI busybox initramfs, EMI root
// disk) from Debian packages, bundles each as the cloud admin and uploads it into Walrus (as any user's
// image), registers them as public images; NCs fetch them from Walrus like every other image.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { admin } from '@mallee/wire';
import { adminLink, CliError } from './admin.js';
import { bundleAndUpload } from './bundles.js';
import { serviceState } from './daemons.js';
import { ensureUserCertificate, writeCloudCertificate } from './walrus.js';
import { ec2Call, type Ec2Endpoint } from './ec2.js';
import { ADMIN_ACCOUNT, type Home } from './home.js';
import type { MalleeConfig } from '@mallee/config';

export interface TestImage {
  emi: string;
  eki: string;
  eri: string;
  /** The builder's content stamp: a rebuilt image set registers under new names. */
  stamp: string;
}

type Say = (line: string) => void;

const builder = () => join(dirname(fileURLToPath(import.meta.url)), '../../../../test/images/build-test-image.sh');

function build(outDir: string, say: Say): Promise<void> {
  const script = builder();
  if (!existsSync(script)) throw new CliError(`the image builder is missing (${script}): run mallee from a checkout of the Mallee repository`);
  say(`building the test image set in ${outDir} (first time: apt packages, ~30 s) …`);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, outDir], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new CliError(`the image builder failed (exit ${code}); its output is above`))));
  });
}

async function registerOnce(ep: Ec2Endpoint, location: string, name: string, extra: Record<string, string>, say: Say): Promise<string> {
  const found = await ec2Call(ep, 'DescribeImages', { 'Owner.1': 'self', 'Filter.1.Name': 'name', 'Filter.1.Value.1': name });
  const existing = ((found.imagesSet as { item?: { imageId: string }[] } | undefined)?.item ?? [])[0];
  if (existing) return existing.imageId;
  const reg = await ec2Call(ep, 'RegisterImage', { ImageLocation: location, Name: name, Architecture: 'x86_64', ...extra });
  const id = String(reg.imageId);
  await ec2Call(ep, 'ModifyImageAttribute', { ImageId: id, 'LaunchPermission.Add.1.Group': 'all' });
  say(`registered ${id} (${name}), launchable by every account`);
  return id;
}

export async function installTestImage(home: Home, config: MalleeConfig, say: Say): Promise<TestImage> {
  const outDir = join(home.dir, 'test-image');
  await build(outDir, say);
  const meta = JSON.parse(readFileSync(join(outDir, 'image.json'), 'utf8')) as { stamp: string; kernel: { file: string }; ramdisk: { file: string }; root: { file: string } };
  const link = adminLink(home);
  const creds = await link.call(admin.GetCredentials, { accountName: ADMIN_ACCOUNT });
  const ep: Ec2Endpoint = { url: `${link.url.replace(/\/$/, '')}/services/compute`, region: config.REGION, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey };
  const s = meta.stamp;
  const walrus = serviceState(home, 'walrus');
  if (!walrus.running || !walrus.url) throw new CliError(`Walrus is not running in ${home.dir}: the test images are bundles in Walrus; start it with \`mallee up --home ${home.dir}\``);
  // Bundled as the cloud admin, with its own certificate, and uploaded like any user's image.
  const cert = await ensureUserCertificate(link, ADMIN_ACCOUNT, creds.userName, home.dir);
  if (creds.cloudCertificate) writeCloudCertificate(home.cloudCert, creds.cloudCertificate);
  const s3 = { url: walrus.url, region: config.REGION, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey };
  const env = { EC2_CERT: cert.certFile, EC2_PRIVATE_KEY: cert.keyFile, EUCALYPTUS_CERT: home.cloudCert, EC2_USER_ID: creds.accountId };
  const bucket = `mallee-test-image/${s}`;
  const upload = async (file: string, prefix: string, imageType: 'machine' | 'kernel' | 'ramdisk') => {
    const location = `${bucket}/${prefix}.manifest.xml`;
    const found = await ec2Call(ep, 'DescribeImages', { 'Owner.1': 'self', 'Filter.1.Name': 'manifest-location', 'Filter.1.Value.1': location });
    if (((found.imagesSet as { item?: unknown[] } | undefined)?.item ?? []).length) return location;
    say(`bundling and uploading ${prefix} into Walrus (${bucket}) …`);
    return (await bundleAndUpload({ image: join(outDir, file), arch: 'x86_64', prefix, imageType }, bucket, s3, { env: { ...process.env, ...env } })).location;
  };
  const eki = await registerOnce(ep, await upload(meta.kernel.file, `vmlinuz-${s}`, 'kernel'), `mallee-test-kernel-${s}`, {}, say);
  const eri = await registerOnce(ep, await upload(meta.ramdisk.file, `initrd-${s}`, 'ramdisk'), `mallee-test-ramdisk-${s}`, {}, say);
  const emi = await registerOnce(ep, await upload(meta.root.file, `mallee-test-${s}`, 'machine'), `mallee-test-${s}`, { KernelId: eki, RamdiskId: eri, Description: 'Mallee test image: Debian cloud kernel + busybox initramfs; prints "mallee: boot done <instance-id>" on its console' }, say);
  const result: TestImage = { emi, eki, eri, stamp: s };
  writeFileSync(join(home.dir, 'test-image.json'), JSON.stringify(result, null, 2) + '\n');
  return result;
}
