// EBS on Ceph RBD with real guests (libvirt, QEMU/TCG) on two node controllers: the cloud's SC runs with
// SC_BACKEND=ceph-rbd on the harness's throwaway Ceph; a 1 GiB volume attached to a running instance on
// the first node is a libvirt network disk protocol='rbd' (librbd in QEMU, a ceph secret in libvirt, no
// iSCSI target anywhere); the guest makes a filesystem and writes 8 MiB; detached (the secret goes with
// the attachment) and attached to an instance on the second node, the guest reads the same checksum.
// Needs libvirtd and MALLEE_TEST_CEPH_* (backends.sh up ceph).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startCloud, type Cloud } from '../e2e/helpers/cloud.js';
import { clients, VOLUME_AGENT } from '../e2e/helpers/ebs.js';
import { addNode, homeOf, waitNodesEnabled, type ExtraNode } from '../e2e/helpers/nodes.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
const conf = process.env.MALLEE_TEST_CEPH_CONF;
const keyring = process.env.MALLEE_TEST_CEPH_KEYRING;
const user = process.env.MALLEE_TEST_CEPH_ID ?? 'mallee';
const pool = process.env.MALLEE_TEST_CEPH_POOL ?? 'rbd';
const rbd = (...args: string[]) => execFileSync('rbd', ['-c', conf!, '--id', user, '--keyring', keyring!, ...args], { encoding: 'utf8' });
const virsh = (...args: string[]) => execFileSync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8' });

let cloud: Cloud;
let node2: ExtraNode;
const { aws } = clients(() => cloud);
let image: string;
let userData: string;
const launched: string[] = [];

beforeAll(async () => {
  if (!libvirtHere || !conf) return;
  // One t1.micro per node: the two instances land on different nodes.
  cloud = await startCloud({
    hypervisor: 'libvirt', pollInterval: 1,
    conf: { HYPERVISOR: 'qemu', MAX_CORES: 1, SC_BACKEND: 'ceph-rbd', SC_CEPH_CONF: conf, SC_CEPH_KEYRING: keyring!, SC_CEPH_USER: user, SC_CEPH_POOL: pool },
  });
  image = (JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as { emi: string }).emi;
  userData = join(cloud.home, 'volume-agent.sh');
  writeFileSync(userData, VOLUME_AGENT);
  node2 = await addNode(cloud, { HYPERVISOR: 'qemu', MAX_CORES: 1, POLL_INTERVAL: 1 });
  await waitNodesEnabled(cloud, 2);
}, 600_000);

afterAll(async () => {
  if (cloud && launched.length) await aws(['terminate-instances', '--instance-ids', ...launched]).catch(() => undefined);
  await node2?.remove();
  await cloud?.stop();
}, 300_000);

const consoleOf = async (id: string) => String((await aws(['get-console-output', '--instance-id', id])).Output ?? '');
const volState = async (id: string) => ((await aws(['describe-volumes', '--volume-ids', id])).Volumes as { State: string }[])[0]?.State;
const waitVolume = (id: string, state: string) => eventually(`${id} ${state}`, async () => ((await volState(id)) === state ? true : undefined), 180_000);
const agentSays = (id: string, vol: string, n: number) => eventually(`${id}: agent done with ${vol} (${n})`, async () => {
  const out = await consoleOf(id);
  return out.includes(`mallee-vol: done ${vol} ${n}`) ? out : undefined;
}, 300_000);
const sum = (out: string, vol: string, verb: 'read' | 'wrote') => new RegExp(`mallee-vol: ${verb} ${vol} data ([0-9a-f]{32})`).exec(out)?.[1];
/** The libvirt secrets (UUID) whose usage is a ceph one. */
const cephSecrets = () => virsh('secret-list').split('\n').filter((l) => /\sceph\s/.test(l)).map((l) => l.trim().split(/\s+/)[0]!);

describe.skipIf(!libvirtHere || !conf)('EBS on Ceph RBD in real guests on two nodes', () => {
  it('a volume on RBD attached to a running guest keeps its data through detach and attach to a guest on another node', async () => {
    const vol = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    await waitVolume(vol, 'available');
    // The image carries the SC's prefix (several SCs may share a pool): sc-<hex>.<volume id>.
    const img = rbd('ls', pool).split('\n').find((n) => n.endsWith(`.${vol}`));
    expect(img).toMatch(new RegExp(`^sc-[0-9a-f]+\\.${vol}$`));

    const run = await aws(['run-instances', '--image-id', image, '--instance-type', 't1.micro', '--count', '2', '--user-data', `file://${userData}`]);
    const ids = (run.Instances as { InstanceId: string }[]).map((i) => i.InstanceId);
    launched.push(...ids);
    for (const id of ids) {
      await eventually(`${id} booted with the agent`, async () => {
        const out = await consoleOf(id);
        return out.includes('mallee-vol: agent running') && out.includes(`mallee: boot done ${id}`) ? true : undefined;
      }, 420_000);
    }
    const a = ids.find((id) => homeOf(id, [cloud.home, node2.home]) === cloud.home)!;
    const b = ids.find((id) => homeOf(id, [cloud.home, node2.home]) === node2.home)!;
    expect(a).toBeDefined();
    expect(b).toBeDefined();
    const secretsBefore = new Set(cephSecrets());

    // On the first node: an rbd network disk with a ceph secret, no iSCSI.
    await aws(['attach-volume', '--volume-id', vol, '--instance-id', a, '--device', '/dev/sdf']);
    const wrote = sum(await agentSays(a, vol, 1), vol, 'wrote');
    expect(wrote).toMatch(/^[0-9a-f]{32}$/);
    const xml = virsh('dumpxml', a);
    expect(xml).toMatch(new RegExp(`<source protocol='rbd' name='${pool}/${img!.replace(/\./g, '\\.')}'`));
    expect(xml).toContain(`<auth username='${user}'>`);
    expect(xml).not.toContain("protocol='iscsi'");
    const added = cephSecrets().filter((s) => !secretsBefore.has(s));
    expect(added).toHaveLength(1);
    // (The secret is private: libvirt does not show its value; the guest's write through it is the proof of the key.)
    await aws(['detach-volume', '--volume-id', vol]);
    await waitVolume(vol, 'available');
    expect(virsh('dumpxml', a)).not.toContain(img!);
    expect(cephSecrets().filter((s) => !secretsBefore.has(s))).toEqual([]);

    // On the second node: the guest there reads what the first wrote.
    await aws(['attach-volume', '--volume-id', vol, '--instance-id', b, '--device', '/dev/sdf']);
    expect(sum(await agentSays(b, vol, 1), vol, 'read')).toBe(wrote);
    expect(virsh('dumpxml', b)).toMatch(/<source protocol='rbd'/);
    await aws(['detach-volume', '--volume-id', vol]);
    await waitVolume(vol, 'available');
    expect(cephSecrets().filter((s) => !secretsBefore.has(s))).toEqual([]);

    await aws(['delete-volume', '--volume-id', vol]);
    await eventually(`${img} removed from the pool`, async () => (rbd('ls', pool).split('\n').includes(img!) ? undefined : true), 120_000);
  });
});
