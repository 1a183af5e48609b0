// RegisterImage reads the bundle: the clc asks the registered Walrus (in-process, real) to check the
// manifest (read access, ownership, the user's signature, parts, the cloud key) and takes the image's
// type from it; every refusal is InvalidManifest (AuthFailure for another account's bundle) and leaves
// no image behind. Launches carry presigned URLs of the decrypted images, which Walrus serves byte
// for byte with the SHA-256 the clc recorded, and refuses once expired or tampered with.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signV4, UNSIGNED_PAYLOAD } from '@mallee/aws-protocol';
import { admin, type InstanceSpec } from '@mallee/wire';
import { items, startFakeCloud, type Ec2, type TestCloud } from './harness.js';
import type { FakeCc } from './fake-cc.js';

let cloud: TestCloud & { cc: FakeCc };
let alice: { ec2: Ec2; accountId: string; accountName: string };
let bob: { ec2: Ec2; accountId: string; accountName: string };

beforeAll(async () => {
  cloud = await startFakeCloud({ clcOptions: { imageUrlTtl: 2 } });
  alice = await cloud.account('alice');
  bob = await cloud.account('bob');
}, 60_000);
afterAll(async () => {
  await cloud?.stop();
});

/** A signed S3 request to the cloud's Walrus as `who`. */
async function s3(who: { ec2: Ec2 }, method: string, path: string, body?: string, query = ''): Promise<{ status: number; text: string }> {
  const u = new URL(cloud.walrusUrl);
  const signed = signV4({ method, path, query, headers: { host: u.host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD }, accessKeyId: who.ec2.accessKeyId, secretAccessKey: who.ec2.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: UNSIGNED_PAYLOAD });
  const res = await fetch(new URL(path + (query ? `?${query}` : ''), cloud.walrusUrl), { method, headers: signed.headers, ...(body !== undefined ? { body } : {}) });
  return { status: res.status, text: await res.text() };
}

const imagesOf = async (who: { ec2: Ec2 }) => items((await who.ec2.ok('DescribeImages', { 'Owner.1': 'self' })).imagesSet);
const register = (who: { ec2: Ec2 }, location: string, name: string) => who.ec2.call('RegisterImage', { ImageLocation: location, Name: name });

describe('RegisterImage with bundles in Walrus', () => {
  it('takes the type from the manifest, whatever the names, and Walrus is ENABLED in DescribeServices', async () => {
    const eki = await cloud.registerImage('my-kernel', alice, { type: 'kernel' });
    const eri = await cloud.registerImage('my-ramdisk', alice, { type: 'ramdisk' });
    const emi = await cloud.registerImage('my-machine', alice, { kernelId: eki, ramdiskId: eri });
    expect([eki, eri, emi].map((id) => id.slice(0, 4))).toEqual(['eki-', 'eri-', 'emi-']);
    const byId = new Map((await imagesOf(alice)).map((i) => [i.imageId, i]));
    expect([byId.get(eki)!.imageType, byId.get(eri)!.imageType, byId.get(emi)!.imageType]).toEqual(['kernel', 'ramdisk', 'machine']);
    expect(byId.get(emi)).toMatchObject({ kernelId: eki, ramdiskId: eri, architecture: 'x86_64' });
    const walrus = (await cloud.admin(admin.DescribeServices, {})).services.find((s) => s.type === 'walrus');
    expect(walrus).toMatchObject({ state: 'ENABLED', url: cloud.walrusUrl });
  });

  it('refuses a missing manifest, one the caller may not read, a tampered manifest or part, a foreign signature and another account\'s bundle — recording nothing', async () => {
    const before = (await imagesOf(alice)).length;
    expect((await register(alice, 'nowhere/x.manifest.xml', 'bad-1')).code).toBe('InvalidManifest');
    const bobs = await cloud.bundler.upload(bob, 'bobs-private');
    expect((await register(alice, bobs, 'bad-2')).code).toBe('InvalidManifest');

    const loc = await cloud.bundler.upload(alice, 'to-tamper');
    const [bucket, key] = [loc.slice(0, loc.indexOf('/')), loc.slice(loc.indexOf('/') + 1)];
    const manifest = (await s3(alice, 'GET', `/${bucket}/${key}`)).text;
    expect((await s3(alice, 'PUT', `/${bucket}/${key}`, manifest.replace(/<size>\d+<\/size>/, '<size>1</size>'))).status).toBe(200);
    const tampered = await register(alice, loc, 'bad-3');
    expect([tampered.code, tampered.body]).toEqual(['InvalidManifest', expect.stringContaining('signature does not verify')]);

    const partLoc = await cloud.bundler.upload(alice, 'part-tamper');
    const partKey = partLoc.replace(/\.manifest\.xml$/, '.part.00').slice(partLoc.indexOf('/') + 1);
    expect((await s3(alice, 'PUT', `/${bucket}/${partKey}`, 'not the part'))).toMatchObject({ status: 200 });
    const badPart = await register(alice, partLoc, 'bad-4');
    expect([badPart.code, badPart.body]).toEqual(['InvalidManifest', expect.stringContaining('does not match its digest')]);

    // Bob's bundle (his account, his signature) copied into alice's bucket is still not alice's to register.
    const bobsBundle = await cloud.bundler.upload(bob, 'bobs-shared', { bucket: `images-${bob.accountId}` });
    const copied = (await s3(bob, 'GET', `/${bobsBundle}`)).text;
    expect((await s3(alice, 'PUT', `/${bucket}/bobs-copy.manifest.xml`, copied)).status).toBe(200);
    expect((await register(alice, `${bucket}/bobs-copy.manifest.xml`, 'bad-5')).code).toBe('AuthFailure');
    expect(await imagesOf(alice)).toHaveLength(before);
  });

  it('a launch carries presigned URLs of the decrypted images; Walrus serves them with their SHA-256 and refuses them expired or tampered', async () => {
    const emi = await cloud.registerImage('launchable', alice);
    await alice.ec2.ok('RunInstances', { ImageId: emi, MinCount: 1, MaxCount: 1 });
    const spec = [...cloud.cc.instances.values()].map((i) => i.spec as InstanceSpec).find((s) => s.imageId === emi)!;
    const source = spec.imageSources!.machine!;
    const res = await fetch(source.url);
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.length).toBe(source.bytes);
    expect(createHash('sha256').update(body).digest('hex')).toBe(source.sha256);
    expect(res.headers.get('x-amz-meta-sha256')).toBe(source.sha256);

    // Pinned to the registered image; the pin is signed like the rest of the URL.
    expect(new URL(source.url).searchParams.get('image-sha256')).toBe(source.sha256);
    const repinned = new URL(source.url);
    repinned.searchParams.set('image-sha256', '0'.repeat(64));
    expect((await fetch(repinned)).status).toBe(403);
    const tampered = new URL(source.url);
    tampered.searchParams.set('X-Amz-Expires', '3600');
    const t = await fetch(tampered);
    expect([t.status, /<Code>(\w+)/.exec(await t.text())?.[1]]).toEqual([403, 'SignatureDoesNotMatch']);
    await new Promise((r) => setTimeout(r, 2500));
    const late = await fetch(source.url);
    expect([late.status, /<Code>(\w+)/.exec(await late.text())?.[1]]).toEqual([403, 'AccessDenied']);
    // A user's own keys cannot fetch the decrypted image either.
    expect((await s3(alice, 'GET', new URL(source.url).pathname, undefined, 'decrypted=')).status).toBe(403);
  });
});
