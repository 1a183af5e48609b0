// The real Debian 12 guest (test/images/build-debian-image.sh, registered by `mallee test-image --debian`)
// under libvirt (QEMU/TCG here): cloud-init takes the key pair and the user data from the node's NoCloud
// config drive, qemu-guest-agent answers libvirt through the domain's guest-agent channel, and the guest
// reports all of it on its serial console. awscli launches, boto3 reads, euca2ools terminates.
// The same guest then proves the consistent snapshots of issue 5: a writer runs on an ext4 volume while
// 10 snapshots are cut under the guest agent's fsfreeze, and each one, restored, is fsck-clean.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, libvirtDomains, runTool, sleep, startCloud, type Cloud } from './helpers/cloud.js';
import { awsCli, boto3, consoleShows, euca, instancesIn, virsh } from './helpers/clients.js';
import { tgtHere } from './helpers/ebs.js';
import { items } from './helpers/ec2-client.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!libvirtHere) console.warn('debian.test.ts skipped: libvirtd is not running (run test/run-all.sh, which starts it)');
const tgtUp = libvirtHere && tgtHere();
if (libvirtHere && !tgtUp) console.warn('debian.test.ts: the snapshot test is skipped: tgtd is not running (test/run-all.sh starts it)');

let cloud: Cloud;
let image: { emi: string; eki: string; eri: string };
/** The guest the first test boots; the others use it, the last terminates it. */
let guest: string | undefined;
beforeAll(async () => {
  if (!libvirtHere) return;
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1 });
  // Built once per host into the shared cache (about a minute the first time), then only registered.
  await cloud.mallee(['test-image', '--debian'], 900_000);
  image = JSON.parse(readFileSync(join(cloud.home, 'test-image-debian.json'), 'utf8')) as typeof image;
}, 1_000_000);
afterAll(async () => {
  await cloud?.stop();
}, 120_000);

/** The SHA256 fingerprint cloud-init prints for an OpenSSH public key line (colon-separated hex of the blob's hash). */
function cloudInitFingerprint(publicKeyLine: string): string {
  const blob = Buffer.from(publicKeyLine.split(/\s+/)[1]!, 'base64');
  return createHash('sha256').update(blob).digest('hex').match(/../g)!.join(':');
}

/** Runs a bash script inside the guest through the guest agent (guest-exec); its exit code and output. */
async function guestExec(id: string, script: string, timeoutMs = 120_000): Promise<{ code: number; out: string; err: string }> {
  const agent = async (execute: string, args: Record<string, unknown>) =>
    (JSON.parse(await virsh(['qemu-agent-command', id, JSON.stringify({ execute, arguments: args })])) as { return: Record<string, unknown> }).return;
  const { pid } = await agent('guest-exec', { path: '/bin/bash', arg: ['-c', script], 'capture-output': true });
  return eventually(`guest-exec ${pid} in ${id} to exit`, async () => {
    const st = await agent('guest-exec-status', { pid });
    if (!st.exited) return undefined;
    const text = (k: string) => Buffer.from(String(st[k] ?? ''), 'base64').toString('utf8');
    return { code: Number(st.exitcode ?? -1), out: text('out-data'), err: text('err-data') };
  }, timeoutMs);
}

/**
 * The writer in the guest: each round writes a new file (4–256 KiB of random data), fsyncs it and renames
 * it into place as files/f<n>, unlinks f<n-32>, then replaces `count` (written without fsync) by n through a
 * rename. At any instant the directory therefore holds a contiguous run f<a>..f<b>, 32 or 33 long (fewer at
 * first), each file (n % 64 + 1) × 4 KiB, and count is b or b − 1. A snapshot of a frozen filesystem shows
 * exactly such a state; one cut under a live or merely paused guest shows the disk's lagging view instead.
 */
const WRITER = `cd /mnt/ebs && mkdir -p files && n=0
while [ ! -e /run/mallee-writer-stop ]; do
  n=$((n + 1))
  dd if=/dev/urandom of=files/.new bs=4k count=$((n % 64 + 1)) conv=fsync status=none
  mv files/.new files/f$n
  rm -f files/f$((n - 32))
  echo $n > count.new && mv count.new count
done
echo stopped > /run/mallee-writer-stopped
`;

