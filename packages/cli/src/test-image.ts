// `mallee test-image`: builds the tiny test image set (EKI kernel, ERI busybox initramfs, EMI root
// disk) from Debian packages, registers it as public images and stages the files where this host's
// NC reads images (<home>/images/<id>) — the interim path until NCs fetch images from Walrus.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { admin } from '@mallee/wire';
import { adminLink, CliError } from './admin.js';
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

function stage(home: Home, id: string, file: string): void {
  const dir = join(home.dir, 'images');
  const target = join(dir, id);
  if (existsSync(target)) return;
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, `${target}.tmp`);
  renameSync(`${target}.tmp`, target);
}

export async function installTestImage(home: Home, config: MalleeConfig, say: Say): Promise<TestImage> {
  const outDir = join(home.dir, 'test-image');
  await build(outDir, say);
  const meta = JSON.parse(readFileSync(join(outDir, 'image.json'), 'utf8')) as { stamp: string; kernel: { file: string }; ramdisk: { file: string }; root: { file: string } };
  const link = adminLink(home);
  const creds = await link.call(admin.GetCredentials, { accountName: ADMIN_ACCOUNT });
  const ep: Ec2Endpoint = { url: `${link.url.replace(/\/$/, '')}/services/compute`, region: config.REGION, accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey };
  const s = meta.stamp;
  // Image types follow the manifest names (vmlinuz → kernel, initrd → ramdisk) until manifests are read from Walrus.
  const eki = await registerOnce(ep, `mallee-test-image/vmlinuz-${s}.manifest.xml`, `mallee-test-kernel-${s}`, {}, say);
  const eri = await registerOnce(ep, `mallee-test-image/initrd-${s}.manifest.xml`, `mallee-test-ramdisk-${s}`, {}, say);
  const emi = await registerOnce(ep, `mallee-test-image/mallee-test-${s}.manifest.xml`, `mallee-test-${s}`, { KernelId: eki, RamdiskId: eri, Description: 'Mallee test image: Debian cloud kernel + busybox initramfs; prints "mallee: boot done <instance-id>" on its console' }, say);
  stage(home, eki, join(outDir, meta.kernel.file));
  stage(home, eri, join(outDir, meta.ramdisk.file));
  stage(home, emi, join(outDir, meta.root.file));
  const result: TestImage = { emi, eki, eri, stamp: s };
  writeFileSync(join(home.dir, 'test-image.json'), JSON.stringify(result, null, 2) + '\n');
  return result;
}
