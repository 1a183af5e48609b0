// Real guests (libvirt, QEMU/TCG here) through the all-in-one: `mallee up --hypervisor libvirt`
// registers the test image set, and awscli and euca2ools run it, read its console, reboot and
// terminate it — and the libvirt domain and its disks are gone afterwards.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, eventually, libvirtDomains, repoRoot, runTool, startCloud, type Cloud } from './helpers/cloud.js';

// The suite needs libvirtd and QEMU; test/run-all.sh installs and starts them (deploy/lib.sh ensure_libvirt).
const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!libvirtHere) console.warn('guests.test.ts skipped: libvirtd is not running (run test/run-all.sh, which starts it)');

let cloud: Cloud;
let image: { emi: string; eki: string; eri: string };
beforeAll(async () => {
  if (!libvirtHere) return;
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1 });
  image = JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as typeof image;
}, 600_000);
afterAll(async () => {
  await cloud?.stop();
}, 120_000);

async function aws(args: string[]): Promise<Record<string, unknown>> {
  const r = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, '--output', 'json', ...args], clientEnv(cloud.env));
  if (r.code !== 0) throw new Error(`aws ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
}

async function euca(cmd: string, args: string[]): Promise<string> {
  const r = await runTool(join(repoRoot, '../shared/tools/euca'), [cmd, ...args], clientEnv(cloud.env));
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout;
}

const consoleOf = async (id: string) => String((await aws(['ec2', 'get-console-output', '--instance-id', id])).Output ?? '');
const markers = (text: string, id: string) => text.split('\n').filter((l) => l.includes(`mallee: boot done ${id}`)).length;

describe.skipIf(!libvirtHere)('real guests in the all-in-one cloud', () => {
  it('awscli runs the test image: running, console shows its own id, reboot shows it twice, a 256 MiB type is what the guest sees, terminate removes domain and disks', async () => {
    const run = await aws(['ec2', 'run-instances', '--image-id', image.emi, '--instance-type', 't1.micro']);
    const inst = (run.Instances as { InstanceId: string; KernelId?: string; RamdiskId?: string }[])[0]!;
    const id = inst.InstanceId;
    expect(inst.KernelId).toBe(image.eki);
    expect(inst.RamdiskId).toBe(image.eri);
    await eventually(`${id} running with its boot-done marker`, async () => ((await consoleOf(id)).includes(`mallee: boot done ${id}`) ? true : undefined), 180_000);
    const described = await aws(['ec2', 'describe-instances', '--instance-ids', id]);
    const state = (described.Reservations as { Instances: { State: { Name: string } }[] }[])[0]!.Instances[0]!.State.Name;
    expect(state).toBe('running');

    // t1.micro is 256 MiB: the kernel reports a little less than that as MemTotal.
    const mem = /mallee: MemTotal:\s+(\d+) kB/.exec(await consoleOf(id));
    expect(mem).not.toBeNull();
    expect(Number(mem![1])).toBeGreaterThan(160 * 1024);
    expect(Number(mem![1])).toBeLessThanOrEqual(256 * 1024);

    await aws(['ec2', 'reboot-instances', '--instance-ids', id]);
    await eventually(`${id} boot-done marker twice after reboot`, async () => (markers(await consoleOf(id), id) >= 2 ? true : undefined), 180_000);
    expect(await libvirtDomains()).toContain(id);

    await aws(['ec2', 'terminate-instances', '--instance-ids', id]);
    await eventually(`${id} domain gone`, async () => (!(await libvirtDomains()).includes(id) ? true : undefined), 120_000);
    await eventually(`${id} disks gone`, async () => (!existsSync(join(cloud.home, 'instances', id)) ? true : undefined), 60_000);
    await eventually(`${id} terminated`, async () => {
      const d = await aws(['ec2', 'describe-instances', '--instance-ids', id]);
      return JSON.stringify(d).includes('terminated') ? true : undefined;
    }, 60_000);
  }, 600_000);

  it('euca2ools runs the test image, reads the boot-done marker with euca-get-console-output and terminates it', async () => {
    const out = await euca('euca-run-instances', ['-t', 't1.micro', image.emi]);
    const id = /INSTANCE\s+(i-[0-9a-f]+)/.exec(out)?.[1];
    expect(id).toBeDefined();
    await eventually(`${id} boot-done marker via euca2ools`, async () => ((await euca('euca-get-console-output', [id!])).includes(`mallee: boot done ${id}`) ? true : undefined), 180_000);
    expect(await euca('euca-describe-instances', [id!])).toMatch(/running/);
    await euca('euca-terminate-instances', [id!]);
    await eventually(`${id} domain gone`, async () => (!(await libvirtDomains()).includes(id!) ? true : undefined), 120_000);
  }, 600_000);
});
