// Instance types are enforced on real guests (libvirt, QEMU/TCG here): the cloud admin resizes
// m1.small with euca2ools, and the next m1.small's libvirt domain and the guest's own MemTotal
// follow it; resetting the type gives the next one the default 512 MiB again.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, libvirtDomains, startCloud, type Cloud } from './helpers/cloud.js';
import { awsCli, consoleShows, euca, instancesIn, terminateAndWaitGone, virsh } from './helpers/clients.js';

// The suite needs libvirtd and QEMU; test/run-all.sh installs and starts them (deploy/lib.sh ensure_libvirt).
const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!libvirtHere) console.warn('instance-types.test.ts skipped: libvirtd is not running (run test/run-all.sh, which starts it)');

let cloud: Cloud;
let image: { emi: string };
beforeAll(async () => {
  if (!libvirtHere) return;
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1 });
  image = JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as typeof image;
}, 600_000);
afterAll(async () => {
  await cloud?.stop();
}, 120_000);

async function runSmall(): Promise<string> {
  return instancesIn(await awsCli(cloud, ['ec2', 'run-instances', '--image-id', image.emi, '--instance-type', 'm1.small']))[0]!.InstanceId;
}

/** The <memory unit='KiB'> of the instance's libvirt domain, once the domain exists. */
async function domainMemoryKiB(id: string): Promise<number> {
  return eventually(`${id} libvirt domain`, async () => {
    const xml = await virsh(['dumpxml', id]).catch(() => undefined);
    if (xml === undefined) return undefined;
    const m = /<memory unit='KiB'>(\d+)<\/memory>/.exec(xml);
    if (!m) throw new Error(`no <memory unit='KiB'> in the domain XML of ${id}:\n${xml}`);
    return Number(m[1]);
  }, 120_000);
}

describe.skipIf(!libvirtHere)('instance types on real guests', () => {
  it('euca-modify-instance-type -m 256 m1.small: the next m1.small has a 262144 KiB domain and the guest sees under 256 MiB; after --reset the next one has 524288 KiB; all domains gone after terminate', async () => {
    expect(await euca(cloud, 'euca-modify-instance-type', ['-m', '256', 'm1.small'])).toMatch(/INSTANCETYPE\s+m1\.small\s+\d+\s+256\b/);
    const small = await runSmall();
    const launched = [small];
    try {
      expect(await domainMemoryKiB(small)).toBe(262_144);
      const text = await consoleShows(cloud, small, `mallee: boot done ${small}`, 180_000);
      const mem = /mallee: MemTotal:\s+(\d+) kB/.exec(text);
      expect(mem, `no MemTotal line on the console of ${small}`).not.toBeNull();
      expect(Number(mem![1])).toBeLessThan(256 * 1024);
      expect(Number(mem![1])).toBeGreaterThan(160 * 1024);

      expect(await euca(cloud, 'euca-modify-instance-type', ['--reset', 'm1.small'])).toMatch(/INSTANCETYPE\s+m1\.small\s+\d+\s+512\b/);
      const reset = await runSmall();
      launched.push(reset);
      expect(await domainMemoryKiB(reset)).toBe(524_288);
    } finally {
      await terminateAndWaitGone(cloud, launched, 120_000);
    }
    const left = await libvirtDomains();
    for (const id of launched) expect(left).not.toContain(id);
  }, 420_000);
});
