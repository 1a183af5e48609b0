// EBS through the all-in-one (simulated hypervisor: attachments are recorded by the simulated node,
// but exports are real tgtd targets and snapshots real objects in Walrus) with awscli, euca2ools and
// boto3: volume and snapshot life cycles, the EC2 refusals, zone locality with a second zone's SC,
// snapshot permissions and copies, and kill -9 of the sc during CreateSnapshot and during a restore.
// Without guests here, data is written into a volume's backing file directly (the guest path is
// volumes-guests.test.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { items } from './helpers/ec2-client.js';
import { registerTestImage } from './helpers/images.js';
import { clients, targetsOf, tgtHere } from './helpers/ebs.js';
import { clientEnv, eventually, repoRoot, runTool, sleep, startCloud, type Cloud } from './helpers/cloud.js';

const tgtUp = tgtHere();
if (!tgtUp) console.warn('volumes.test.ts skipped: tgtd is not running (test/run-all.sh starts it)');

const MiB = 1024 * 1024;
let cloud: Cloud;
const { aws, awsError, euca } = clients(() => cloud);
let image: string;
let instance: string;
let zoneB: { home: string; child: ChildProcess; url: string } | undefined;

beforeAll(async () => {
  if (!tgtUp) return;
  cloud = await startCloud({ conf: { SC_MAX_VOLUME_SIZE_GB: 8, SC_MAX_TOTAL_STORAGE_GB: 12 } });
  image = await registerTestImage(cloud, 'ebs/img.manifest.xml', 'ebs-image');
  instance = String(items((await cloud.client.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 })).instancesSet)[0]!.instanceId);
  await eventually(`${instance} running`, async () => (JSON.stringify(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': instance })).includes('"name":"running"') ? true : undefined));
}, 180_000);
afterAll(async () => {
  if (zoneB) {
    zoneB.child.kill('SIGTERM');
    await new Promise((r) => zoneB!.child.once('exit', r));
    rmSync(zoneB.home, { recursive: true, force: true });
  }
  await cloud?.stop();
});

// Waiting polls with the raw client (a client process per poll costs a second on a busy host).
const volumeOf = async (id: string) => ({ State: String(items((await cloud.client.ok('DescribeVolumes', { 'VolumeId.1': id })).volumeSet)[0]!.status) });
const waitVolume = (id: string, state: string) => eventually(`${id} ${state}`, async () => ((await volumeOf(id)).State === state ? true : undefined), 120_000);
const snapshotOf = async (id: string) => {
  const s = items((await cloud.client.ok('DescribeSnapshots', { 'SnapshotId.1': id })).snapshotSet)[0]!;
  return { State: String(s.status), Progress: String(s.progress) };
};
const waitSnapshot = (id: string) => eventually(`${id} completed`, async () => {
  const s = await snapshotOf(id);
  if (s.State === 'error') throw new Error(`${id} failed`);
  return s.State === 'completed' ? true : undefined;
}, 180_000);
const volFile = (home: string, id: string) => join(home, 'sc', 'volumes', `${id}.img`);
function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = openSync(file, 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}
/** MD5 of the given byte ranges of a file (the regions a test wrote; the unit tests compare whole volumes). */
function md5(file: string, ranges: [number, number][]): string {
  const h = createHash('md5');
  const fd = openSync(file, 'r');
  for (const [off, len] of ranges) {
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, off);
    h.update(buf);
  }
  closeSync(fd);
  return h.digest('hex');
}

