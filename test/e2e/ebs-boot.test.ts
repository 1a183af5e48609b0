// Boot from EBS with a real guest (QEMU/TCG through libvirt) and the real tgtd: an image registered from a
// snapshot (boto3 register_image, euca-register --snapshot) boots with its own root volume as vda over
// iSCSI; the guest writes data to it (the test image runs the volume agent from its user data: an empty
// volume gets a filesystem and 8 MiB of random data, a known one is read back). Stop (euca-stop-instances)
// → modify the type to more memory (euca-modify-instance-attribute) → start (euca-start-instances): the
// same root volume and data, the new memory in the domain XML and in the guest. Terminating deletes the
// root volume (DeleteOnTermination). CreateImage of the stopped instance makes an EBS-backed image of its root.
// awscli for the checks and the refusals.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, libvirtDomains, startCloud, type Cloud } from './helpers/cloud.js';
import { clients, targetsOf, tgtHere, VOLUME_AGENT } from './helpers/ebs.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
const tgtUp = tgtHere();
if (!libvirtHere || !tgtUp) console.warn('ebs-boot.test.ts skipped: needs libvirtd and tgtd (test/run-all.sh starts both)');

let cloud: Cloud;
const { aws, awsError, boto3, euca } = clients(() => cloud);
let image: { emi: string; eki: string; eri: string };
let userData: string;
beforeAll(async () => {
  if (!libvirtHere || !tgtUp) return;
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1, conf: { HYPERVISOR: 'qemu' } });
  image = JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as typeof image;
  userData = join(cloud.home, 'ebs-agent.sh');
  // The volume agent, also saying how much memory the guest has.
  writeFileSync(userData, VOLUME_AGENT.replace('echo "mallee-vol: agent running"', 'echo "mallee-vol: agent running"\necho "mallee-mem: $(grep MemTotal /proc/meminfo)"'));
}, 600_000);
afterAll(async () => {
  await cloud?.stop();
}, 180_000);


interface Instance { State: { Name: string }; InstanceType: string; RootDeviceType: string; RootDeviceName: string; BlockDeviceMappings: { DeviceName: string; Ebs: { VolumeId: string; DeleteOnTermination: boolean; Status: string } }[] }
const instance = async (id: string) => ((await aws(['describe-instances', '--instance-ids', id])).Reservations as { Instances: Instance[] }[])[0]!.Instances[0]!;
const waitState = (id: string, state: string) => eventually(`${id} ${state}`, async () => ((await instance(id)).State.Name === state ? true : undefined), 240_000);
const consoleOf = async (id: string) => String((await aws(['get-console-output', '--instance-id', id])).Output ?? '');
const agentLine = (id: string, re: RegExp) => eventually(`${id}: console matches ${re}`, async () => re.exec(await consoleOf(id)) ?? undefined, 240_000)
  .catch(async (err: Error) => {
    throw new Error(`${err.message}\nconsole of ${id}:\n${await consoleOf(id).catch(() => '')}`);
  });
const domainXml = (id: string) => execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'dumpxml', id], { encoding: 'utf8' });
const memTotalKiB = async (id: string) => Number((await agentLine(id, /mallee-mem: MemTotal:\s+(\d+) kB/))[1]);

