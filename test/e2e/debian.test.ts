// The real Debian 12 guest (test/images/build-debian-image.sh, registered by `mallee test-image --debian`)
// under libvirt (QEMU/TCG here): cloud-init takes the key pair and the user data from the node's NoCloud
// config drive, qemu-guest-agent answers libvirt through the domain's guest-agent channel, and the guest
// reports all of it on its serial console. awscli launches, boto3 reads, euca2ools terminates.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, libvirtDomains, runTool, startCloud, type Cloud } from './helpers/cloud.js';
import { awsCli, boto3, consoleShows, euca, instancesIn, virsh } from './helpers/clients.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!libvirtHere) console.warn('debian.test.ts skipped: libvirtd is not running (run test/run-all.sh, which starts it)');

let cloud: Cloud;
let image: { emi: string; eki: string; eri: string };
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

describe.skipIf(!libvirtHere)('the Debian 12 guest', () => {
  it('boots under libvirt: cloud-init installs the key pair and runs the user-data script, the guest agent answers guest-ping, terminate removes it', async () => {
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
    let gone = false;
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

      await euca(cloud, 'euca-terminate-instances', [id]);
      await eventually(`${id} domain gone`, async () => (!(await libvirtDomains()).includes(id) ? true : undefined), 180_000);
      gone = true;
      await eventually(`${id} disks gone`, async () => (!existsSync(join(cloud.home, 'instances', id)) ? true : undefined), 60_000);
    } finally {
      if (!gone) await awsCli(cloud, ['ec2', 'terminate-instances', '--instance-ids', id]).catch(() => undefined);
    }
  }, 900_000);
});
