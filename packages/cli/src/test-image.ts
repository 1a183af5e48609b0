// `mallee test-image`: builds a test image set from Debian packages, bundles each image as the cloud
// admin and uploads it into Walrus (as any user's image), registers them as public images (EKI kernel,
// ERI ramdisk, EMI root disk); NCs fetch them from Walrus like every other image. Two sets:
//   busybox (default): the Debian cloud kernel + a busybox initramfs, boots in seconds (test/images/build-test-image.sh)
//   debian (--debian): a real Debian 12 guest (debootstrap: systemd, cloud-init, qemu-guest-agent, sshd),
//                      built once into a cache shared by every home on the host (test/images/build-debian-image.sh)
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

export type TestImageSet = 'busybox' | 'debian';

type Say = (line: string) => void;

interface SetDescription {
  script: string;
  /** Where the builder writes: a directory of the home, or undefined for the builder's shared cache (it prints the directory). */
  outDir(home: Home): string | undefined;
  /** Registered names are `<prefix>-{kernel,ramdisk}-<stamp>` and `<prefix>-<stamp>`; bundles go to `<bucket>/<stamp>/`. */
  prefix: string;
  bucket: string;
  description: string;
  /** The ids go to <home>/<idsFile>. */
  idsFile: string;
  building: string;
}

const SETS: Record<TestImageSet, SetDescription> = {
  busybox: {
    script: 'build-test-image.sh',
    outDir: (home) => join(home.dir, 'test-image'),
    prefix: 'mallee-test',
    bucket: 'mallee-test-image',
    description: 'Mallee test image: Debian cloud kernel + busybox initramfs; prints "mallee: boot done <instance-id>" on its console',
    idsFile: 'test-image.json',
    building: 'building the test image set (first time: apt packages, ~30 s)',
  },
  debian: {
    script: 'build-debian-image.sh',
    outDir: () => undefined,
    prefix: 'mallee-debian-12',
    bucket: 'mallee-debian-12',
    description: 'Mallee Debian 12 test guest: systemd, cloud-init (NoCloud, EC2 metadata), qemu-guest-agent, openssh-server; prints "mallee: debian boot done <instance-id>" on its console',
    idsFile: 'test-image-debian.json',
    building: 'building the Debian 12 test guest with debootstrap (first time on this host: about 1–3 min; later: cached)',
  },
};

const imagesDir = () => join(dirname(fileURLToPath(import.meta.url)), '../../../../test/images');

/** Run the set's builder (progress on our stderr) and return the directory it built into. */
function build(set: SetDescription, home: Home, say: Say): Promise<string> {
  const script = join(imagesDir(), set.script);
  if (!existsSync(script)) throw new CliError(`the image builder is missing (${script}): run mallee from a checkout of the Mallee repository`);
  const out = set.outDir(home);
  say(`${set.building} …`);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...(out ? [out] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new CliError(`the image builder failed (exit ${code}); its output is above`));
      resolve(out ?? stdout.trim().split('\n').pop() ?? '');
    });
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

export async function installTestImage(home: Home, config: MalleeConfig, say: Say, which: TestImageSet = 'busybox'): Promise<TestImage> {
  const set = SETS[which];
  const outDir = await build(set, home, say);
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
  const bucket = `${set.bucket}/${s}`;
  const upload = async (file: string, prefix: string, imageType: 'machine' | 'kernel' | 'ramdisk') => {
    const location = `${bucket}/${prefix}.manifest.xml`;
    const found = await ec2Call(ep, 'DescribeImages', { 'Owner.1': 'self', 'Filter.1.Name': 'manifest-location', 'Filter.1.Value.1': location });
    if (((found.imagesSet as { item?: unknown[] } | undefined)?.item ?? []).length) return location;
    say(`bundling and uploading ${prefix} into Walrus (${bucket}) …`);
    return (await bundleAndUpload({ image: join(outDir, file), arch: 'x86_64', prefix, imageType }, bucket, s3, { env: { ...process.env, ...env } })).location;
  };
  const p = set.prefix;
  const eki = await registerOnce(ep, await upload(meta.kernel.file, `vmlinuz-${s}`, 'kernel'), `${p}-kernel-${s}`, {}, say);
  const eri = await registerOnce(ep, await upload(meta.ramdisk.file, `initrd-${s}`, 'ramdisk'), `${p}-ramdisk-${s}`, {}, say);
  const emi = await registerOnce(ep, await upload(meta.root.file, `${p}-${s}`, 'machine'), `${p}-${s}`, { KernelId: eki, RamdiskId: eri, Description: set.description }, say);
  const result: TestImage = { emi, eki, eri, stamp: s };
  writeFileSync(join(home.dir, set.idsFile), JSON.stringify(result, null, 2) + '\n');
  return result;
}

export function testImageIdsFile(which: TestImageSet): string {
  return SETS[which].idsFile;
}