describe.skipIf(!libvirtHere || !tgtUp)('boot from EBS (real guest)', () => {
  it('an EBS-backed instance keeps its root volume data across stop → bigger type → start; terminating deletes the root volume', async () => {
    // The root snapshot: an empty 1 GiB volume's (the guest makes the filesystem at its first boot).
    const seed = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    await eventually(`${seed} available`, async () => (((await aws(['describe-volumes', '--volume-ids', seed])).Volumes as { State: string }[])[0]!.State === 'available' ? true : undefined), 120_000);
    const snap = String((await aws(['create-snapshot', '--volume-id', seed])).SnapshotId);
    await eventually(`${snap} completed`, async () => (((await aws(['describe-snapshots', '--snapshot-ids', snap])).Snapshots as { State: string }[])[0]!.State === 'completed' ? true : undefined), 180_000);
    await aws(['delete-volume', '--volume-id', seed]);

    // Registration: boto3 (BlockDeviceMappings) and euca-register --snapshot; DescribeImages shows them EBS-backed.
    const emi = await boto3(`print(ec2.register_image(Name="ebs-boot-test", RootDeviceName="/dev/sda1", KernelId="${image.eki}", RamdiskId="${image.eri}",
    Architecture="x86_64", BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "${snap}"}}])["ImageId"])`);
    const euca2 = /IMAGE\s+(emi-[0-9a-f]+)/.exec(await euca('euca-register', ['-n', 'ebs-boot-euca', '--snapshot', snap, '--kernel', image.eki, '--ramdisk', image.eri]))?.[1];
    const images = (await aws(['describe-images', '--image-ids', emi, euca2!])).Images as { RootDeviceType: string; RootDeviceName: string; BlockDeviceMappings: unknown[] }[];
    for (const i of images) {
      expect(i).toMatchObject({ RootDeviceType: 'ebs', RootDeviceName: '/dev/sda1' });
      expect(i.BlockDeviceMappings).toEqual([{ DeviceName: '/dev/sda1', Ebs: expect.objectContaining({ SnapshotId: snap, VolumeSize: 1, DeleteOnTermination: true }) }]);
    }
    expect(await awsError(['register-image', '--name', 'no-root', '--root-device-name', '/dev/sda1', '--block-device-mappings', `DeviceName=/dev/sdb,Ebs={SnapshotId=${snap}}`])).toBe('InvalidBlockDeviceMapping');
    await aws(['deregister-image', '--image-id', euca2!]);

    // RunInstances: the root volume is made from the snapshot and booted as vda; the agent writes to it.
    const id = String(((await aws(['run-instances', '--image-id', emi, '--instance-type', 't1.micro', '--user-data', `file://${userData}`])).Instances as { InstanceId: string }[])[0]!.InstanceId);
    await waitState(id, 'running');
    const i1 = await instance(id);
    expect(i1).toMatchObject({ RootDeviceType: 'ebs', RootDeviceName: '/dev/sda1' });
    const root = i1.BlockDeviceMappings[0]!.Ebs.VolumeId;
    expect(i1.BlockDeviceMappings).toEqual([{ DeviceName: '/dev/sda1', Ebs: expect.objectContaining({ VolumeId: root, DeleteOnTermination: true, Status: 'attached' }) }]);
    const vol = ((await aws(['describe-volumes', '--volume-ids', root])).Volumes as { State: string; SnapshotId: string; Attachments: { InstanceId: string; Device: string }[] }[])[0]!;
    expect(vol).toMatchObject({ State: 'in-use', SnapshotId: snap, Attachments: [expect.objectContaining({ InstanceId: id, Device: '/dev/sda1' })] });
    expect(targetsOf(root)).toHaveLength(1);
    const xml1 = domainXml(id);
    expect(xml1).toMatch(new RegExp(`<disk type='network' device='disk'>[\\s\\S]*?<target dev='vda' bus='virtio'/>\\s*<serial>${root}</serial>`));
    expect(xml1).toContain("<memory unit='KiB'>262144</memory>");
    const wrote = (await agentLine(id, new RegExp(`mallee-vol: wrote ${root} data ([0-9a-f]{32})`)))[1];
    await agentLine(id, new RegExp(`mallee-vol: done ${root} 1`));
    const mem1 = await memTotalKiB(id);

    // The type changes only while stopped.
    expect(await awsError(['modify-instance-attribute', '--instance-id', id, '--instance-type', 'Value=m1.small'])).toBe('IncorrectInstanceState');
    await euca('euca-stop-instances', [id]);
    await waitState(id, 'stopped');
    await eventually(`${id}'s guest gone and root volume unexported`, async () => (!(await libvirtDomains()).includes(id) && targetsOf(root).length === 0 ? true : undefined), 60_000);
    expect((await instance(id)).BlockDeviceMappings.map((m) => m.Ebs.VolumeId)).toEqual([root]);
    expect(((await aws(['describe-volumes', '--volume-ids', root])).Volumes as { State: string }[])[0]!.State).toBe('in-use');
    await euca('euca-modify-instance-attribute', ['-t', 'm1.small', id]);
    expect(await boto3(`print(ec2.describe_instance_attribute(InstanceId="${id}", Attribute="instanceType")["InstanceType"]["Value"])`)).toBe('m1.small');

    // CreateImage of the stopped instance: its root snapshotted, an EBS-backed image pending until the snapshot completes.
    const created = String((await aws(['create-image', '--instance-id', id, '--name', 'ebs-boot-created'])).ImageId);
    const made = await eventually(`${created} available`, async () => {
      const img = ((await aws(['describe-images', '--image-ids', created])).Images as { State: string; RootDeviceType: string; BlockDeviceMappings: { Ebs: { SnapshotId: string } }[] }[])[0]!;
      if (img.State === 'failed') throw new Error(`${created} failed`);
      return img.State === 'available' ? img : undefined;
    }, 180_000);
    expect(made.RootDeviceType).toBe('ebs');
    const createdSnap = made.BlockDeviceMappings[0]!.Ebs.SnapshotId;
    expect(((await aws(['describe-snapshots', '--snapshot-ids', createdSnap])).Snapshots as { VolumeId: string }[])[0]!.VolumeId).toBe(root);

    // Start: the same root volume, its data read back, and 512 MiB now.
    await euca('euca-start-instances', [id]);
    await waitState(id, 'running');
    expect((await instance(id)).InstanceType).toBe('m1.small');
    expect(domainXml(id)).toContain("<memory unit='KiB'>524288</memory>");
    expect((await agentLine(id, new RegExp(`mallee-vol: read ${root} data ([0-9a-f]{32})`)))[1]).toBe(wrote);
    const mem2 = await memTotalKiB(id);
    console.log(`guest MemTotal ${mem1} kB as t1.micro, ${mem2} kB as m1.small`);
    expect(mem2).toBeGreaterThan(mem1 + 200 * 1024);

    // Terminate: the root volume goes with it (DeleteOnTermination); the image and snapshot are the test's to remove.
    await boto3(`ec2.terminate_instances(InstanceIds=["${id}"])`);
    await waitState(id, 'terminated');
    await eventually(`${root} deleted`, async () => ((await awsError(['describe-volumes', '--volume-ids', root]).catch(() => '')) === 'InvalidVolume.NotFound' ? true : undefined), 120_000);
    expect(targetsOf(root)).toEqual([]);
    for (const image of [emi, created]) await aws(['deregister-image', '--image-id', image]);
    for (const snapshot of [snap, createdSnap]) await aws(['delete-snapshot', '--snapshot-id', snapshot]);
    await eventually('guest gone', async () => (!(await libvirtDomains()).includes(id) ? true : undefined), 120_000);
  }, 1_200_000);
});
