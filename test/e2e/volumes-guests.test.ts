// EBS with real guests (QEMU/TCG through libvirt) and the real tgtd: a 1 GiB volume is hot-plugged
// over iSCSI (QEMU's own initiator, CHAP) into a running test instance, which makes a filesystem and
// writes data; detached and attached to a second instance, the data is there; snapshots go into
// Walrus incrementally (the second, after changing 1% of the volume, adds about 1% to Walrus); the
// volume is deleted and re-created from the snapshot, and the data is intact (checksums compared).
// Clients: awscli for most steps, euca2ools and boto3 for the key ones. Inside the guests, the test
// image runs its user-data script (a tiny volume agent) and reports on the serial console.
// DetachVolume --force, as in EC2, takes a volume from a guest that does not release it (here: paused).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, eventually, libvirtDomains, runTool, startCloud, type Cloud } from './helpers/cloud.js';
import { clients, targetsOf, tgtHere, VOLUME_AGENT as AGENT } from './helpers/ebs.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
const tgtUp = tgtHere();
if (!libvirtHere || !tgtUp) console.warn('volumes-guests.test.ts skipped: needs libvirtd and tgtd (test/run-all.sh starts both)');


let cloud: Cloud;
const { aws, awsError, boto3, euca } = clients(() => cloud);
let image: { emi: string };
let userData: string;
beforeAll(async () => {
  if (!libvirtHere || !tgtUp) return;
  // TCG straight away (KVM does not work on these hosts; the probe would only cost the start-up time).
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1, conf: { HYPERVISOR: 'qemu' } });
  image = JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as typeof image;
  userData = join(cloud.home, 'volume-agent.sh');
  writeFileSync(userData, AGENT);
}, 600_000);
afterAll(async () => {
  await cloud?.stop();
}, 180_000);


const consoleOf = async (id: string) => String((await aws(['get-console-output', '--instance-id', id])).Output ?? '');
const volState = async (id: string) => ((await aws(['describe-volumes', '--volume-ids', id])).Volumes as { State: string }[])[0]!.State;
const waitVolume = (id: string, state: string) => eventually(`${id} ${state}`, async () => ((await volState(id)) === state ? true : undefined), 180_000);
const waitSnapshot = (id: string) => eventually(`${id} completed`, async () => {
  const s = ((await aws(['describe-snapshots', '--snapshot-ids', id])).Snapshots as { State: string }[])[0]!;
  if (s.State === 'error') throw new Error(`${id} failed`);
  return s.State === 'completed' ? true : undefined;
}, 300_000);
/** The agent's line for this volume's nth appearance, once it said done. */
async function agentSays(instanceId: string, volumeId: string, n: number): Promise<string> {
  return eventually(`${instanceId}: agent done with ${volumeId} (${n})`, async () => {
    const out = await consoleOf(instanceId);
    return out.includes(`mallee-vol: done ${volumeId} ${n}`) ? out : undefined;
  }, 240_000);
}
const sums = (out: string, volumeId: string, verb: 'read' | 'wrote') =>
  Object.fromEntries([...out.matchAll(new RegExp(`mallee-vol: ${verb} ${volumeId} (\\w+) ([0-9a-f]{32})`, 'g'))].map((m) => [m[1]!, m[2]!]));


/** Chunk objects in Walrus (as the block-storage account): key → size. */
async function walrusObjects(): Promise<Map<string, number>> {
  const bs = JSON.parse(readFileSync(join(cloud.home, 'keys', 'blockstorage.json'), 'utf8')) as { walrusUrl: string; bucket: string; accessKeyId: string; secretAccessKey: string };
  const env = { ...clientEnv({ AWS_ACCESS_KEY_ID: bs.accessKeyId, AWS_SECRET_ACCESS_KEY: bs.secretAccessKey, AWS_DEFAULT_REGION: cloud.region }) };
  const r = await runTool('aws', ['--endpoint-url', bs.walrusUrl, 's3api', 'list-objects-v2', '--bucket', bs.bucket, '--output', 'json'], env);
  if (r.code !== 0) throw new Error(`listing Walrus failed: ${r.stderr}`);
  const listed = r.stdout.trim() ? ((JSON.parse(r.stdout) as { Contents?: { Key: string; Size: number }[] }).Contents ?? []) : [];
  return new Map(listed.filter((o) => o.Key.includes('/chunks/')).map((o) => [o.Key, o.Size]));
}

