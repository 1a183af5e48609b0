// RegisterImage of EBS-backed images (no ImageLocation, a root snapshot in the BlockDeviceMapping) and what
// DescribeImages shows of them. The snapshot check is the storage module's (a hook here: a stand-in that knows one
// 2 GiB snapshot); making volumes from it is proven in test/e2e/ebs-boot.test.ts.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ec2Error } from '@mallee/aws-protocol';
import { findLaunchableImage } from '../../src/resources/index.js';
import { ACCOUNT_A, errorCode, openCloud, principalOf, type Cloud } from './harness.js';

let cloud: Cloud;
beforeEach(() => {
  cloud = openCloud({
    rootSnapshot: (_principal, snapshotId) => {
      if (snapshotId !== 'snap-0000000a') throw new Ec2Error('InvalidSnapshot.NotFound', `The snapshot '${snapshotId}' does not exist.`);
      return { volumeSize: 2 };
    },
  });
});
afterEach(() => cloud.close());

const root = (ebs: Record<string, string>, device = '/dev/sda1') => [{ DeviceName: device, Ebs: ebs }];
const register = (params: Record<string, unknown>) => cloud.call('RegisterImage', params);

describe('RegisterImage from a snapshot', () => {
  it('makes an EBS-backed machine image: location owner/name, the root mapping with its size and DeleteOnTermination', async () => {
    const { imageId } = await register({ Name: 'ebs-one', RootDeviceName: '/dev/sda1', BlockDeviceMapping: root({ SnapshotId: 'snap-0000000a' }) });
    const kept = await register({ Name: 'ebs-kept', BlockDeviceMapping: root({ SnapshotId: 'snap-0000000a', VolumeSize: '4', DeleteOnTermination: 'false' }) });
    const { imagesSet } = await cloud.call('DescribeImages', { ImageId: [imageId, kept.imageId] }) as { imagesSet: Record<string, unknown>[] };
    const byId = new Map(imagesSet.map((i) => [i.imageId, i]));
    expect(byId.get(imageId)).toMatchObject({ imageType: 'machine', rootDeviceType: 'ebs', rootDeviceName: '/dev/sda1', imageLocation: `${ACCOUNT_A}/ebs-one` });
    expect(byId.get(imageId)!.blockDeviceMapping).toEqual([{ deviceName: '/dev/sda1', ebs: expect.objectContaining({ snapshotId: 'snap-0000000a', volumeSize: 2, deleteOnTermination: true }) }]);
    expect(byId.get(kept.imageId)!.blockDeviceMapping).toEqual([{ deviceName: '/dev/sda1', ebs: expect.objectContaining({ volumeSize: 4, deleteOnTermination: false }) }]);
    // What RunInstances reads of it.
    expect(findLaunchableImage(cloud.db, principalOf(ACCOUNT_A), kept.imageId as string).rootVolume).toEqual({ snapshotId: 'snap-0000000a', volumeSize: 4, deleteOnTermination: false });
  });

  it('refuses what EC2 refuses', async () => {
    expect(await errorCode(register({ BlockDeviceMapping: root({ SnapshotId: 'snap-0000000a' }) }))).toBe('MissingParameter'); // Name
    expect(await errorCode(register({ Name: 'off-root', RootDeviceName: '/dev/sda1', BlockDeviceMapping: root({ SnapshotId: 'snap-0000000a' }, '/dev/sdb') }))).toBe('InvalidBlockDeviceMapping');
    expect(await errorCode(register({ Name: 'unknown-snap', BlockDeviceMapping: root({ SnapshotId: 'snap-0000000b' }) }))).toBe('InvalidSnapshot.NotFound');
    expect(await errorCode(register({ Name: 'too-small', BlockDeviceMapping: root({ SnapshotId: 'snap-0000000a', VolumeSize: '1' }) }))).toBe('InvalidBlockDeviceMapping');
    expect(await errorCode(register({ Name: 'two-ebs', BlockDeviceMapping: [...root({ SnapshotId: 'snap-0000000a' }), ...root({ SnapshotId: 'snap-0000000a' }, '/dev/sdf')] }))).toBe('InvalidBlockDeviceMapping');
    expect(await errorCode(register({ Name: 'x' }))).toBe('MissingParameter'); // neither a bundle nor a snapshot
    // A cloud without block storage cannot boot from snapshots.
    const bare = openCloud();
    try {
      expect(await errorCode(bare.call('RegisterImage', { Name: 'no-sc', BlockDeviceMapping: root({ SnapshotId: 'snap-0000000a' }) }))).toBe('InvalidBlockDeviceMapping');
    } finally {
      bare.close();
    }
  });
});
