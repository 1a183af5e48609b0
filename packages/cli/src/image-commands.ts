// The image commands of `mallee`: register-walrus (admin), and bundle-image, upload-bundle,
// bundle-and-upload (any user, euca2ools style: credentials from the sourced eucarc).
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { admin } from '@mallee/wire';
import { IMAGE_TYPES, type ImageType } from '@mallee/image';
import { adminLink, CliError } from './admin.js';
import { bundle, bundleAndUpload, registerHint, s3EndpointFromEnv, uploadBundle, type BundleFlags } from './bundles.js';
import { ec2Call } from './ec2.js';
import type { Home } from './home.js';
import { copyCloudKeyPair, componentHome, installKey } from './install-key.js';

type Say = (line: string) => void;

const sizeArg = (v: string) => {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(v.trim());
  if (!m) throw new Error(`not a size: ${v} (e.g. 10M)`);
  return Number(m[1]) * ({ '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2]!.toUpperCase()]!;
};

function bundleOptions(cmd: Command): Command {
  return cmd
    .requiredOption('-i, --image <file>', 'the image file to bundle')
    .option('-r, --arch <arch>', 'its architecture (i386 or x86_64)', 'x86_64')
    .option('-p, --prefix <name>', "the bundle's file-name prefix (default: the image's file name)")
    .option('--kernel <id>', 'the kernel (eki-…) this machine image boots, or "true" to bundle a kernel')
    .option('--ramdisk <id>', 'the ramdisk (eri-…) this machine image boots, or "true" to bundle a ramdisk')
    .addOption(new Option('--image-type <type>', 'machine, kernel or ramdisk').choices([...IMAGE_TYPES]))
    .option('-c, --cert <file>', 'your X.509 certificate (default $EC2_CERT)')
    .option('-k, --privatekey <file>', 'your private key, signs the manifest (default $EC2_PRIVATE_KEY)')
    .option('--ec2cert <file>', "the cloud's certificate (default $EUCALYPTUS_CERT)")
    .option('-u, --user <account-id>', 'your account id (default $EC2_USER_ID)')
    .option('--part-size <size>', 'part size (default 10M)', sizeArg);
}

interface BundleOpts { image: string; arch: string; prefix?: string; kernel?: string; ramdisk?: string; imageType?: ImageType; cert?: string; privatekey?: string; ec2cert?: string; user?: string; partSize?: number }
const flagsOf = (o: BundleOpts): BundleFlags => ({ ...o });

/** RegisterImage with the caller's own keys (EC2_URL / AWS_* from the eucarc). */
async function register(location: string, name: string, env: NodeJS.ProcessEnv): Promise<string> {
  const url = env.EC2_URL ?? env.AWS_ENDPOINT_URL_EC2;
  const accessKeyId = env.AWS_ACCESS_KEY_ID ?? env.EC2_ACCESS_KEY;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY ?? env.EC2_SECRET_KEY;
  if (!url || !accessKeyId || !secretAccessKey) throw new CliError('no EC2_URL or access keys to register with: source the eucarc written by `mallee credentials`');
  const r = await ec2Call({ url, region: env.AWS_DEFAULT_REGION ?? 'mallee', accessKeyId, secretAccessKey }, 'RegisterImage', { ImageLocation: location, Name: name });
  return String(r.imageId);
}

export function addImageCommands(program: Command, say: Say, homeOption: () => Option, homeOf: (o: { home: string }) => Home): void {
  program
    .command('register-walrus <url>')
    .description("register the cloud's Walrus (euca_conf --register-walrus); installs (--walrus-home) or prints the key that is Walrus's keys/walrus.key")
    .option('--walrus-home <dir>', "Walrus's home on this host (or mounted here): its keys/walrus.key is written, and the cloud's key pair copied, owned by the home's owner")
    .addOption(homeOption())
    .action(async (url: string, opts: { home: string; walrusHome?: string }) => {
      const home = homeOf(opts);
      const { key } = await adminLink(home).call(admin.RegisterWalrus, { url });
      say(`registered walrus at ${url}.`);
      if (opts.walrusHome) {
        const w = componentHome(opts.walrusHome);
        installKey(w, join(w.keysDir, 'walrus.key'), key);
        const copied = copyCloudKeyPair(home, w);
        say(`wrote ${[join(w.keysDir, 'walrus.key'), ...copied].join(', ')}`);
        return;
      }
      say('Install this key as <walrus home>/keys/walrus.key (mode 0600) on the Walrus host,');
      say("and copy the clc's keys/cloud-pk.pem and keys/cloud-cert.pem there too (Walrus decrypts image bundles with them):");
      say(key);
    });

  bundleOptions(program.command('bundle-image'))
    .description('bundle an image (tar, gzip, AES-128-CBC, 10 MiB parts, signed manifest) as euca-bundle-image does')
    .option('-d, --destination <dir>', 'where the bundle goes (default: a new directory under $TMPDIR)')
    .addHelpText('after', '\nExample:\n  source eucarc && mallee bundle-image -i disk.img -d bundle/ && mallee upload-bundle -b my-images -m bundle/disk.img.manifest.xml')
    .action(async (opts: BundleOpts & { destination?: string }) => {
      const b = await bundle({ ...flagsOf(opts), ...(opts.destination ? { destination: opts.destination } : {}) });
      say(`wrote ${b.partPaths.length} part(s) and ${b.manifestPath}`);
      say(`upload it with: mallee upload-bundle -b BUCKET -m ${b.manifestPath}`);
    });

  program
    .command('upload-bundle')
    .description('upload a bundle (parts, then manifest) to a Walrus bucket, creating the bucket when missing')
    .requiredOption('-b, --bucket <bucket[/prefix]>', 'bucket (and key prefix) to upload into')
    .requiredOption('-m, --manifest <file>', "the bundle's manifest (its parts are beside it)")
    .addOption(new Option('--acl <acl>', 'canned ACL of the uploaded files').choices(['aws-exec-read', 'public-read', 'ec2-bundle-read', 'private']).default('aws-exec-read'))
    .option('--url <url>', 'Walrus URL (default $S3_URL)')
    .action(async (opts: { bucket: string; manifest: string; acl: string; url?: string }) => {
      const up = await uploadBundle(s3EndpointFromEnv(process.env, opts.url), opts.manifest, opts.bucket, { acl: opts.acl });
      for (const l of registerHint(up.location, up.location.slice(up.location.lastIndexOf('/') + 1).replace(/\.manifest\.xml$/, ''))) say(l);
    });

  bundleOptions(program.command('bundle-and-upload'))
    .description('bundle an image and upload it to a Walrus bucket in one go (the local bundle is removed); --register also registers it')
    .requiredOption('-b, --bucket <bucket[/prefix]>', 'bucket (and key prefix) to upload into')
    .addOption(new Option('--acl <acl>', 'canned ACL of the uploaded files').choices(['aws-exec-read', 'public-read', 'ec2-bundle-read', 'private']).default('aws-exec-read'))
    .option('--url <url>', 'Walrus URL (default $S3_URL)')
    .option('--register <name>', 'register the uploaded bundle under this image name and print its id')
    .action(async (opts: BundleOpts & { bucket: string; acl: string; url?: string; register?: string }) => {
      const up = await bundleAndUpload(flagsOf(opts), opts.bucket, s3EndpointFromEnv(process.env, opts.url), { acl: opts.acl, env: process.env });
      if (opts.register) {
        const id = await register(up.location, opts.register, process.env);
        say(`IMAGE\t${id}\t${up.location}`);
      } else for (const l of registerHint(up.location, opts.prefix ?? up.location.slice(up.location.lastIndexOf('/') + 1).replace(/\.manifest\.xml$/, ''))) say(l);
    });
}
