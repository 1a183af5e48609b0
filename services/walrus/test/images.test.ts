// Bundled images in Walrus: a bundle made the ec2-bundle-image way (@mallee/image, tested against
// euca2ools in packages/image) is stored by its owner, checked for the clc over the wire (CheckImage:
// access, ownership, signature, parts, cloud key) and served decrypted, byte-exact, to a cloud admin;
// tampered, foreign-signed or foreign-wrapped bundles are refused and nothing is cached for them.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleImage } from '@mallee/image';
import { WireClient, WireError, generateKey, walrus, writeKeyFile } from '@mallee/wire';
import { loadConfig } from '@mallee/config';
import { startDaemon, staticCredentials, walrusKeyFile } from '../src/index.js';
import { DecryptedImageCache } from '../src/images/decrypt.js';
import { ACCOUNTS, credentialTable, rawS3, tempDir, type TestWalrus } from './harness.js';

const run = promisify(execFile);
let w: TestWalrus;
let defaultWalrus: TestWalrus;
let keys: string;
let clc: WireClient;
const image = randomBytes(3 * 1024 * 1024 + 17);
const pem = (name: string) => readFileSync(join(keys, name), 'utf8');

async function keyPair(name: string): Promise<void> {
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(keys, `${name}-pk.pem`), '-out', join(keys, `${name}-cert.pem`), '-subj', `/CN=${name}`, '-days', '2']);
}

/** Temp dirs of this file, removed after it (the image cache and held-image dirs as well as the homes). */
const temps: string[] = [];
const ownTempDir = (prefix: string) => {
  const d = tempDir(prefix);
  temps.push(d);
  return d;
};