/** What `debugfs` reads in a restored volume's file system (no mount, no journal replay). */
function writerStateIn(image: string): { files: Map<number, number>; count: number } {
  const ls = execFileSync('debugfs', ['-R', 'ls -p /files', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const files = new Map<number, number>();
  for (const line of ls.split('\n')) {
    // /inode/mode/uid/gid/name/size/
    const m = /^\/\d+\/\d+\/\d+\/\d+\/f(\d+)\/(\d+)\/$/.exec(line.trim());
    if (m) files.set(Number(m[1]), Number(m[2]));
  }
  const count = Number(execFileSync('debugfs', ['-R', 'cat /count', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  return { files, count };
}

async function snapshotsUnderWriter(id: string): Promise<void> {
  const ec2 = cloud.client;
  const volumeState = async (v: string) => String(items((await ec2.ok('DescribeVolumes', { 'VolumeId.1': v })).volumeSet)[0]?.status);
  const waitVolume = (v: string, state: string) => eventually(`${v} ${state}`, async () => ((await volumeState(v)) === state ? true : undefined), 300_000);
  const vol = String((await ec2.ok('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' })).volumeId);
  await waitVolume(vol, 'available');
  await ec2.ok('AttachVolume', { VolumeId: vol, InstanceId: id, Device: '/dev/sdf' });
  await waitVolume(vol, 'in-use');
  // In the guest: find the disk by its serial (the volume id), make ext4 on it, mount it, start the writer.
  const setup = await guestExec(id, `set -e
for i in $(seq 300); do
  for s in /sys/block/vd*/serial; do [ "$(cat $s 2>/dev/null)" = ${vol} ] && dev=/dev/$(basename $(dirname $s)); done
  [ -n "\${dev:-}" ] && break; sleep 0.2
done
[ -n "\${dev:-}" ] || { echo "no disk with serial ${vol}" >&2; exit 1; }
mkfs.ext4 -q -F $dev && mkdir -p /mnt/ebs && mount -t ext4 $dev /mnt/ebs
cat > /run/mallee-writer.sh <<'EOF'
${WRITER}EOF
rm -f /run/mallee-writer-stop /run/mallee-writer-stopped
setsid bash /run/mallee-writer.sh </dev/null >/dev/null 2>&1 &
echo "$dev $(findmnt -no FSTYPE /mnt/ebs)"`);
  expect(setup.code, setup.err).toBe(0);
  expect(setup.out.trim()).toMatch(/^\/dev\/vd[b-z] ext4$/);
  await eventually('the writer has written', async () => (Number((await guestExec(id, 'cat /mnt/ebs/count 2>/dev/null || echo 0')).out) >= 10 ? true : undefined), 120_000);

  // Ten snapshots while it writes, each waited for (the next one is incremental on it).
  const snapshots: string[] = [];
  for (let n = 0; n < 10; n++) {
    const snap = String((await ec2.ok('CreateSnapshot', { VolumeId: vol, Description: `under the writer ${n + 1}` })).snapshotId);
    snapshots.push(snap);
    await eventually(`${snap} completed`, async () => {
      const s = items((await ec2.ok('DescribeSnapshots', { 'SnapshotId.1': snap })).snapshotSet)[0]!;
      if (s.status === 'error') throw new Error(`${snap} failed: ${String(s.statusMessage)}`);
      return s.status === 'completed' ? true : undefined;
    }, 300_000);
    await sleep(500 + Math.floor(Math.random() * 1500));
  }
  // The writer kept going through every freeze (the guest was thawed each time), then stops on request.
  const stop = await guestExec(id, `touch /run/mallee-writer-stop; for i in $(seq 100); do [ -e /run/mallee-writer-stopped ] && break; sleep 0.2; done
cat /run/mallee-writer-stopped && cat /mnt/ebs/count && umount /mnt/ebs`);
  expect(stop.code, stop.err).toBe(0);
  const [stopped, finalCount] = stop.out.trim().split('\n');
  expect(stopped).toBe('stopped');
  await ec2.ok('DetachVolume', { VolumeId: vol });

  // Each snapshot restored (CreateVolume from it), checked on the host: e2fsck -fn (read-only, no journal
  // replay) finds nothing, and the writer's files are a state the writer was in.
  const seen: { snap: string; consistency: string; count: number; files: number }[] = [];
  for (const snap of snapshots) {
    const s = items((await ec2.ok('DescribeSnapshots', { 'SnapshotId.1': snap })).snapshotSet)[0]!;
    const restored = String((await ec2.ok('CreateVolume', { SnapshotId: snap, AvailabilityZone: 'mallee-1a' })).volumeId);
    await waitVolume(restored, 'available');
    const img = join(cloud.home, 'sc', 'volumes', `${restored}.img`);
    const fsck = await runTool('e2fsck', ['-fn', img], process.env, 300_000);
    expect(fsck.code, `e2fsck -fn of ${snap} (restored as ${restored}):\n${fsck.stdout}\n${fsck.stderr}`).toBe(0);
    // -n skips journal recovery: it says so, and checks a stale view, when the copy needs one (a crash-consistent cut).
    expect(`${fsck.stdout}${fsck.stderr}`, `e2fsck -fn of ${snap}`).not.toMatch(/journal recovery/);
    const dump = await runTool('dumpe2fs', ['-h', img], process.env);
    const features = /^Filesystem features:\s+(.*)$/m.exec(dump.stdout)?.[1] ?? '';
    const state = writerStateIn(img);
    const idx = [...state.files.keys()].sort((a, b) => a - b);
    const last = idx[idx.length - 1] ?? 0;
    seen.push({ snap, consistency: String(s.consistency), count: state.count, files: idx.length });
    const where = `${snap} (${JSON.stringify({ consistency: s.consistency, features, count: state.count, files: idx })})`;
    expect(features, `${where}: a frozen ext4 needs no journal recovery`).not.toMatch(/needs_recovery/);
    expect(idx.length, where).toBeGreaterThan(0);
    expect(idx, `${where}: a contiguous run of files`).toEqual(idx.map((_, k) => idx[0]! + k));
    expect(idx.length, where).toBeLessThanOrEqual(33);
    if (last > 32) expect(idx.length, where).toBeGreaterThanOrEqual(32);
    for (const [k, size] of state.files) expect(size, `${where}: f${k} complete`).toBe((k % 64 + 1) * 4096);
    expect(last - state.count, `${where}: count is the last file or one behind`).toBeGreaterThanOrEqual(0);
    expect(last - state.count, `${where}: count is the last file or one behind`).toBeLessThanOrEqual(1);
    await ec2.ok('DeleteVolume', { VolumeId: restored });
  }
  console.log(`snapshots under the writer: ${JSON.stringify(seen)}; the writer's final count ${finalCount}`);
  // Every one was cut under the guest agent's freeze, and the writer made progress between each two.
  expect(seen.map((x) => x.consistency)).toEqual(snapshots.map(() => 'filesystem'));
  for (let k = 1; k < seen.length; k++) expect(seen[k]!.count).toBeGreaterThan(seen[k - 1]!.count);
  expect(Number(finalCount)).toBeGreaterThan(seen[seen.length - 1]!.count);

  await waitVolume(vol, 'available');
  await ec2.ok('DeleteVolume', { VolumeId: vol });
  for (const snap of snapshots) await ec2.ok('DeleteSnapshot', { SnapshotId: snap });
}

describe.skipIf(!libvirtHere)('the Debian 12 guest', () => {
  it('boots under libvirt: cloud-init installs the key pair and runs the user-data script, the guest agent answers guest-ping', async () => {
    const keyName = `debian-e2e-${randomBytes(3).toString('hex')}`;
    const key = await awsCli(cloud, ['ec2', 'create-key-pair', '--key-name', keyName]);
    const keyFile = join(cloud.home, `${keyName}.pem`);
    writeFileSync(keyFile, String(key.KeyMaterial), { mode: 0o600 });
    const pub = await runTool('ssh-keygen', ['-y', '-f', keyFile], process.env);
    expect(pub.code, pub.stderr).toBe(0);
    const token = randomBytes(6).toString('hex');
    const userData = join(cloud.home, 'user-data.sh');
    writeFileSync(userData, `#!/bin/sh\necho "mallee: user-data ran token ${token} as $(id -un) on $(hostname)"\n`);

    const run = await awsCli(cloud, ['ec2', 'run-instances', '--image-id', image.emi, '--instance-type', 'm1.small', '--key-name', keyName, '--user-data', `file://${userData}`]);
    const id = instancesIn(run)[0]!.InstanceId;
    let booted = false;
    try {
      const text = await consoleShows(cloud, id, `mallee: debian boot done ${id}`, 420_000);
      // cloud-init found the node's config drive and took identity, key and user data from it.
      expect(text).toMatch(new RegExp(`mallee: debian 12\\.\\d+ kernel \\S+ instance ${id} hostname ${id}`));
      expect(text).toMatch(/mallee: cloud-init datasource DataSourceNoCloud \[seed=\/dev\/vd[a-z]\]/);
      expect(text).toContain(`mallee: user-data ran token ${token} as root on ${id}`);
      expect(text).toContain(`mallee: authorized key for debian: ${keyName}`);
      // cloud-init's own table of the default user's keys shows the fingerprint of exactly this key pair.
      expect(text).toContain(cloudInitFingerprint(pub.stdout.trim()));
      expect(text).toContain('mallee: qemu-guest-agent active');
      expect(text).toContain('mallee: sshd active');
      expect(text).toMatch(/mallee: \S+ \d+\.\d+\.\d+\.\d+\/\d+/); // DHCP address on the NIC
      const mem = /mallee: MemTotal:\s+(\d+) kB/.exec(text);
      expect(Number(mem?.[1])).toBeGreaterThan(400 * 1024);
      expect(Number(mem?.[1])).toBeLessThanOrEqual(512 * 1024);

      // boto3 sees it running, from the Debian image with its own kernel and ramdisk.
      const seen = (await boto3(cloud, `r = ec2.describe_instances(InstanceIds=["${id}"])["Reservations"][0]["Instances"][0]\nprint(json.dumps({k: r.get(k) for k in ["ImageId", "KernelId", "RamdiskId", "KeyName"]} | {"State": r["State"]["Name"]}))`)) as Record<string, string>;
      expect(seen).toEqual({ ImageId: image.emi, KernelId: image.eki, RamdiskId: image.eri, KeyName: keyName, State: 'running' });

      // The guest agent, through the domain's org.qemu.guest_agent.0 channel.
      expect(JSON.parse(await virsh(['qemu-agent-command', id, '{"execute":"guest-ping"}']))).toEqual({ return: {} });
      const os = JSON.parse(await virsh(['qemu-agent-command', id, '{"execute":"guest-get-osinfo"}'])) as { return: { id: string; 'version-id': string } };
      expect(os.return).toMatchObject({ id: 'debian', 'version-id': '12' });
      expect(JSON.parse(await virsh(['qemu-agent-command', id, '{"execute":"guest-fsfreeze-status"}']))).toEqual({ return: 'thawed' });

      booted = true;
      guest = id;
    } finally {
      if (!booted) await awsCli(cloud, ['ec2', 'terminate-instances', '--instance-ids', id]).catch(() => undefined);
    }
  }, 900_000);

  it.skipIf(!tgtUp)('snapshots of an ext4 volume taken while a writer runs in the guest: each is frozen by the guest agent and fsck-clean, 10 of 10', async () => {
    expect(guest, 'the first test boots the guest').toBeDefined();
    await snapshotsUnderWriter(guest!);
  }, 900_000);

  it('euca2ools terminates it: the domain and its disks go', async () => {
    expect(guest, 'the first test boots the guest').toBeDefined();
    const id = guest!;
    await euca(cloud, 'euca-terminate-instances', [id]);
    await eventually(`${id} domain gone`, async () => (!(await libvirtDomains()).includes(id) ? true : undefined), 180_000);
    guest = undefined;
    await eventually(`${id} disks gone`, async () => (!existsSync(join(cloud.home, 'instances', id)) ? true : undefined), 60_000);
  }, 300_000);
});
