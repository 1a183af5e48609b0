// Bundles made here and by euca2ools 3.4 are the same format: each side's bundle is read, verified and
// unbundled by the other; tampering with a part, the manifest or its signature is caught.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManifestError, bundleImage, parseManifest, unbundle, verifyManifestText, type BundleManifest } from '../src/index.js';

const run = promisify(execFile);
const euca = resolve(import.meta.dirname, '../../../../shared/tools/euca');
let dir: string;
const pem = (name: string) => readFileSync(join(dir, name), 'utf8');

async function keyPair(name: string): Promise<void> {
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `${name}-pk.pem`), '-out', join(dir, `${name}-cert.pem`), '-subj', `/CN=${name}`, '-days', '2']);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-image-'));
  await Promise.all([keyPair('cloud'), keyPair('user'), keyPair('other')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Unbundles into memory with the cloud key, reading parts from `from`. */
async function unbundleIn(manifest: BundleManifest, from: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => { chunks.push(c); cb(); } });
  const result = await unbundle({ manifest, privateKey: pem('cloud-pk.pem'), openPart: (p) => createReadStream(join(from, p.filename)), sink });
  const out = Buffer.concat(chunks);
  expect(result.bytes).toBe(out.length);
  return out;
}

const image = randomBytes(2 * 1024 * 1024 + 4321);

async function ourBundle(sub: string, opts: Partial<Parameters<typeof bundleImage>[0]> = {}) {
  const src = join(dir, `${sub}.img`);
  writeFileSync(src, image);
  return bundleImage({
    image: src, destination: join(dir, sub), architecture: 'x86_64', accountId: '123456789012', partSize: 1024 * 1024,
    userCertificate: pem('user-cert.pem'), userPrivateKey: pem('user-pk.pem'), cloudCertificate: pem('cloud-cert.pem'), ...opts,
  });
}

describe('mallee bundles', () => {
  it('round-trip: parts of partSize, a signed manifest naming type and kernel, the exact image back', async () => {
    const progress: number[] = [];
    const b = await ourBundle('ours', { kernelId: 'eki-0123abcd', ramdiskId: 'eri-89abcdef', onProgress: (done) => progress.push(done) });
    expect(b.partPaths.map((p) => p.slice(p.lastIndexOf('/') + 1))).toEqual(['ours.img.part.00', 'ours.img.part.01', 'ours.img.part.02']);
    expect(progress.at(-1)).toBe(image.length);
    const m = parseManifest(b.manifestXml);
    expect([m.imageType, m.architecture, m.kernelId, m.ramdiskId, m.accountId, m.imageSize]).toEqual(['machine', 'x86_64', 'eki-0123abcd', 'eri-89abcdef', '123456789012', image.length]);
    expect(verifyManifestText(m.signedText, m.signature, pem('user-cert.pem'))).toBe(true);
    expect(verifyManifestText(m.signedText, m.signature, pem('other-cert.pem'))).toBe(false);
    expect((await unbundleIn(m, join(dir, 'ours'))).equals(image)).toBe(true);
  });

  it('kernel bundles carry Eucalyptus\'s kernel_id=true mark and read back as kernels', async () => {
    const b = await ourBundle('kernel', { imageType: 'kernel' });
    expect(b.manifestXml).toContain('<kernel_id>true</kernel_id>');
    expect(parseManifest(b.manifestXml).imageType).toBe('kernel');
  });

  it('euca-unbundle (euca2ools 3.4) unbundles a mallee bundle with the user key', async () => {
    const b = await ourBundle('for-euca');
    const out = join(dir, 'euca-out');
    mkdirSync(out);
    await run(euca, ['euca-unbundle', '-m', b.manifestPath, '-s', join(dir, 'for-euca'), '-d', out, '-k', join(dir, 'user-pk.pem')], { env: { PATH: process.env.PATH!, HOME: dir } });
    expect(readFileSync(join(out, 'for-euca.img')).equals(image)).toBe(true);
  });

  it('a tampered part fails the unbundle; a changed manifest no longer verifies; text outside the signed elements changes nothing', async () => {
    const b = await ourBundle('tamper');
    const m = parseManifest(b.manifestXml);
    const part1 = b.partPaths[1]!;
    const bytes = readFileSync(part1);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(part1, bytes);
    await expect(unbundleIn(m, join(dir, 'tamper'))).rejects.toThrow(/part tamper\.img\.part\.01 does not match its digest/);

    const bigger = b.manifestXml.replace(/<size>\d+<\/size>/, '<size>1</size>');
    const changed = parseManifest(bigger);
    expect(verifyManifestText(changed.signedText, changed.signature, pem('user-cert.pem'))).toBe(false);

    // A decoy <image> in a comment before the real one: the first one is what is signed and what is read.
    const decoy = b.manifestXml.replace('<manifest>', `<manifest><!-- ${m.signedText.replace('x86_64', 'i386')} -->`);
    const d = parseManifest(decoy);
    expect(d.architecture).toBe('i386');
    expect(verifyManifestText(d.signedText, d.signature, pem('user-cert.pem'))).toBe(false);
    expect(() => parseManifest(b.manifestXml.replace(/<signature>[^<]*<\/signature>/, ''))).toThrow(ManifestError);
    expect(() => parseManifest('<!DOCTYPE x [<!ENTITY a "b">]><manifest/>')).toThrow(/DTD/);
  });
});

describe('euca2ools bundles', () => {
  it('euca-bundle-image output parses, verifies with the user certificate and unbundles with the cloud key', async () => {
    const src = join(dir, 'euca.img');
    writeFileSync(src, image);
    const out = join(dir, 'euca-bundle');
    await run(euca, ['euca-bundle-image', '-i', src, '-r', 'x86_64', '-d', out, '--cert', join(dir, 'user-cert.pem'), '--privatekey', join(dir, 'user-pk.pem'),
      '--ec2cert', join(dir, 'cloud-cert.pem'), '--user', '123456789012', '--part-size', '1048576'], { env: { PATH: process.env.PATH!, HOME: dir } });
    expect(readdirSync(out).sort()).toEqual(['euca.img.manifest.xml', 'euca.img.part.00', 'euca.img.part.01', 'euca.img.part.02']);
    const m = parseManifest(readFileSync(join(out, 'euca.img.manifest.xml'), 'utf8'));
    expect([m.imageType, m.architecture, m.accountId, m.imageSize]).toEqual(['machine', 'x86_64', '123456789012', image.length]);
    expect(verifyManifestText(m.signedText, m.signature, pem('user-cert.pem'))).toBe(true);
    expect((await unbundleIn(m, out)).equals(image)).toBe(true);
  });

  it('euca-bundle-image --kernel true makes a kernel manifest', async () => {
    const src = join(dir, 'vmlinuz-test');
    writeFileSync(src, randomBytes(4096));
    const out = join(dir, 'euca-kernel');
    await run(euca, ['euca-bundle-image', '-i', src, '-r', 'x86_64', '-d', out, '--kernel', 'true', '--cert', join(dir, 'user-cert.pem'), '--privatekey', join(dir, 'user-pk.pem'),
      '--ec2cert', join(dir, 'cloud-cert.pem'), '--user', '123456789012'], { env: { PATH: process.env.PATH!, HOME: dir } });
    expect(parseManifest(readFileSync(join(out, 'vmlinuz-test.manifest.xml'), 'utf8')).imageType).toBe('kernel');
  });
});
