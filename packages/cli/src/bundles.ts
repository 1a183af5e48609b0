// `mallee bundle-image`, `upload-bundle` and `bundle-and-upload`: the EC2/Eucalyptus AMI bundle
// (tar → gzip → AES-128-CBC → 10 MiB parts, manifest signed by the user, key wrapped for the cloud)
// made by @mallee/image and uploaded to Walrus, with progress bars on stderr. Credentials and
// endpoints come from the environment as euca2ools reads them (source the eucarc of `mallee credentials`).
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { bundleImage, parseManifest, ManifestError, type BundleResult, type ImageType } from '@mallee/image';
import { CliError } from './admin.js';
import { progress } from './progress.js';
import { ensureBucket, s3Failure, s3Request, type S3Endpoint } from './s3.js';

export interface BundleFlags {
  image: string;
  arch: string;
  destination?: string;
  prefix?: string;
  kernel?: string;
  ramdisk?: string;
  imageType?: ImageType;
  cert?: string;
  privatekey?: string;
  ec2cert?: string;
  user?: string;
  partSize?: number;
}

function readPem(file: string | undefined, what: string, fix: string): string {
  if (!file) throw new CliError(`no ${what}: ${fix}`);
  if (!existsSync(file)) throw new CliError(`${what} ${file} does not exist: ${fix}`);
  return readFileSync(file, 'utf8');
}

/** Bundles an image with the user's certificate and key (flags, else EC2_CERT / EC2_PRIVATE_KEY / EUCALYPTUS_CERT / EC2_USER_ID). */
export async function bundle(flags: BundleFlags, env: NodeJS.ProcessEnv = process.env, quiet = false): Promise<BundleResult> {
  const credsHint = 'source the eucarc written by `mallee credentials` (it sets EC2_CERT, EC2_PRIVATE_KEY, EUCALYPTUS_CERT and EC2_USER_ID), or pass --cert/--privatekey/--ec2cert/--user';
  const userCertificate = readPem(flags.cert ?? env.EC2_CERT, 'user certificate', credsHint);
  const userPrivateKey = readPem(flags.privatekey ?? env.EC2_PRIVATE_KEY, 'user private key', credsHint);
  const cloudCertificate = readPem(flags.ec2cert ?? env.EUCALYPTUS_CERT, 'cloud certificate', credsHint);
  const accountId = (flags.user ?? env.EC2_USER_ID ?? '').replace(/-/g, '');
  if (!/^\d{12}$/.test(accountId)) throw new CliError(`no account id (12 digits): ${credsHint}`);
  if (!existsSync(flags.image)) throw new CliError(`image file ${flags.image} does not exist`);
  let imageType = flags.imageType ?? 'machine';
  if (flags.kernel === 'true') imageType = 'kernel';
  if (flags.ramdisk === 'true') imageType = 'ramdisk';
  const kernelId = flags.kernel && flags.kernel !== 'true' ? flags.kernel : undefined;
  const ramdiskId = flags.ramdisk && flags.ramdisk !== 'true' ? flags.ramdisk : undefined;
  const size = (await stat(flags.image)).size;
  const destination = flags.destination ?? (await mkdtemp(join(env.TMPDIR ?? tmpdir(), 'bundle-')));
  const bar = progress({ label: `bundling ${basename(flags.image)}`, total: size, unit: 'bytes', quiet });
  try {
    const result = await bundleImage({
      image: flags.image, destination, architecture: flags.arch, imageType, accountId, userCertificate, userPrivateKey, cloudCertificate,
      ...(flags.prefix ? { prefix: flags.prefix } : {}), ...(kernelId ? { kernelId } : {}), ...(ramdiskId ? { ramdiskId } : {}),
      ...(flags.partSize ? { partSize: flags.partSize } : {}),
      onProgress: (done) => bar.update(done),
    });
    bar.done(`${result.partPaths.length} part(s)`);
    return result;
  } catch (err) {
    bar.fail((err as Error).message);
    if (err instanceof CliError) throw err;
    throw new CliError(`bundling ${flags.image} failed: ${(err as Error).message}`);
  }
}

