// GetDecryptedImage: a bundle made the way ec2-bundle-image / euca-bundle-image make one (tar → gzip
// → AES-128-CBC → parts, key and IV RSA-wrapped for the cloud) is stored by its owner and served
// decrypted, byte-exact, to a cloud admin; tampered or foreign bundles are refused.
import { constants, createCipheriv, createHash, generateKeyPairSync, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { rawS3, startWalrus, type TestWalrus } from './harness.js';

let w: TestWalrus;
const cloud = generateKeyPairSync('rsa', { modulusLength: 2048 });
const image = randomBytes(3 * 1024 * 1024 + 17);

beforeAll(async () => {
  w = await startWalrus();
  mkdirSync(join(w.home, 'keys'), { recursive: true });
  writeFileSync(join(w.home, 'keys', 'cloud-pk.pem'), cloud.privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
  expect((await rawS3(w, { method: 'PUT', path: '/images' })).status).toBe(200);
});
afterAll(async () => {
  await w?.close();
});

async function tarOf(name: string, data: Buffer): Promise<Buffer> {
  const p = pack();
  p.entry({ name, size: data.length }, data);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
const wrap = (key: KeyObject, secret: Buffer) => publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(secret.toString('hex'))).toString('hex');

/** Uploads a bundle of `data` under prefix/ as alice; returns the manifest key. */
async function uploadBundle(prefix: string, data: Buffer, opts: { cloudKey?: KeyObject; tamperPart?: number } = {}): Promise<string> {
  const tar = await tarOf('image.img', data);
  const key = randomBytes(16);
  const iv = randomBytes(16);
  const c = createCipheriv('aes-128-cbc', key, iv);
  const encrypted = Buffer.concat([c.update(gzipSync(tar)), c.final()]);
  const parts: { name: string; data: Buffer }[] = [];
  for (let i = 0, n = 0; i < encrypted.length; i += 1024 * 1024, n++) parts.push({ name: `image.img.part.${n}`, data: encrypted.subarray(i, i + 1024 * 1024) });
  const manifest = `<?xml version="1.0" ?><manifest><version>2007-10-10</version><bundler><name>test</name><version>1</version><release>1</release></bundler>
<machine_configuration><architecture>x86_64</architecture></machine_configuration>
<image><name>image.img</name><user>100000000001</user><type>machine</type><digest algorithm="SHA1">${sha1(tar)}</digest><size>${data.length}</size><bundled_size>${encrypted.length}</bundled_size>
<ec2_encrypted_key algorithm="AES-128-CBC">${wrap(opts.cloudKey ?? cloud.publicKey, key)}</ec2_encrypted_key><user_encrypted_key algorithm="AES-128-CBC">00</user_encrypted_key>
<ec2_encrypted_iv>${wrap(opts.cloudKey ?? cloud.publicKey, iv)}</ec2_encrypted_iv><user_encrypted_iv>00</user_encrypted_iv>
<parts count="${parts.length}">${parts.map((p, i) => `<part index="${i}"><filename>${p.name}</filename><digest algorithm="SHA1">${sha1(p.data)}</digest></part>`).join('')}</parts></image>
<signature>00</signature></manifest>`;
  for (const [i, p] of parts.entries()) {
    const body = opts.tamperPart === i ? Buffer.from(p.data).fill(0, 0, 16) : p.data;
    expect((await rawS3(w, { method: 'PUT', path: `/images/${prefix}/${p.name}`, body })).status).toBe(200);
  }
  expect((await rawS3(w, { method: 'PUT', path: `/images/${prefix}/image.img.manifest.xml`, body: manifest })).status).toBe(200);
  return `${prefix}/image.img.manifest.xml`;
}

const code = (body: string) => /<Code>([^<]*)<\/Code>/.exec(body)?.[1];

it('serves the decrypted image byte-exact to a cloud admin, from cache the second time', async () => {
  const manifest = await uploadBundle('good', image);
  const first = await rawS3(w, { method: 'GET', path: `/images/${manifest}`, query: 'decrypted', account: 'admin' });
  expect(first.status).toBe(200);
  expect(first.raw.equals(image)).toBe(true);
  const second = await rawS3(w, { method: 'GET', path: `/images/${manifest}`, query: 'decrypted', account: 'admin' });
  expect(second.raw.equals(image)).toBe(true);
  expect(readdirSync(join(w.home, 'walrus', 'images')).filter((f) => f.endsWith('.img'))).toHaveLength(1);
});

it('refuses everyone but cloud admins, even the bundle owner', async () => {
  const r = await rawS3(w, { method: 'GET', path: '/images/good/image.img.manifest.xml', query: 'decrypted', account: 'alice' });
  expect([r.status, code(r.body)]).toEqual([403, 'AccessDenied']);
});

it('refuses a bundle with a tampered part and one wrapped for another cloud, caching nothing', async () => {
  const tampered = await uploadBundle('tampered', image, { tamperPart: 1 });
  const t = await rawS3(w, { method: 'GET', path: `/images/${tampered}`, query: 'decrypted', account: 'admin' });
  expect([t.status, code(t.body)]).toEqual([400, 'InvalidManifest']);
  expect(t.body).toContain('part image.img.part.1 does not match its digest');
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const foreign = await uploadBundle('foreign', image, { cloudKey: other.publicKey });
  const f = await rawS3(w, { method: 'GET', path: `/images/${foreign}`, query: 'decrypted', account: 'admin' });
  expect([f.status, code(f.body)]).toEqual([400, 'InvalidManifest']);
  expect(readdirSync(join(w.home, 'walrus', 'images')).filter((x) => x.endsWith('.img'))).toHaveLength(1);
  expect(readdirSync(join(w.home, 'walrus', 'images', 'tmp'))).toEqual([]);
  const missing = await rawS3(w, { method: 'GET', path: '/images/nowhere.manifest.xml', query: 'decrypted', account: 'admin' });
  expect([missing.status, code(missing.body)]).toEqual([404, 'NoSuchKey']);
});
