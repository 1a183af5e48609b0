import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findLaunchableImage, findLaunchableKernelOrRamdisk } from '../../src/resources/index.js';
import { ACCOUNT_A, ACCOUNT_B, ADMIN_ACCOUNT, errorCode, openCloud, principalOf, type Cloud } from './harness.js';

let cloud: Cloud;
beforeEach(() => { cloud = openCloud(); });
afterEach(() => cloud.close());

const A = principalOf(ACCOUNT_A);
const B = principalOf(ACCOUNT_B);

interface ImageItem { imageId: string; imageType: string; imageOwnerId: string; name: string; isPublic: boolean; architecture: string; kernelId?: string; ramdiskId?: string; imageLocation: string; imageState: string; tagSet: unknown[] }
async function images(params: Record<string, unknown> = {}, principal = A): Promise<ImageItem[]> {
  return (await cloud.call('DescribeImages', params, principal)).imagesSet as ImageItem[];
}
async function register(location: string, extra: Record<string, unknown> = {}, principal = A): Promise<string> {
  return (await cloud.call('RegisterImage', { ImageLocation: location, ...extra }, principal)).imageId as string;
}

describe('RegisterImage', () => {
  it('gives emi/eki/eri ids by the type inferred from the manifest name, and records what was registered', async () => {
    const eki = await register('kernels/vmlinuz-2.6.28.manifest.xml');
    const eri = await register('kernels/initrd-2.6.28.manifest.xml');
    const emi = await register('images/ubuntu.img.manifest.xml', { Name: 'ubuntu-9.04', Description: 'Jaunty', Architecture: 'i386', KernelId: eki, RamdiskId: eri });
    expect([eki, eri, emi].map((id) => id.slice(0, 4))).toEqual(['eki-', 'eri-', 'emi-']);
    expect(emi).toMatch(/^emi-[0-9a-f]{8}$/);
    const [img] = await images({ ImageId: [emi] });
    expect(img).toMatchObject({
      imageId: emi, imageType: 'machine', imageOwnerId: ACCOUNT_A, name: 'ubuntu-9.04', architecture: 'i386', kernelId: eki, ramdiskId: eri,
      imageLocation: 'images/ubuntu.img.manifest.xml', imageState: 'available', isPublic: false,
    });
    expect((await images({ Filter: [{ Name: 'image-type', Value: ['kernel', 'ramdisk'] }] })).map((i) => i.imageId).sort()).toEqual([eki, eri].sort());
    expect((await images({ ImageId: [eki] }))[0]!.name).toBe('vmlinuz-2.6.28');
  });

  it('refuses a duplicate name per owner, bad locations, architectures and kernels', async () => {
    const eki = await register('k/vmlinuz.manifest.xml');
    await register('b/one.manifest.xml', { Name: 'same' });
    expect(await errorCode(register('b/two.manifest.xml', { Name: 'same' }))).toBe('InvalidAMIName.Duplicate');
    expect(await errorCode(register('b/two.manifest.xml', { Name: 'same' }, B))).toBe('no error');
    expect(await errorCode(register('b/x.manifest.xml', { Name: 'no' }))).toBe('InvalidAMIName.Malformed');
    expect(await errorCode(register('not-a-manifest'))).toBe('InvalidParameterValue');
    expect(await errorCode(cloud.call('RegisterImage', { Name: 'x' }))).toBe('MissingParameter');
    expect(await errorCode(register('b/arm.manifest.xml', { Architecture: 'sparc' }))).toBe('InvalidParameterValue');
    expect(await errorCode(register('b/k1.manifest.xml', { KernelId: 'eki-zz' }))).toBe('InvalidAMIID.Malformed');
    expect(await errorCode(register('b/k2.manifest.xml', { KernelId: 'eki-00000000' }))).toBe('InvalidAMIID.NotFound');
    expect(await errorCode(register('b/k3.manifest.xml', { RamdiskId: eki }))).toBe('InvalidParameterValue');
    // B cannot use A's private kernel.
    expect(await errorCode(register('b/k4.manifest.xml', { KernelId: eki }, B))).toBe('InvalidAMIID.NotFound');
  });
});