/** Every chunk object in Walrus is named by a manifest of a snapshot that still exists, and vice versa. */
async function walrusMatchesSnapshots(): Promise<{ chunks: number; manifests: number }> {
  const bs = JSON.parse(readFileSync(join(cloud.home, 'keys', 'blockstorage.json'), 'utf8')) as { walrusUrl: string; bucket: string; accessKeyId: string; secretAccessKey: string };
  const env = clientEnv({ AWS_ACCESS_KEY_ID: bs.accessKeyId, AWS_SECRET_ACCESS_KEY: bs.secretAccessKey, AWS_DEFAULT_REGION: cloud.region });
  const s3 = async (args: string[]) => {
    const r = await runTool('aws', ['--endpoint-url', bs.walrusUrl, 's3api', ...args, '--output', 'json'], env);
    if (r.code !== 0) throw new Error(`s3api ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
  };
  const keys = (((await s3(['list-objects-v2', '--bucket', bs.bucket])).Contents ?? []) as { Key: string }[]).map((o) => o.Key);
  const manifests = keys.filter((k) => k.includes('/manifests/'));
  const referenced = new Set<string>();
  for (const m of manifests) {
    const tmp = join(cloud.home, 'manifest.json');
    await s3(['get-object', '--bucket', bs.bucket, '--key', m, tmp]);
    const man = JSON.parse(readFileSync(tmp, 'utf8')) as { chunkPrefix: string; chunks: [number, string][] };
    for (const [, h] of man.chunks) referenced.add(`${man.chunkPrefix}${h}`);
  }
  const chunks = keys.filter((k) => k.includes('/chunks/'));
  expect(chunks.filter((k) => !referenced.has(k)), 'chunks no snapshot uses (leaked)').toEqual([]);
  expect([...referenced].filter((k) => !chunks.includes(k)), 'chunks a snapshot needs but Walrus lacks').toEqual([]);
  const snapshotIds = new Set(((await aws(['describe-snapshots', '--owner-ids', 'self'])).Snapshots as { SnapshotId: string }[]).map((s) => s.SnapshotId));
  expect(manifests.map((m) => /(snap-[0-9a-f]+)\.json$/.exec(m)![1]!).filter((id) => !snapshotIds.has(id)), 'manifests of deleted snapshots').toEqual([]);
  return { chunks: chunks.length, manifests: manifests.length };
}

const scPid = () => Number(readFileSync(join(cloud.home, 'run', 'sc.pid'), 'utf8'));

describe.skipIf(!tgtUp)('EBS volumes and snapshots', () => {
  it('awscli: create, describe with filters and tags, attach (an iSCSI target appears), refusals, detach (it goes), delete', async () => {
    const created = await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a', '--tag-specifications', 'ResourceType=volume,Tags=[{Key=app,Value=tracker}]']);
    const vol = String(created.VolumeId);
    expect(created).toMatchObject({ Size: 1, AvailabilityZone: 'mallee-1a', VolumeType: 'standard' });
    await waitVolume(vol, 'available');
    const byTag = (await aws(['describe-volumes', '--filters', 'Name=tag:app,Values=tracker', 'Name=status,Values=available'])).Volumes as { VolumeId: string }[];
    expect(byTag.map((v) => v.VolumeId)).toEqual([vol]);
    expect(((await aws(['describe-volumes', '--filters', 'Name=availability-zone,Values=elsewhere'])).Volumes as unknown[])).toEqual([]);

    const att = await aws(['attach-volume', '--volume-id', vol, '--instance-id', instance, '--device', '/dev/sdf']);
    expect(att).toMatchObject({ VolumeId: vol, InstanceId: instance, Device: '/dev/sdf' });
    await waitVolume(vol, 'in-use');
    expect(targetsOf(vol)).toHaveLength(1);
    expect(((await aws(['describe-volumes', '--filters', `Name=attachment.instance-id,Values=${instance}`])).Volumes as { VolumeId: string }[]).map((v) => v.VolumeId)).toEqual([vol]);
    const bdm = ((await aws(['describe-instances', '--instance-ids', instance])).Reservations as { Instances: { BlockDeviceMappings: unknown[] }[] }[])[0]!.Instances[0]!.BlockDeviceMappings;
    expect(bdm).toEqual([expect.objectContaining({ DeviceName: '/dev/sdf', Ebs: expect.objectContaining({ VolumeId: vol, Status: 'attached' }) })]);
    const status = ((await aws(['describe-volume-status', '--volume-ids', vol])).VolumeStatuses as { VolumeStatus: { Status: string } }[])[0]!;
    expect(status.VolumeStatus.Status).toBe('ok');

    // The refusals EC2 gives (codes and statuses through the raw client: a client process each costs seconds here).
    const other = String((await cloud.client.ok('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' })).volumeId);
    await waitVolume(other, 'available');
    const refused = async (action: string, params: Record<string, string | number>) => {
      const r = await cloud.client.call(action, params);
      expect(r.status, `${action} ${JSON.stringify(params)}`).toBeGreaterThanOrEqual(400);
      return r.code;
    };
    expect(await awsError(['attach-volume', '--volume-id', vol, '--instance-id', instance, '--device', '/dev/sdg'])).toBe('VolumeInUse');
    expect(await refused('AttachVolume', { VolumeId: other, InstanceId: instance, Device: '/dev/sdf' })).toBe('InvalidParameterValue');
    expect(await awsError(['delete-volume', '--volume-id', vol])).toBe('VolumeInUse');
    expect(await refused('DetachVolume', { VolumeId: other })).toBe('IncorrectState');
    expect(await refused('DescribeVolumes', { 'VolumeId.1': 'vol-00000000' })).toBe('InvalidVolume.NotFound');
    expect(await refused('DescribeVolumes', { 'VolumeId.1': 'volume-1' })).toBe('InvalidVolume.Malformed');
    expect(await refused('CreateVolume', { Size: 9, AvailabilityZone: 'mallee-1a' })).toBe('InvalidParameterValue');
    expect(await refused('CreateVolume', { Size: 1, AvailabilityZone: 'nowhere-1z' })).toBe('InvalidParameterValue');
    expect(await refused('CreateVolume', { AvailabilityZone: 'mallee-1a' })).toBe('MissingParameter');
    expect(await refused('AttachVolume', { VolumeId: other, InstanceId: 'i-00000000', Device: '/dev/sdk' })).toBe('InvalidInstanceID.NotFound');
    // The SC's limits are cloud properties, per zone: the sc follows a change within its cache time.
    await cloud.mallee(['property', 'mallee-1a.storage.maxtotalvolumesizeingb=2']);
    await eventually('the zone refuses a volume beyond its total', async () => {
      const r = await cloud.client.call('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' });
      if (r.code === 'VolumeLimitExceeded') return true;
      // Made before the sc saw the new value: not wanted.
      if (r.status === 200) {
        await waitVolume(String(r.xml.volumeId), 'available');
        await cloud.client.ok('DeleteVolume', { VolumeId: String(r.xml.volumeId) });
      }
      return undefined;
    }, 30_000);
    await cloud.mallee(['property', '--reset', 'mallee-1a.storage.maxtotalvolumesizeingb']);
    await eventually('the limit lifted again', async () => {
      const r = await cloud.client.call('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' });
      if (r.status !== 200) return undefined;
      await waitVolume(String(r.xml.volumeId), 'available');
      await cloud.client.ok('DeleteVolume', { VolumeId: String(r.xml.volumeId) });
      return true;
    }, 30_000);

    const det = await aws(['detach-volume', '--volume-id', vol]);
    expect(det.State).toBe('detaching');
    await waitVolume(vol, 'available');
    expect(targetsOf(vol)).toEqual([]);
    await aws(['delete-volume', '--volume-id', vol]);
    await aws(['delete-volume', '--volume-id', other]);
    await eventually('volumes gone', async () => {
      const left = (await aws(['describe-volumes'])).Volumes as { VolumeId: string }[];
      return left.some((v) => v.VolumeId === vol || v.VolumeId === other) ? undefined : true;
    });
    expect(existsSync(volFile(cloud.home, vol))).toBe(false);
  });

  it('euca2ools: create, attach, snapshot, detach, share the snapshot, create a volume from it, delete', async () => {
    const vol = /VOLUME\s+(vol-[0-9a-f]+)/.exec(await euca('euca-create-volume', ['-s', '1', '-z', 'mallee-1a']))![1]!;
    await waitVolume(vol, 'available');
    expect(await euca('euca-attach-volume', ['-i', instance, '-d', '/dev/sdh', vol])).toMatch(/ATTACHMENT\s+\S+\s+\S+\s+\/dev\/sdh/);
    const data = randomBytes(3 * MiB);
    writeAt(volFile(cloud.home, vol), 5 * MiB, data);
    const snap = /SNAPSHOT\s+(snap-[0-9a-f]+)/.exec(await euca('euca-create-snapshot', ['-d', 'euca', vol]))![1]!;
    await waitSnapshot(snap);
    expect(await euca('euca-describe-snapshots', [snap])).toMatch(/completed\s+.*100%/);
    // Attached to a guest without an agent on the simulated node: the snapshot records the crash-consistent pause.
    expect(JSON.stringify(await cloud.client.ok('DescribeSnapshots', { 'SnapshotId.1': snap }))).toContain('"consistency":"crash"');
    await euca('euca-detach-volume', [vol]);
    await waitVolume(vol, 'available');
    await euca('euca-modify-snapshot-attribute', ['-c', '-a', 'all', snap]);
    expect(await euca('euca-describe-snapshot-attribute', ['-c', snap])).toMatch(/createVolumePermission\s+\S+\s+group\s+all/);
    const copy = /(vol-[0-9a-f]+)/.exec(await euca('euca-create-volume', ['--snapshot', snap, '-z', 'mallee-1a']))![1]!;
    await waitVolume(copy, 'available');
    const region: [number, number][] = [[0, 16 * MiB]];
    expect(md5(volFile(cloud.home, copy), region)).toBe(md5(volFile(cloud.home, vol), region));
    expect(statSync(volFile(cloud.home, copy)).size).toBe(1024 * MiB);
    await euca('euca-delete-volume', [copy]);
    await euca('euca-delete-volume', [vol]);
    await euca('euca-delete-snapshot', [snap]);
    expect(await euca('euca-describe-snapshots', [])).not.toContain(snap);
  });

  it('boto3: snapshot permissions are per account; CopySnapshot; another account cannot see or use what is not shared', async () => {
    const other = JSON.parse((await cloud.mallee(['account', 'create', 'ebs-other', '-o', 'json'])).stdout) as { accountId: string; accessKeyId: string; secretAccessKey: string }[];
    const o = other[0]!;
    const py = async (code: string, creds?: { accessKeyId: string; secretAccessKey: string }) => {
      const env = clientEnv({ ...cloud.env, ...(creds ? { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey } : {}) });
      const r = await runTool('python3', ['-c', `import boto3, os, json, time, botocore\nec2 = boto3.client("ec2", endpoint_url=os.environ["EC2_URL"], region_name=os.environ["AWS_DEFAULT_REGION"])\n${code}`], env);
      if (r.code !== 0) throw new Error(`boto3: ${r.stderr}\n${cloud.logs()}`);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const wait = `
def wait_snap(s):
    for _ in range(600):
        st = ec2.describe_snapshots(SnapshotIds=[s])["Snapshots"][0]["State"]
        if st == "completed": return
        time.sleep(0.25)
    raise Exception("snapshot not completed")
def wait_vol(v, state="available"):
    for _ in range(600):
        if ec2.describe_volumes(VolumeIds=[v])["Volumes"][0]["State"] == state: return
        time.sleep(0.25)
    raise Exception("volume not " + state)
def code(f):
    try:
        f(); return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
`;
    const mine = await py(`${wait}
v = ec2.create_volume(Size=1, AvailabilityZone="mallee-1a")["VolumeId"]; wait_vol(v)
s = ec2.create_snapshot(VolumeId=v, Description="mine", TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}])["SnapshotId"]; wait_snap(s)
c = ec2.copy_snapshot(SourceSnapshotId=s, SourceRegion=os.environ["AWS_DEFAULT_REGION"], Description="copy")["SnapshotId"]; wait_snap(c)
tagged = [x["SnapshotId"] for x in ec2.describe_snapshots(Filters=[{"Name": "tag:k", "Values": ["v"]}])["Snapshots"]]
print(json.dumps({"v": v, "s": s, "c": c, "tagged": tagged, "cons": ec2.describe_snapshots(SnapshotIds=[s])["Snapshots"][0]["VolumeSize"]}))`);
    expect(mine.tagged).toEqual([mine.s]);
    const s = String(mine.s);
    const theirs = async () => py(`${wait}
print(json.dumps({
  "see": [x["SnapshotId"] for x in ec2.describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]],
  "describe": code(lambda: ec2.describe_snapshots(SnapshotIds=["${s}"])),
  "create": code(lambda: ec2.create_volume(SnapshotId="${s}", AvailabilityZone="mallee-1a")),
  "volumes": code(lambda: ec2.describe_volumes(VolumeIds=["${String(mine.v)}"])),
  "delete": code(lambda: ec2.delete_snapshot(SnapshotId="${s}")),
}))`, o);
    expect(await theirs()).toMatchObject({ see: [], describe: 'InvalidSnapshot.NotFound', create: 'InvalidSnapshot.NotFound', volumes: 'InvalidVolume.NotFound', delete: 'InvalidSnapshot.NotFound' });
    await py(`ec2.modify_snapshot_attribute(SnapshotId="${s}", Attribute="createVolumePermission", OperationType="add", UserIds=["${o.accountId}"])