describe.skipIf(!libvirtHere || !tgtUp)('EBS volumes in real guests', () => {
  it('a volume written in one instance is read in another; snapshots are incremental; a volume from the snapshot has the same data', async () => {
    const GiB = 1024 ** 3;
    const vol = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    const run = await aws(['run-instances', '--image-id', image.emi, '--instance-type', 't1.micro', '--count', '2', '--user-data', `file://${userData}`]);
    const [a, b] = (run.Instances as { InstanceId: string }[]).map((i) => i.InstanceId) as [string, string];
    for (const id of [a, b]) {
      await eventually(`${id} booted with the agent`, async () => ((await consoleOf(id)).includes('mallee-vol: agent running') && (await consoleOf(id)).includes(`mallee: boot done ${id}`) ? true : undefined), 300_000);
    }
    await waitVolume(vol, 'available');

    // 1. awscli: attach to A, which makes a filesystem and writes 8 MiB.
    await aws(['attach-volume', '--volume-id', vol, '--instance-id', a, '--device', '/dev/sdf']);
    expect(targetsOf(vol)).toHaveLength(1);
    const wrote = sums(await agentSays(a, vol, 1), vol, 'wrote');
    expect(wrote.data).toMatch(/^[0-9a-f]{32}$/);
    const mapping = ((await aws(['describe-instances', '--instance-ids', a])).Reservations as { Instances: { BlockDeviceMappings: { DeviceName: string; Ebs: { VolumeId: string } }[] }[] }[])[0]!.Instances[0]!.BlockDeviceMappings;
    expect(mapping).toEqual([expect.objectContaining({ DeviceName: '/dev/sdf', Ebs: expect.objectContaining({ VolumeId: vol }) })]);
    // The refusals: a volume attached to A cannot go to B too, nor be deleted.
    expect(await awsError(['attach-volume', '--volume-id', vol, '--instance-id', b, '--device', '/dev/sdg'])).toMatch(/VolumeInUse/);
    expect(await awsError(['delete-volume', '--volume-id', vol])).toMatch(/VolumeInUse/);
    await aws(['detach-volume', '--volume-id', vol]);
    await waitVolume(vol, 'available');
    expect(targetsOf(vol)).toEqual([]);

    // 2. euca2ools: attach to B; the data is there. Snapshot it while attached (the busybox guest has no
    // agent: the guest is paused for the cut, a crash-consistent copy).
    await euca('euca-attach-volume', ['-i', b, '-d', '/dev/vdb', vol]);
    expect(sums(await agentSays(b, vol, 1), vol, 'read').data).toBe(wrote.data);
    // kill -9 of the nc: the attachment lives in the domain definition; the restarted nc adopts it (and the guest keeps it).
    const ncPid = Number(readFileSync(join(cloud.home, 'run', 'nc.pid'), 'utf8'));
    process.kill(ncPid, 'SIGKILL');
    await cloud.mallee(['up', '--detach']);
    expect(execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'domblklist', b], { encoding: 'utf8' })).toContain(`${targetsOf(vol)[0]}/1`);
    expect(await volState(vol)).toBe('in-use');
    const s1 = /SNAPSHOT\s+(snap-[0-9a-f]+)/.exec(await euca('euca-create-snapshot', ['-d', 'first', vol]))?.[1];
    expect(s1).toBeDefined();
    await waitSnapshot(s1!);
    const s1Raw = await cloud.client.ok('DescribeSnapshots', { 'SnapshotId.1': s1! });
    expect(JSON.stringify(s1Raw)).toContain('"consistency":"crash"');
    await euca('euca-detach-volume', [vol]);
    await waitVolume(vol, 'available');

    // 3. Attached again, the agent changes 1% of the volume (11 MiB more); the second snapshot adds about that much to Walrus.
    await aws(['attach-volume', '--volume-id', vol, '--instance-id', b, '--device', '/dev/sdg']);
    const extra = sums(await agentSays(b, vol, 2), vol, 'wrote').extra;
    expect(extra).toMatch(/^[0-9a-f]{32}$/);
    await aws(['detach-volume', '--volume-id', vol]);
    await waitVolume(vol, 'available');
    const before = await walrusObjects();
    const s2 = String((await aws(['create-snapshot', '--volume-id', vol, '--description', 'after 1% more'])).SnapshotId);
    await waitSnapshot(s2);
    const after = await walrusObjects();
    const added = [...after].filter(([k]) => !before.has(k)).reduce((n, [, size]) => n + size, 0);
    console.log(`second snapshot added ${(added / 1024 / 1024).toFixed(1)} MiB to Walrus (${((added / GiB) * 100).toFixed(2)}% of the 1 GiB volume) after 11 MiB changed`);
    expect(added).toBeGreaterThanOrEqual(11 * 1024 * 1024);
    expect(added).toBeLessThan(0.02 * GiB);

    // 4. boto3: delete the volume, create one from the second snapshot, attach it to B: both files intact.
    await aws(['delete-volume', '--volume-id', vol]);
    const restored = await boto3(`
v = ec2.create_volume(SnapshotId="${s2}", AvailabilityZone="mallee-1a")["VolumeId"]
for _ in range(600):
    if ec2.describe_volumes(VolumeIds=[v])["Volumes"][0]["State"] == "available": break
    time.sleep(0.5)
ec2.attach_volume(VolumeId=v, InstanceId="${b}", Device="/dev/sdh")
print(v)`);
    expect(restored).toMatch(/^vol-[0-9a-f]+$/);
    const read = sums(await agentSays(b, restored, 1), restored, 'read');
    expect(read).toEqual({ data: wrote.data, extra });

    // Clean up: terminating B releases the attachment and its export; deleting everything leaves no chunk in Walrus.
    await aws(['terminate-instances', '--instance-ids', a, b]);
    await waitVolume(restored, 'available');
    expect(targetsOf(restored)).toEqual([]);
    await aws(['delete-volume', '--volume-id', restored]);
    await aws(['delete-snapshot', '--snapshot-id', s1!]);
    await aws(['delete-snapshot', '--snapshot-id', s2]);
    await eventually('no chunk left in Walrus', async () => ((await walrusObjects()).size === 0 ? true : undefined), 60_000);
    await eventually('guests gone', async () => (!(await libvirtDomains()).some((d) => d === a || d === b) ? true : undefined), 120_000);
  }, 1_500_000);

  it('DetachVolume --force detaches from a guest that does not release the volume (paused); the volume goes to another instance with its data', async () => {
    const vol = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    const run = await aws(['run-instances', '--image-id', image.emi, '--instance-type', 't1.micro', '--count', '2', '--user-data', `file://${userData}`]);
    const [a, b] = (run.Instances as { InstanceId: string }[]).map((i) => i.InstanceId) as [string, string];
    try {
      for (const id of [a, b]) {
        await eventually(`${id} booted with the agent`, async () => ((await consoleOf(id)).includes('mallee-vol: agent running') ? true : undefined), 300_000);
      }
      await waitVolume(vol, 'available');
      await aws(['attach-volume', '--volume-id', vol, '--instance-id', a, '--device', '/dev/sdf']);
      const wrote = sums(await agentSays(a, vol, 1), vol, 'wrote');
      expect(wrote.data).toMatch(/^[0-9a-f]{32}$/);
      // A guest that cannot answer the unplug (a hung kernel): paused, it never acknowledges it.
      execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'suspend', a]);
      const t = Date.now();
      const detached = await aws(['detach-volume', '--volume-id', vol, '--force']);
      expect(detached).toMatchObject({ VolumeId: vol, InstanceId: a, State: 'detaching' });
      console.log(`forced detach answered after ${((Date.now() - t) / 1000).toFixed(1)} s (the nc waits for the guest first)`);
      await waitVolume(vol, 'available');
      // Released everywhere: no attachment in EC2, no export left in tgtd (the guest's iSCSI session is cut).
      expect(((await aws(['describe-volumes', '--volume-ids', vol])).Volumes as { Attachments: unknown[] }[])[0]!.Attachments).toEqual([]);
      expect(targetsOf(vol)).toEqual([]);
      const mappings = ((await aws(['describe-instances', '--instance-ids', a])).Reservations as { Instances: { BlockDeviceMappings?: unknown[] }[] }[])[0]!.Instances[0]!.BlockDeviceMappings ?? [];
      expect(mappings).toEqual([]);
      // The volume attaches to B and its data is there.
      await aws(['attach-volume', '--volume-id', vol, '--instance-id', b, '--device', '/dev/sdf']);
      expect(sums(await agentSays(b, vol, 1), vol, 'read').data).toBe(wrote.data);
      // A, resumed, lets go of the disk it could not release while paused, and still runs.
      execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'resume', a]);
      await eventually(`${vol} gone from ${a}'s domain`, async () => (!execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'dumpxml', a], { encoding: 'utf8' }).includes(`<serial>${vol}</serial>`) ? true : undefined), 120_000);
      expect(await volState(vol)).toBe('in-use');
      await aws(['detach-volume', '--volume-id', vol]);
      await waitVolume(vol, 'available');
      await aws(['delete-volume', '--volume-id', vol]);
    } finally {
      await runTool('virsh', ['-q', '-c', 'qemu:///system', 'resume', a], process.env); // fails when not paused: fine
      await aws(['terminate-instances', '--instance-ids', a, b]).catch(() => undefined);
      await eventually('guests gone', async () => (!(await libvirtDomains()).some((d) => d === a || d === b) ? true : undefined), 120_000).catch(() => undefined);
    }
  }, 900_000);
});