describe('visibility and launch permissions', () => {
  it('keeps private images private: B cannot see, launch, deregister or tag A\'s image', async () => {
    const emi = await register('a/private.manifest.xml');
    expect(await images({}, B)).toEqual([]);
    expect(await errorCode(images({ ImageId: [emi] }, B))).toBe('InvalidAMIID.NotFound');
    expect(() => findLaunchableImage(cloud.db, B, emi)).toThrow(/does not exist/);
    expect(await errorCode(cloud.call('DeregisterImage', { ImageId: emi }, B))).toBe('InvalidAMIID.NotFound');
    expect(await errorCode(cloud.call('CreateTags', { ResourceId: [emi], Tag: [{ Key: 'k', Value: 'v' }] }, B))).toBe('InvalidAMIID.NotFound');
    expect(await errorCode(cloud.call('ModifyImageAttribute', { ImageId: emi, LaunchPermission: { Add: [{ Group: 'all' }] } }, B))).toBe('InvalidAMIID.NotFound');
    expect(findLaunchableImage(cloud.db, A, emi).imageId).toBe(emi);
  });

  it('lets B launch A\'s image once A grants B a launch permission, and not after A removes it', async () => {
    const emi = await register('a/shared.manifest.xml');
    await cloud.call('ModifyImageAttribute', { ImageId: emi, Attribute: 'launchPermission', OperationType: 'add', UserId: [ACCOUNT_B] });
    expect(findLaunchableImage(cloud.db, B, emi).ownerId).toBe(ACCOUNT_A);
    expect((await images({}, B)).map((i) => i.imageId)).toEqual([emi]);
    expect((await images({ ExecutableBy: ['self'] }, B)).map((i) => i.imageId)).toEqual([emi]);
    expect(await images({ ExecutableBy: ['all'] }, B)).toEqual([]);
    const attr = await cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'launchPermission' });
    expect(attr.launchPermission).toEqual([{ userId: ACCOUNT_B }]);
    // B may launch but not administer it.
    expect(await errorCode(cloud.call('DeregisterImage', { ImageId: emi }, B))).toBe('AuthFailure');
    expect(await errorCode(cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'launchPermission' }, B))).toBe('AuthFailure');
    await cloud.call('ModifyImageAttribute', { ImageId: emi, LaunchPermission: { Remove: [{ UserId: ACCOUNT_B }] } });
    expect(() => findLaunchableImage(cloud.db, B, emi)).toThrow(/does not exist/);
  });

  it('makes an image public with group all, and private again with ResetImageAttribute', async () => {
    const emi = await register('a/public.manifest.xml');
    await cloud.call('ModifyImageAttribute', { ImageId: emi, LaunchPermission: { Add: [{ Group: 'all' }] } });
    expect((await images({ ExecutableBy: ['all'] }, B)).map((i) => [i.imageId, i.isPublic])).toEqual([[emi, true]]);
    expect((await images({ Filter: [{ Name: 'is-public', Value: ['true'] }] }, B)).length).toBe(1);
    expect(findLaunchableImage(cloud.db, B, emi).isPublic).toBe(true);
    expect((await cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'launchPermission' })).launchPermission).toEqual([{ group: 'all' }]);
    expect(await errorCode(cloud.call('ModifyImageAttribute', { ImageId: emi, LaunchPermission: { Add: [{ Group: 'friends' }] } })))
      .toBe('InvalidAMIAttributeItemValue');
    await cloud.call('ResetImageAttribute', { ImageId: emi, Attribute: 'launchPermission' });
    expect(await images({}, B)).toEqual([]);
  });

  it('selects by Owner (self, account ids) and ExecutableBy', async () => {
    const mine = await register('a/mine.manifest.xml');
    const theirs = await register('b/theirs.manifest.xml', {}, B);
    await cloud.call('ModifyImageAttribute', { ImageId: theirs, UserGroup: ['all'], OperationType: 'add' }, B);
    expect((await images()).map((i) => i.imageId).sort()).toEqual([mine, theirs].sort());
    expect((await images({ Owner: ['self'] })).map((i) => i.imageId)).toEqual([mine]);
    expect((await images({ Owner: [ACCOUNT_B] })).map((i) => i.imageId)).toEqual([theirs]);
    expect((await images({ Owner: ['amazon'] }))).toEqual([]);
    expect((await images({ ExecutableBy: ['all'] })).map((i) => i.imageId)).toEqual([theirs]);
    expect((await images({ Filter: [{ Name: 'owner-id', Value: [ACCOUNT_A] }] })).map((i) => i.imageId)).toEqual([mine]);
    // "amazon" names the cloud administrators' images.
    const admin = principalOf(ADMIN_ACCOUNT, true);
    const theCloud = await register('admin/kernel-vmlinuz.manifest.xml', {}, admin);
    await cloud.call('ModifyImageAttribute', { ImageId: theCloud, LaunchPermission: { Add: [{ Group: 'all' }] } }, admin);
    expect((await images({ Owner: ['amazon'] })).map((i) => i.imageId)).toEqual([theCloud]);
  });

  it('distinguishes malformed from unknown image ids', async () => {
    expect(await errorCode(images({ ImageId: ['ami-xyz'] }))).toBe('InvalidAMIID.Malformed');
    expect(await errorCode(images({ ImageId: ['emi-12345678'] }))).toBe('InvalidAMIID.NotFound');
    expect(await errorCode(images({ ImageId: ['ami-0123456789abcdef0'] }))).toBe('InvalidAMIID.NotFound');
    expect(() => findLaunchableImage(cloud.db, A, 'bogus')).toThrow(/Invalid id/);
  });
});