beforeAll(async () => {
  const home = ownTempDir('mallee-walrus-images-');
  keys = join(home, 'keys');
  mkdirSync(keys, { recursive: true });
  await Promise.all(['cloud', 'alice', 'bob', 'other-cloud'].map(keyPair));
  const started = await startImageWalrus(home);
  w = defaultWalrus = started.w;
  clc = started.clc;
});
afterAll(async () => {
  await w?.close();
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** A Walrus in `home` with the test cloud key, alice's and bob's certificates and an `images` bucket. */
async function startImageWalrus(home: string, extra: { imageCacheBytes?: number } = {}): Promise<{ w: TestWalrus; clc: WireClient }> {
  const linkKey = generateKey();
  writeKeyFile(walrusKeyFile(home), linkKey);
  const certs: Record<string, string> = { [ACCOUNTS.alice!.accountId]: 'alice', [ACCOUNTS.bob!.accountId]: 'bob' };
  const daemon = await startDaemon({
    home, port: 0, config: loadConfig({ env: {}, overrides: { LOG_LEVEL: 'silent' } }),
    credentials: staticCredentials(credentialTable),
    cloudKeyFile: join(keys, 'cloud-pk.pem'),
    certificates: async (accountId) => ({ certificates: certs[accountId] ? [{ certificateId: `cert-${certs[accountId]}`, userId: accountId, pem: pem(`${certs[accountId]}-cert.pem`) }] : [] }),
    ...extra,
  });
  const tw = { url: daemon.url, home, daemon, close: () => daemon.close() };
  expect((await rawS3(tw, { method: 'PUT', path: '/images' })).status).toBe(200);
  return { w: tw, clc: new WireClient({ url: daemon.url, from: walrus.CLC_SENDER, key: linkKey, path: walrus.WALRUS_WIRE_PATH }) };
}

/** Bundles `image` as `signer` for account `as`, uploads it under prefix/ as `as`; returns the manifest key. */
async function upload(prefix: string, opts: { as?: 'alice' | 'bob'; signer?: string; cloud?: string; tamperPart?: number; acl?: string; to?: TestWalrus; content?: Buffer } = {}): Promise<string> {
  const as = opts.as ?? 'alice';
  const signer = opts.signer ?? as;
  const w = opts.to ?? defaultWalrus;
  const src = join(w.home, `${prefix}.img`);
  writeFileSync(src, opts.content ?? image);
  const b = await bundleImage({
    image: src, destination: join(w.home, 'bundles', prefix), architecture: 'x86_64', accountId: ACCOUNTS[as]!.accountId, partSize: 1024 * 1024,
    userCertificate: pem(`${signer}-cert.pem`), userPrivateKey: pem(`${signer}-pk.pem`), cloudCertificate: pem(`${opts.cloud ?? 'cloud'}-cert.pem`),
  });
  const headers = opts.acl ? { 'x-amz-acl': opts.acl } : undefined;
  for (const [i, p] of b.partPaths.entries()) {
    const body = readFileSync(p);
    if (opts.tamperPart === i) body.fill(0, 0, 16);
    expect((await rawS3(w, { method: 'PUT', path: `/images/${prefix}/${basename(p)}`, body, account: as, ...(headers ? { headers } : {}) })).status).toBe(200);
  }
  expect((await rawS3(w, { method: 'PUT', path: `/images/${prefix}/${basename(b.manifestPath)}`, body: b.manifestXml, account: as, ...(headers ? { headers } : {}) })).status).toBe(200);
  return `${prefix}/${basename(b.manifestPath)}`;
}

const code = (body: string) => /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
const cached = () => readdirSync(join(w.home, 'walrus', 'images')).filter((f) => f.endsWith('.img'));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const check = (manifestKey: string, as: 'alice' | 'bob' | 'admin' = 'alice') => {
  const a = ACCOUNTS[as]!;
  return clc.call(walrus.CheckImage, { bucket: 'images', manifestKey, accountId: a.accountId, accountName: a.accountName, userId: a.accountId, isAdmin: a.isAdmin ?? false });
};
const faultOf = async (p: Promise<unknown>) => p.then(() => 'no error', (e: unknown) => (e instanceof WireError ? e.code : String(e)));

describe('GetDecryptedImage', () => {
  it('serves the decrypted image byte-exact to a cloud admin with its SHA-256, from cache the second time', async () => {
    const manifest = await upload('good');
    const first = await rawS3(w, { method: 'GET', path: `/images/${manifest}`, query: 'decrypted', account: 'admin' });
    expect(first.status).toBe(200);
    expect(first.raw.equals(image)).toBe(true);
    expect(first.headers['x-amz-meta-sha256']).toBe(sha256(image));
    const second = await rawS3(w, { method: 'GET', path: `/images/${manifest}`, query: 'decrypted', account: 'admin' });
    expect(second.raw.equals(image)).toBe(true);
    expect(cached()).toHaveLength(1);
  });

  it('refuses everyone but cloud admins, even the bundle owner', async () => {
    const r = await rawS3(w, { method: 'GET', path: '/images/good/good.img.manifest.xml', query: 'decrypted', account: 'alice' });
    expect([r.status, code(r.body)]).toEqual([403, 'AccessDenied']);
  });

  it('refuses a tampered part, a bundle wrapped for another cloud and a foreign-signed manifest, caching nothing', async () => {
    const before = cached().length;
    const tampered = await upload('tampered', { tamperPart: 1 });
    const t = await rawS3(w, { method: 'GET', path: `/images/${tampered}`, query: 'decrypted', account: 'admin' });
    expect([t.status, code(t.body)]).toEqual([400, 'InvalidManifest']);
    expect(t.body).toContain('part tampered.img.part.01 does not match its digest');
    const foreign = await upload('foreign-cloud', { cloud: 'other-cloud' });
    const f = await rawS3(w, { method: 'GET', path: `/images/${foreign}`, query: 'decrypted', account: 'admin' });
    expect([f.status, code(f.body)]).toEqual([400, 'InvalidManifest']);
    const forged = await upload('forged', { signer: 'bob' });
    const g = await rawS3(w, { method: 'GET', path: `/images/${forged}`, query: 'decrypted', account: 'admin' });
    expect([g.status, code(g.body)]).toEqual([400, 'InvalidManifest']);
    expect(g.body).toContain('signature does not verify');
    expect(cached()).toHaveLength(before);
    expect(readdirSync(join(w.home, 'walrus', 'images', 'tmp'))).toEqual([]);
    const missing = await rawS3(w, { method: 'GET', path: '/images/nowhere.manifest.xml', query: 'decrypted', account: 'admin' });
    expect([missing.status, code(missing.body)]).toEqual([404, 'NoSuchKey']);
  });
});

describe('CheckImage (the clc asks over the wire)', () => {
  it('describes a good bundle uploaded with euca-upload-bundle\'s aws-exec-read ACL: type, architecture, the decrypted image', async () => {
    const key = await upload('checked', { acl: 'aws-exec-read' });
    const r = await check(key);
    expect(r).toMatchObject({ imageType: 'machine', architecture: 'x86_64', imageName: 'checked.img', bytes: image.length, sha256: sha256(image), parts: 4, signedBy: 'cert-alice' });
    // aws-exec-read is private to other accounts.
    expect((await rawS3(w, { method: 'GET', path: `/images/${key}`, account: 'bob' })).status).toBe(403);
  });

  it('refuses what the account may not read, bundles of another account, bad signatures and missing manifests', async () => {
    const alices = await upload('alices');
    expect(await faultOf(check(alices, 'bob'))).toBe('AccessDenied');
    const bobs = await upload('bobs-in-alices-bucket', { as: 'alice', signer: 'bob' });
    expect(await faultOf(check(bobs))).toBe('InvalidManifest');
    expect(await faultOf(check('nowhere/x.manifest.xml'))).toBe('NoSuchKey');
    expect(await faultOf(clc.call(walrus.CheckImage, { bucket: 'nosuchbucket', manifestKey: 'x.manifest.xml', accountId: '1', accountName: 'a', userId: '1', isAdmin: false }))).toBe('NoSuchBucket');
    // The admin may read alice's manifest, but the bundle is still alice's, not the admin's to register.
    expect(await faultOf(check(alices, 'admin'))).toBe('ManifestNotOwned');
  });

  it('answers DescribeWalrus and flushes a cached image', async () => {
    const d = await clc.call(walrus.DescribeWalrus, {});
    expect(d.cloudKey).toBe(true);
    expect(d.cachedImages).toBeGreaterThan(0);
    const n = cached().length;
    await clc.call(walrus.FlushCachedImage, { bucket: 'images', manifestKey: 'good/good.img.manifest.xml' });
    expect(cached()).toHaveLength(n - 1);
  });
});

describe('the decrypted-image cache (walrus.storagemaxcachesizeinmb)', () => {
  const big = (seed: number) => Buffer.concat([Buffer.from([seed]), randomBytes(6 * 1024 * 1024)]);
  const images = { a: big(1), b: big(2), c: big(3) };
  let bw: TestWalrus;
  const get = async (name: keyof typeof images, query = 'decrypted') => rawS3(bw, { method: 'GET', path: `/images/${name}/${name}.img.manifest.xml`, query, account: 'admin' });
  const stat = async (name: string) => Number(new RegExp(`mallee_walrus_image_cache\\{stat="${name}"\\} (\\d+)`).exec((await rawS3(bw, { method: 'GET', path: '/_mallee/metrics', sign: false })).body)?.[1]);

  beforeAll(async () => {
    // Room for two of the three images.
    bw = (await startImageWalrus(ownTempDir('mallee-walrus-cache-'), { imageCacheBytes: 15 * 1024 * 1024 })).w;
    for (const [name, content] of Object.entries(images)) await upload(name, { to: bw, content });
  });
  afterAll(async () => {
    await bw?.close();
  });

  it('keeps at most the bound, evicting the least recently used image, and builds an evicted one again', async () => {
    expect((await get('a')).raw.equals(images.a)).toBe(true);
    expect((await get('b')).raw.equals(images.b)).toBe(true);
    expect((await get('a')).raw.equals(images.a)).toBe(true); // a is now the most recently used
    expect([await stat('builds'), await stat('hits'), await stat('entries')]).toEqual([2, 1, 2]);
    expect((await get('c')).raw.equals(images.c)).toBe(true); // b goes
    expect([await stat('entries'), await stat('evictions')]).toEqual([2, 1]);
    expect(await stat('bytes')).toBeLessThanOrEqual(15 * 1024 * 1024);
    expect((await get('b')).raw.equals(images.b)).toBe(true); // built again; a goes
    expect([await stat('builds'), await stat('evictions')]).toEqual([4, 2]);
  });

  it('never evicts an image while it is held (being served), and evicts it once released', async () => {
    // A second cache over the same bundles, driven directly: holding an image is deterministic here,
    // where a response nobody reads may still have been sent whole into socket buffers.
    const cache = new DecryptedImageCache({
      store: bw.daemon.store, dir: ownTempDir('mallee-walrus-held-'), cloudKey: () => pem('cloud-pk.pem'), verify: async () => 'test', maxBytes: () => 15 * 1024 * 1024,
    });
    const key = (n: string) => `${n}/${n}.img.manifest.xml`;
    const a = await cache.open('images', key('a')); // held, and the least recently used from here on
    await cache.get('images', key('b'));
    await cache.get('images', key('c')); // room for c: a is held, so b goes
    expect(cache.stats()).toMatchObject({ entries: 2, builds: 3, evictions: 1 });
    expect(readFileSync(a.path).equals(images.a)).toBe(true);
    a.release();
    await cache.get('images', key('b')); // now a goes
    expect(existsSync(a.path)).toBe(false);
    expect(cache.stats()).toMatchObject({ entries: 2, builds: 4, evictions: 2 });
  });
});

describe('pinned image URLs (image-sha256, what the clc recorded at registration)', () => {
  it('answer the registered image even after the bundle was replaced, and refuse a replaced bundle once that image is gone', async () => {
    const first = await upload('pinned');
    const registered = (await check(first)).sha256;
    const pinned = (name = first) => rawS3(w, { method: 'GET', path: `/images/${name}`, query: `decrypted=&image-sha256=${registered}`, account: 'admin' });
    expect((await pinned()).raw.equals(image)).toBe(true);
    // The owner uploads a different image under the same names.
    const other = Buffer.concat([image, Buffer.from('changed')]);
    await upload('pinned', { content: other });
    const again = await pinned();
    expect([again.status, again.headers['x-amz-meta-sha256']]).toEqual([200, registered]);
    expect(again.raw.equals(image)).toBe(true);
    // Unpinned, the bundle as it is now.
    expect((await rawS3(w, { method: 'GET', path: `/images/${first}`, query: 'decrypted', account: 'admin' })).raw.equals(other)).toBe(true);
    // Once the registered image is no longer cached, the replaced bundle cannot stand in for it.
    await clc.call(walrus.FlushCachedImage, { bucket: 'images', manifestKey: first });
    const refused = await pinned();
    expect([refused.status, code(refused.body)]).toEqual([412, 'PreconditionFailed']);
    expect(refused.body).toContain('changed since the image was registered');
    const bad = await rawS3(w, { method: 'GET', path: `/images/${first}`, query: 'decrypted=&image-sha256=xyz', account: 'admin' });
    expect([bad.status, code(bad.body)]).toEqual([400, 'InvalidArgument']);
  });
});
