// Bundled images end to end, as users make them: the test kernel, ramdisk and root disk bundled with
// `mallee bundle-image` / `mallee upload-bundle` and with euca2ools (euca-bundle-image,
// euca-upload-bundle, euca-register), registered with their types read from the manifests (a tampered
// manifest refused), and booted
// as real guests (libvirt, QEMU/TCG here) by awscli, euca2ools and boto3 — the NC downloading each
// image from Walrus once, into its cache, and a second launch downloading nothing.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, eventually, libvirtDomains, mallee, repoRoot, runTool, startCloud, type Cloud } from './helpers/cloud.js';

const run = promisify(execFile);
const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!libvirtHere) console.warn('images.test.ts skipped: libvirtd is not running (run test/run-all.sh, which starts it)');

const built = join(repoRoot, 'test-output', 'images');
let cloud: Cloud;
let work: string;
const ids: Record<string, string> = {};
const launched: string[] = [];

beforeAll(async () => {
  if (!libvirtHere) return;
  // The test image set, built once per checkout (cached in test-output/images by its content stamp).
  await run('bash', [join(repoRoot, 'test/images/build-test-image.sh'), built], { timeout: 600_000 });
  // QEMU/TCG forced: it is what runs here (the KVM probe is the guests suite's). Three 1-core guests run
  // at once on a 2-core host: MAX_CORES overcommits, as the seed story does.
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1, testImage: false, conf: { HYPERVISOR: 'qemu', MAX_CORES: 4 } });
  work = join(cloud.home, 'bundles');
  mkdirSync(work);
}, 900_000);
afterAll(async () => {
  if (cloud && launched.length) await aws(['ec2', 'terminate-instances', '--instance-ids', ...launched]).catch(() => undefined);
  await cloud?.stop();
}, 180_000);