describe('kernels and ramdisks for RunInstances', () => {
  it('finds a visible kernel or ramdisk of the requested type only', async () => {
    const eki = await register('k/vmlinuz.manifest.xml');
    const eri = await register('k/initrd.manifest.xml');
    expect(findLaunchableKernelOrRamdisk(cloud.db, A, eki, 'kernel').type).toBe('kernel');
    expect(findLaunchableKernelOrRamdisk(cloud.db, A, eri, 'ramdisk').type).toBe('ramdisk');
    expect(() => findLaunchableKernelOrRamdisk(cloud.db, A, eri, 'kernel')).toThrow(/not a kernel/);
    expect(() => findLaunchableKernelOrRamdisk(cloud.db, B, eki, 'kernel')).toThrow(/does not exist/);
    expect(() => findLaunchableImage(cloud.db, A, eki)).toThrow(/cannot be run/);
  });

  it('lets an account granted a machine image use that image\'s private kernel and ramdisk, and no others', async () => {
    const eki = await register('k/vmlinuz.manifest.xml');
    const eri = await register('k/initrd.manifest.xml');
    const other = await register('k/vmlinuz-other.manifest.xml');
    const emi = await register('a/shared-machine.manifest.xml', { KernelId: eki, RamdiskId: eri });
    expect(() => findLaunchableKernelOrRamdisk(cloud.db, B, eki, 'kernel')).toThrow(/does not exist/);
    await cloud.call('ModifyImageAttribute', { ImageId: emi, LaunchPermission: { Add: [{ UserId: ACCOUNT_B }] } });
    expect(findLaunchableKernelOrRamdisk(cloud.db, B, eki, 'kernel').imageId).toBe(eki);
    expect(findLaunchableKernelOrRamdisk(cloud.db, B, eri, 'ramdisk').imageId).toBe(eri);
    expect(() => findLaunchableKernelOrRamdisk(cloud.db, B, other, 'kernel')).toThrow(/does not exist/);
    // Still invisible in listings.
    expect((await images({}, B)).map((i) => i.imageId)).toEqual([emi]);
  });
});

describe('attributes and deregistration', () => {
  it('reads and changes the description; kernel and ramdisk are read-only', async () => {
    const eki = await register('k/vmlinuz.manifest.xml');
    const emi = await register('a/desc.manifest.xml', { Description: 'first', KernelId: eki });
    expect((await cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'description' })).description).toEqual({ value: 'first' });
    await cloud.call('ModifyImageAttribute', { ImageId: emi, Description: { Value: 'second' } });
    await cloud.call('ModifyImageAttribute', { ImageId: emi, Attribute: 'description', Value: 'third' });
    expect((await cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'description' })).description).toEqual({ value: 'third' });
    expect((await cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'kernel' })).kernel).toEqual({ value: eki });
    expect((await cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'ramdisk' })).ramdisk).toEqual({});
    expect(await errorCode(cloud.call('ModifyImageAttribute', { ImageId: emi, Attribute: 'kernel', Value: eki }))).toBe('InvalidParameterValue');
    expect(await errorCode(cloud.call('DescribeImageAttribute', { ImageId: emi, Attribute: 'colour' }))).toBe('InvalidParameterValue');
    expect(await errorCode(cloud.call('ModifyImageAttribute', { ImageId: emi, UserId: [ACCOUNT_B] }))).toBe('MissingParameter');
  });

  it('deregisters an image with its tags, freeing its name', async () => {
    const emi = await register('a/old.manifest.xml', { Name: 'reused' });
    await cloud.call('CreateTags', { ResourceId: [emi], Tag: [{ Key: 'k', Value: 'v' }] });
    await cloud.call('DeregisterImage', { ImageId: emi });
    expect(await errorCode(images({ ImageId: [emi] }))).toBe('InvalidAMIID.NotFound');
    expect(cloud.db.prepare('SELECT COUNT(*) FROM tags WHERE resource_id = ?').pluck().get(emi)).toBe(0);
    expect(await errorCode(register('a/new.manifest.xml', { Name: 'reused' }))).toBe('no error');
  });

  it('filters images by name, architecture and tags with wildcards', async () => {
    const a = await register('a/a.manifest.xml', { Name: 'centos-5.3-x86_64' });
    await register('a/b.manifest.xml', { Name: 'ubuntu-9.04-i386', Architecture: 'i386' });
    await cloud.call('CreateTags', { ResourceId: [a], Tag: [{ Key: 'os', Value: 'centos' }] });
    const names = async (Name: string, ...Value: string[]) => (await images({ Filter: [{ Name, Value }] })).map((i) => i.name);
    expect(await names('name', 'centos-*')).toEqual(['centos-5.3-x86_64']);
    expect(await names('architecture', 'i386')).toEqual(['ubuntu-9.04-i386']);
    expect(await names('tag:os', 'cent?s')).toEqual(['centos-5.3-x86_64']);
    expect(await names('root-device-type', 'instance-store')).toHaveLength(2);
    expect(await errorCode(names('bogus', 'x'))).toBe('InvalidParameterValue');
  });
});