/** S3 endpoint and keys from the environment (S3_URL, AWS_ACCESS_KEY_ID or EC2_ACCESS_KEY, …) unless given. */
export function s3EndpointFromEnv(env: NodeJS.ProcessEnv = process.env, url?: string): S3Endpoint {
  const hint = 'source the eucarc written by `mallee credentials`';
  const s3Url = url ?? env.S3_URL ?? env.AWS_ENDPOINT_URL_S3;
  const accessKeyId = env.AWS_ACCESS_KEY_ID ?? env.EC2_ACCESS_KEY;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY ?? env.EC2_SECRET_KEY;
  if (!s3Url) throw new CliError(`no Walrus URL (S3_URL): ${hint}, or pass --url`);
  if (!accessKeyId || !secretAccessKey) throw new CliError(`no access key (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): ${hint}`);
  return { url: s3Url, region: env.AWS_DEFAULT_REGION ?? env.AWS_AUTH_REGION ?? 'mallee', accessKeyId, secretAccessKey };
}

export interface Uploaded {
  /** bucket/prefix/name.manifest.xml, what RegisterImage takes. */
  location: string;
  bytes: number;
}

/** Uploads a bundle (its parts, then its manifest) to bucket[/prefix]; creates the bucket when missing. */
export async function uploadBundle(ep: S3Endpoint, manifestPath: string, bucketAndPrefix: string, opts: { acl?: string; location?: string; quiet?: boolean } = {}): Promise<Uploaded> {
  const slash = bucketAndPrefix.indexOf('/');
  const bucket = slash < 0 ? bucketAndPrefix : bucketAndPrefix.slice(0, slash);
  let prefix = slash < 0 ? '' : bucketAndPrefix.slice(slash + 1);
  if (prefix && !prefix.endsWith('/')) prefix += '/';
  if (!existsSync(manifestPath)) throw new CliError(`manifest ${manifestPath} does not exist: make one with \`mallee bundle-image\``);
  let manifest;
  try {
    manifest = parseManifest(readFileSync(manifestPath, 'utf8'), { fileName: basename(manifestPath) });
  } catch (e) {
    if (e instanceof ManifestError) throw new CliError(`${manifestPath} is not a bundle manifest: ${e.message}`);
    throw e;
  }
  const dir = dirname(manifestPath);
  const files = manifest.parts.map((p) => join(dir, p.filename));
  for (const f of files) if (!existsSync(f)) throw new CliError(`part ${f} of the bundle is missing: bundle the image again`);
  const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  await ensureBucket(ep, bucket, opts.location);
  const headers = { 'x-amz-acl': opts.acl ?? 'aws-exec-read' };
  const bar = progress({ label: `uploading ${basename(manifestPath).replace(/\.manifest\.xml$/, '')}`, total, unit: 'bytes', ...(opts.quiet ? { quiet: true } : {}) });
  let done = 0;
  try {
    for (const f of files) {
      const r = await s3Request(ep, 'PUT', bucket, prefix + basename(f), { file: f, headers, onBytes: (n) => bar.update((done += n)) });
      if (r.status !== 200) throw s3Failure(`uploading ${basename(f)} to ${bucket}/${prefix}`, r);
    }
    // The manifest last: once it is there, the bundle is complete.
    const r = await s3Request(ep, 'PUT', bucket, prefix + basename(manifestPath), { file: manifestPath, headers });
    if (r.status !== 200) throw s3Failure(`uploading ${basename(manifestPath)} to ${bucket}/${prefix}`, r);
    bar.done(`${bucket}/${prefix}${basename(manifestPath)}`);
  } catch (err) {
    bar.fail((err as Error).message);
    throw err;
  }
  return { location: `${bucket}/${prefix}${basename(manifestPath)}`, bytes: total };
}

/** Bundles into a temporary directory, uploads, and removes the local bundle. */
export async function bundleAndUpload(flags: BundleFlags, bucketAndPrefix: string, ep: S3Endpoint, opts: { acl?: string; quiet?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Uploaded> {
  const tmp = await mkdtemp(join(opts.env?.TMPDIR ?? tmpdir(), 'bundle-'));
  try {
    const b = await bundle({ ...flags, destination: tmp }, opts.env, opts.quiet);
    return await uploadBundle(ep, b.manifestPath, bucketAndPrefix, opts);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** What to tell the user once a bundle is in Walrus. */
export function registerHint(location: string, name: string): string[] {
  return [
    `uploaded ${location}; register it with one of:`,
    `  aws ec2 register-image --image-location ${location} --name ${name}`,
    `  euca-register -n ${name} ${location}`,
  ];
}