const env = () => clientEnv(cloud.env);
async function aws(args: string[]): Promise<Record<string, unknown>> {
  const r = await runTool('aws', ['--output', 'json', ...args], env());
  if (r.code !== 0) throw new Error(`aws ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
}
async function euca(cmd: string, args: string[]): Promise<string> {
  const r = await runTool(join(repoRoot, '../shared/tools/euca'), [cmd, ...args], env());
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout;
}
const user = (args: string[]) => mallee(args, { ...env(), TMPDIR: work });
const imageOf = async (id: string) => ((await aws(['ec2', 'describe-images', '--image-ids', id])).Images as Record<string, string>[])[0]!;
const consoleOf = async (id: string) => String((await aws(['ec2', 'get-console-output', '--instance-id', id])).Output ?? '');

async function ncMetric(stat: string): Promise<number> {
  const url = readFileSync(join(cloud.home, 'run', 'nc.url'), 'utf8').trim();
  const text = await (await fetch(new URL('/metrics', url))).text();
  return Number(new RegExp(`mallee_nc_image_cache\\{stat="${stat}"\\} (\\d+)`).exec(text)?.[1] ?? NaN);
}

describe.skipIf(!libvirtHere)('bundled images from Walrus boot real guests', () => {
  it('mallee and euca2ools bundles upload, register and describe with the type, kernel and ramdisk their manifests say', async () => {
    // Kernel: mallee bundle-image + mallee upload-bundle, registered with awscli.
    await user(['bundle-image', '-i', join(built, 'vmlinuz'), '--image-type', 'kernel', '-d', join(work, 'k')]);
    const up = await user(['upload-bundle', '-b', 'e2e-images/k', '-m', join(work, 'k', 'vmlinuz.manifest.xml')]);
    expect(up.stdout).toContain('aws ec2 register-image --image-location e2e-images/k/vmlinuz.manifest.xml');
    ids.eki = String((await aws(['ec2', 'register-image', '--image-location', 'e2e-images/k/vmlinuz.manifest.xml', '--name', 'e2e-kernel'])).ImageId);
    expect((await imageOf(ids.eki)).ImageType).toBe('kernel');
    // The same manifest with one signed field changed, uploaded beside it with awscli: refused, nothing registered.
    const manifest = readFileSync(join(work, 'k', 'vmlinuz.manifest.xml'), 'utf8');
    writeFileSync(join(work, 'tampered.manifest.xml'), manifest.replace(/<size>(\d+)<\/size>/, (_m, n: string) => `<size>${Number(n) + 1}</size>`));
    expect((await runTool('aws', ['s3', 'cp', '--only-show-errors', join(work, 'tampered.manifest.xml'), 's3://e2e-images/k/tampered.manifest.xml'], env())).code).toBe(0);
    const refused = await runTool('aws', ['ec2', 'register-image', '--image-location', 'e2e-images/k/tampered.manifest.xml', '--name', 'e2e-tampered'], env());
    expect([refused.code, refused.stderr]).toEqual([255, expect.stringMatching(/InvalidManifest.*signature does not verify/s)]);
    expect(JSON.stringify(await aws(['ec2', 'describe-images', '--owners', 'self']))).not.toContain('e2e-tampered');

    // Ramdisk: euca-bundle-image --ramdisk true, euca-upload-bundle, euca-register.
    await euca('euca-bundle-image', ['-i', join(built, 'initrd.img'), '-r', 'x86_64', '--ramdisk', 'true', '-d', join(work, 'r')]);
    await euca('euca-upload-bundle', ['-b', 'e2e-images/r', '-m', join(work, 'r', 'initrd.img.manifest.xml')]);
    ids.eri = /IMAGE\s+(eri-[0-9a-f]+)/.exec(await euca('euca-register', ['-n', 'e2e-ramdisk', 'e2e-images/r/initrd.img.manifest.xml']))![1]!;
    expect((await imageOf(ids.eri)).ImageType).toBe('ramdisk');

    // Root disks: one each way; euca2ools names its kernel and ramdisk in the manifest.
    copyFileSync(join(built, 'root.img'), join(work, 'root-mallee.img'));
    await user(['bundle-and-upload', '-i', join(work, 'root-mallee.img'), '-b', 'e2e-images/m']);
    ids.emiMallee = String((await aws(['ec2', 'register-image', '--image-location', 'e2e-images/m/root-mallee.img.manifest.xml', '--name', 'e2e-mallee',
      '--kernel-id', ids.eki, '--ramdisk-id', ids.eri])).ImageId);
    copyFileSync(join(built, 'root.img'), join(work, 'root-euca.img'));
    await euca('euca-bundle-image', ['-i', join(work, 'root-euca.img'), '-r', 'x86_64', '--kernel', ids.eki, '--ramdisk', ids.eri, '-d', join(work, 'e')]);
    await euca('euca-upload-bundle', ['-b', 'e2e-images/e', '-m', join(work, 'e', 'root-euca.img.manifest.xml')]);
    ids.emiEuca = /IMAGE\s+(emi-[0-9a-f]+)/.exec(await euca('euca-register', ['-n', 'e2e-euca', 'e2e-images/e/root-euca.img.manifest.xml']))![1]!;
    const euc = await imageOf(ids.emiEuca);
    expect([euc.ImageType, euc.KernelId, euc.RamdiskId, euc.Architecture]).toEqual(['machine', ids.eki, ids.eri, 'x86_64']);
    expect((await imageOf(ids.emiMallee)).ImageType).toBe('machine');
  }, 300_000);

  it('awscli and euca2ools boot them (the NC fetched each image from Walrus into its cache), and boto3 boots one again without a download', async () => {
    // A loaded host's libvirtd can keep the node from answering a poll or two: launch once it is ENABLED.
    await eventually('the node ENABLED', async () => {
      const services = JSON.parse((await cloud.mallee(['describe-services', '-o', 'json'])).stdout) as { type: string; state: string }[];
      return services.some((s) => s.type === 'nc' && s.state === 'ENABLED') ? true : undefined;
    }, 120_000);
    const [a, b] = await Promise.all([
      aws(['ec2', 'run-instances', '--image-id', ids.emiMallee!, '--instance-type', 't1.micro']).then((r) => (r.Instances as { InstanceId: string }[])[0]!.InstanceId),
      euca('euca-run-instances', ['-t', 't1.micro', ids.emiEuca!]).then((out) => /INSTANCE\s+(i-[0-9a-f]+)/.exec(out)![1]!),
    ]);
    launched.push(a, b);
    for (const id of [a, b]) await eventually(`${id} boot-done marker`, async () => ((await consoleOf(id)).includes(`mallee: boot done ${id}`) ? true : undefined), 240_000);
    const cache = join(cloud.home, 'libvirt', 'cache');
    for (const id of [ids.emiMallee!, ids.emiEuca!, ids.eki!, ids.eri!]) expect(existsSync(join(cache, id))).toBe(true);
    expect(readFileSync(join(cache, ids.emiMallee!)).equals(readFileSync(join(built, 'root.img')))).toBe(true);
    expect(await ncMetric('downloads')).toBe(4);

    const py = `import boto3; r = boto3.client("ec2").run_instances(ImageId="${ids.emiMallee}", MinCount=1, MaxCount=1, InstanceType="t1.micro"); print(r["Instances"][0]["InstanceId"])`;
    const boto3 = await runTool('python3', ['-c', py], env());
    const c = boto3.stdout.trim();
    expect(c, `boto3 run_instances: ${boto3.stderr}`).toMatch(/^i-[0-9a-f]+$/);
    launched.push(c);
    await eventually(`${c} boot-done marker`, async () => ((await consoleOf(c)).includes(`mallee: boot done ${c}`) ? true : undefined), 240_000);
    expect(await ncMetric('downloads')).toBe(4);
    expect(await ncMetric('hits')).toBeGreaterThanOrEqual(3);

    await aws(['ec2', 'terminate-instances', '--instance-ids', a, b, c]);
    await eventually('guests gone', async () => ((await libvirtDomains()).some((d) => [a, b, c].includes(d)) ? undefined : true), 180_000);
    launched.length = 0;
  }, 600_000);
});