print(json.dumps(ec2.describe_snapshot_attribute(SnapshotId="${s}", Attribute="createVolumePermission")["CreateVolumePermissions"]))`).then((perms) => expect(perms).toEqual([{ UserId: o.accountId }]));
    const shared = await theirs();
    expect(shared).toMatchObject({ see: [s], describe: 'ok', create: 'ok', delete: 'InvalidSnapshot.NotFound' });
    // The volume made from the shared snapshot may still be restoring (creating): as in EC2, it can be deleted once available.
    await py(`${wait}
for v in ec2.describe_volumes()["Volumes"]:
    wait_vol(v["VolumeId"])
    ec2.delete_volume(VolumeId=v["VolumeId"])
print("{}")`, o);
    await py(`${wait}
ec2.delete_snapshot(SnapshotId="${String(mine.c)}"); ec2.delete_snapshot(SnapshotId="${s}"); ec2.delete_volume(VolumeId="${String(mine.v)}")
print(json.dumps({"left": code(lambda: ec2.describe_snapshots(SnapshotIds=["${s}"]))}))`).then((r) => expect(r.left).toBe('InvalidSnapshot.NotFound'));
    await walrusMatchesSnapshots();
  });

  it('zone locality: a second zone\'s SC; attaching across zones is refused; a snapshot of zone A makes a volume in zone B', async () => {
    // A second storage controller (its own home and port) registered for zone mallee-1b.
    const home = mkdtempSync(join(tmpdir(), 'mallee-e2e-sc-b-'));
    const conf = readFileSync(join(cloud.home, 'mallee.conf'), 'utf8');
    const port = Number(/SC_PORT="(\d+)"/.exec(conf)![1]) + 100;
    writeFileSync(join(home, 'mallee.conf'), conf.replace(/^MALLEE_HOME=.*$/m, `MALLEE_HOME="${home}"`).replace(/^SC_PORT=.*$/m, `SC_PORT="${port}"`) + 'ZONE="mallee-1b"\n');
    const child = spawn(process.execPath, [join(repoRoot, 'services/sc/dist/src/main.js'), '--home', home, '--conf', join(home, 'mallee.conf')], { stdio: 'ignore' });
    zoneB = { home, child, url: `http://127.0.0.1:${port}` };
    await eventually('zone B sc listening', async () => (existsSync(join(home, 'run', 'sc.url')) ? true : undefined));
    await cloud.mallee(['register-sc', 'mallee-1b', zoneB.url, '--sc-home', home]);
    await eventually('zone B sc ENABLED', async () => {
      const services = JSON.parse((await cloud.mallee(['describe-services', '-o', 'json'])).stdout) as { type: string; name: string; state: string }[];
      return services.some((x) => x.type === 'sc' && x.name === 'mallee-1b' && x.state === 'ENABLED') ? true : undefined;
    });

    const volB = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1b'])).VolumeId);
    await waitVolume(volB, 'available');
    expect(await awsError(['attach-volume', '--volume-id', volB, '--instance-id', instance, '--device', '/dev/sdi'])).toBe('InvalidVolume.ZoneMismatch');

    const volA = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    await waitVolume(volA, 'available');
    writeAt(volFile(cloud.home, volA), 300 * MiB, randomBytes(2 * MiB));
    const snap = String((await aws(['create-snapshot', '--volume-id', volA])).SnapshotId);
    await waitSnapshot(snap);
    const fromA = String((await aws(['create-volume', '--snapshot-id', snap, '--availability-zone', 'mallee-1b'])).VolumeId);
    await waitVolume(fromA, 'available');
    const region: [number, number][] = [[299 * MiB, 4 * MiB]];
    expect(md5(volFile(home, fromA), region)).toBe(md5(volFile(cloud.home, volA), region));
    // An SC that is down affects its zone only.
    child.kill('SIGSTOP');
    try {
      const quick = await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a']);
      await waitVolume(String(quick.VolumeId), 'available');
      await aws(['delete-volume', '--volume-id', String(quick.VolumeId)]);
    } finally {
      child.kill('SIGCONT');
    }
    for (const v of [volB, fromA, volA]) await aws(['delete-volume', '--volume-id', v]);
    await aws(['delete-snapshot', '--snapshot-id', snap]);
    await walrusMatchesSnapshots();
  });

  it('EBS-backed RunInstances beyond the room: the cc places (and holds) what fits, the rest are not launched and their root volumes go', async () => {
    const seed = String((await cloud.client.ok('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' })).volumeId);
    await waitVolume(seed, 'available');
    const snap = String((await cloud.client.ok('CreateSnapshot', { VolumeId: seed })).snapshotId);
    await waitSnapshot(snap);
    await cloud.client.ok('DeleteVolume', { VolumeId: seed });
    const emi = String((await cloud.client.ok('RegisterImage', { Name: 'ebs-overflow', RootDeviceName: '/dev/sda1', 'BlockDeviceMapping.1.DeviceName': '/dev/sda1', 'BlockDeviceMapping.1.Ebs.SnapshotId': snap })).imageId);
    // The type with the least room left (a few fit): run one more than fit.
    const zones = items((await cloud.client.ok('DescribeAvailabilityZones', { 'ZoneName.1': 'verbose' })).availabilityZoneInfo);
    const rows = zones.flatMap((z) => {
      const m = /^\|- (\S+)$/.exec(String(z.zoneName));
      const f = /^(\d+)\s*\/\s*\d+/.exec(String(z.zoneState));
      return m && f && Number(f[1]) > 0 ? [{ type: m[1]!, free: Number(f[1]) }] : [];
    }).sort((a, b) => a.free - b.free);
    const { type, free } = rows[0]!;
    expect(free).toBeLessThanOrEqual(4);
    const before = new Set(items((await cloud.client.ok('DescribeVolumes', {})).volumeSet).map((v) => String(v.volumeId)));
    const run = await cloud.client.ok('RunInstances', { ImageId: emi, InstanceType: type, MinCount: 1, MaxCount: free + 1 });
    const ids = items(run.instancesSet).map((i) => String(i.instanceId));
    expect(ids).toHaveLength(free);
    for (const id of ids) await eventually(`${id} running`, async () => (JSON.stringify(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': id })).includes('"name":"running"') ? true : undefined), 120_000);
    // Exactly their root volumes are left, in use; the one made for the instance that did not fit is deleted.
    const roots = async () => items((await cloud.client.ok('DescribeVolumes', {})).volumeSet).filter((v) => !before.has(String(v.volumeId)));
    await eventually('only the launched instances\' root volumes', async () => ((await roots()).length === free ? true : undefined), 60_000);
    expect((await roots()).map((v) => [String(v.status), String(items(v.attachmentSet)[0]?.instanceId)]).sort()).toEqual(ids.map((id) => ['in-use', id]).sort());
    await cloud.client.ok('TerminateInstances', Object.fromEntries(ids.map((id, i) => [`InstanceId.${i + 1}`, id])));
    await eventually('the root volumes deleted with their instances', async () => ((await roots()).length === 0 ? true : undefined), 120_000);
    await cloud.client.ok('DeregisterImage', { ImageId: emi });
    await cloud.client.ok('DeleteSnapshot', { SnapshotId: snap });
  });

  it('kill -9 of the sc during CreateSnapshot and during a restore: after a restart nothing is stuck, no tgt target is orphaned, no Walrus chunk leaks', async () => {
    const vol = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    await waitVolume(vol, 'available');
    // 200 MiB of data: the upload takes long enough to be interrupted.
    for (let i = 0; i < 20; i++) writeAt(volFile(cloud.home, vol), i * 50 * MiB, randomBytes(10 * MiB));
    const written: [number, number][] = Array.from({ length: 20 }, (_, i) => [i * 50 * MiB, 10 * MiB]);
    const sum = md5(volFile(cloud.home, vol), written);
    await aws(['attach-volume', '--volume-id', vol, '--instance-id', instance, '--device', '/dev/sdj']);
    expect(targetsOf(vol)).toHaveLength(1);
    const snap = String((await aws(['create-snapshot', '--volume-id', vol])).SnapshotId);
    await eventually('upload under way', async () => ((await snapshotOf(snap)).Progress !== '0%' ? true : undefined), 60_000);
    process.kill(scPid(), 'SIGKILL');
    expect((await snapshotOf(snap)).State).toBe('pending');
    await sleep(300);
    await cloud.mallee(['up', '--detach']);
    await waitSnapshot(snap);
    // The export survived the crash exactly once; detach removes it.
    expect(targetsOf(vol)).toHaveLength(1);
    await aws(['detach-volume', '--volume-id', vol]);
    await waitVolume(vol, 'available');
    expect(targetsOf(vol)).toEqual([]);
    await walrusMatchesSnapshots();

    const restored = String((await aws(['create-volume', '--snapshot-id', snap, '--availability-zone', 'mallee-1a'])).VolumeId);
    await sleep(400);
    process.kill(scPid(), 'SIGKILL');
    await sleep(300);
    await cloud.mallee(['up', '--detach']);
    await waitVolume(restored, 'available');
    expect(md5(volFile(cloud.home, restored), written)).toBe(sum);

    // A snapshot killed before it finished and then deleted leaves nothing in Walrus.
    const snap2 = String((await aws(['create-snapshot', '--volume-id', restored])).SnapshotId);
    process.kill(scPid(), 'SIGKILL');
    await sleep(300);
    await aws(['delete-snapshot', '--snapshot-id', snap2]);
    await cloud.mallee(['up', '--detach']);
    await eventually('the deleted snapshot is gone from the SC', async () => {
      const r = await cloud.mallee(['describe-volumes', '--verbose', '-o', 'json']);
      return (JSON.parse(r.stdout) as { controllers: { state: string }[] }).controllers.every((c) => c.state === 'ENABLED') ? true : undefined;
    });
    for (const v of [vol, restored]) await aws(['delete-volume', '--volume-id', v]);
    await aws(['delete-snapshot', '--snapshot-id', snap]);
    await eventually('no snapshot or chunk left', async () => ((await walrusMatchesSnapshots()).chunks === 0 ? true : undefined), 60_000);
    const verbose = JSON.parse((await cloud.mallee(['describe-volumes', '--verbose', '-o', 'json'])).stdout) as { volumes: { status: string }[] };
    expect(verbose.volumes.filter((v) => v.status === 'creating' || v.status === 'deleting')).toEqual([]);
  });
});
