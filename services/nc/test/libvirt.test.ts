// The libvirt driver with real guests: the test image set (test/images) booted under QEMU/TCG through
// libvirtd. Skipped only where libvirtd, QEMU or the bindings are genuinely absent.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@mallee/config';
import type { InstanceSpec } from '@mallee/wire';
import { createLibvirtHypervisor, type LibvirtHypervisor } from '../src/hypervisors/libvirt.js';
import { LibvirtConnection } from '../src/hypervisors/libvirt-connection.js';
import { bootsUnder, chooseDomainType } from '../src/hypervisors/libvirt-probe.js';
import { parseDomainXml } from '../src/hypervisors/libvirt-domain-xml.js';
import { buildTestImages, ensureLibvirtd, imagesOut, whyLibvirtUnavailable } from './libvirt-env.js';

const run = promisify(execFile);
const log = pino({ level: process.env.MALLEE_TEST_LOG ?? 'silent' });

const skipReason = await whyLibvirtUnavailable();
if (skipReason) console.warn(`libvirt driver tests skipped: ${skipReason}`);

const homes: string[] = [];
const guests = new Set<string>();
const drivers: LibvirtHypervisor[] = [];

/** A fresh NC home (0700 from mkdtemp: the driver itself must open it to libvirt's QEMU user). */
function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'mallee-libvirt-'));
  homes.push(home);
  // The test image set, as an NC finds images until Walrus serves them: <home>/images/<id>.
  mkdirSync(join(home, 'images'));
  symlinkSync(join(imagesOut, 'root.img'), join(home, 'images', 'emi-tst00001'));
  symlinkSync(join(imagesOut, 'vmlinuz'), join(home, 'images', 'eki-tst00001'));
  symlinkSync(join(imagesOut, 'initrd.img'), join(home, 'images', 'eri-tst00001'));
  symlinkSync(join(imagesOut, 'disk.img'), join(home, 'images', 'emi-dsk00001'));
  return home;
}

async function driver(home: string): Promise<LibvirtHypervisor> {
  const config = loadConfig({ env: {}, overrides: { HYPERVISOR: 'qemu', INSTANCE_PATH: join(home, 'instances') } });
  const hv = createLibvirtHypervisor(config, home, log, { shutdownGraceMs: 20_000 });
  await hv.init();
  drivers.push(hv);
  return hv;
}

function spec(over: Partial<InstanceSpec> = {}, memoryMiB = 256, diskGiB = 1): InstanceSpec {
  const instanceId = `i-${randomBytes(4).toString('hex')}`;
  guests.add(instanceId);
  return {
    instanceId,
    reservationId: `r-${randomBytes(4).toString('hex')}`,
    ownerId: '000000000001',
    launchIndex: 0,
    imageId: 'emi-tst00001',
    imageLocation: '',
    kernelId: 'eki-tst00001',
    ramdiskId: 'eri-tst00001',
    vmType: { name: 'm1.small', cores: 1, memoryMiB, diskGiB },
    groupNames: ['default'],
    ...over,
  };
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

async function waitForConsole(hv: LibvirtHypervisor, id: string, needle: string, times = 1, timeoutMs = 90_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = (await hv.consoleOutput(id)).toString('latin1');
    if (count(text, needle) >= times) return text;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`console of ${id} did not show ${JSON.stringify(needle)} ${times}x within ${timeoutMs} ms; it has:\n${text.slice(-2000)}`);
}

/** A driver on a fresh home with one 256 MiB guest (no local disk allowance) booted. */
async function bootedGuest(): Promise<{ home: string; hv: LibvirtHypervisor; s: InstanceSpec }> {
  const home = tempHome();
  const hv = await driver(home);
  const s = spec({}, 256, 0);
  await hv.runInstance(s);
  await waitForConsole(hv, s.instanceId, `mallee: boot done ${s.instanceId}`);
  return { home, hv, s };
}

describe.skipIf(skipReason !== undefined)('libvirt driver with real guests (QEMU/TCG)', () => {
  beforeAll(async () => {
    await ensureLibvirtd();
    await buildTestImages(); // cached: a no-op when test-output/images is up to date
  }, 660_000);

  afterAll(async () => {
    // Whatever a failed test left: every guest we named is destroyed and undefined, every home removed.
    const conn = new LibvirtConnection('qemu:///system');
    await conn.open().catch(() => undefined);
    for (const id of guests) {
      await conn.destroy(id).catch(() => undefined);
      await conn.undefine(id).catch(() => undefined);
    }
    await conn.close();
    for (const hv of drivers) await hv.close().catch(() => undefined);
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  }, 120_000);

  it('boots a guest that prints its instance id, reboots it (marker twice), and terminate removes domain and disks', async () => {
    const home = tempHome();
    const hv = await driver(home);
    expect(hv.name).toBe('libvirt/qemu');
    const tag = randomBytes(4).toString('hex');
    const s = spec({ publicKey: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG key-${tag}`, userData: Buffer.from(`user-data-${tag}\nsecond line\n`).toString('base64') }, 256, 2);
    const t0 = Date.now();
    await hv.runInstance(s);
    await hv.runInstance(s); // idempotent: the same guest, not a second one
    const xml = parseDomainXml((await hv.domainXml(s.instanceId))!);
    expect(xml.metadata).toMatchObject({ instanceId: s.instanceId, imageId: 'emi-tst00001', vmTypeName: 'm1.small' });
    await waitForConsole(hv, s.instanceId, `mallee: boot done ${s.instanceId}`);
    console.info(`libvirt/qemu: runInstance → boot-done marker in ${Date.now() - t0} ms`);

    const listed = (await hv.listGuests()).filter((g) => g.instanceId === s.instanceId);
    expect(listed).toEqual([{ instanceId: s.instanceId, state: 'running', cores: 1, memoryMiB: 256 }]);

    // Eucalyptus layout: root overlay, swap, ephemeral0 sized from the type (2 GiB − 8 MiB root − 512 MiB swap), sparse.
    const dir = join(home, 'instances', s.instanceId);
    const eph = await stat(join(dir, 'ephemeral0.img'));
    expect(eph.size).toBe(2 * 1024 **3 - 8 * 1024 ** 2 - 512 * 1024 ** 2);
    expect(eph.blocks * 512).toBeLessThan(eph.size / 10);
    expect((await stat(join(dir, 'swap.img'))).size).toBe(512 * 1024 ** 2);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-U', join(dir, 'root.qcow2')])).stdout) as { format: string; 'backing-filename': string };
    expect(info.format).toBe('qcow2');
    expect(info['backing-filename']).toBe(join(home, 'libvirt', 'cache', 'emi-tst00001'));
    const text = await waitForConsole(hv, s.instanceId, 'mallee: disks ');
    // vdd: the NoCloud config drive with the instance's identity, key and user data.
    expect(text).toMatch(/mallee: disks vda vdb vdc vdd/);
    const booted = await waitForConsole(hv, s.instanceId, `mallee: boot done ${s.instanceId}`);
    expect(booted).toContain(`mallee: config drive /dev/vdd instance-id ${s.instanceId}`);
    expect(booted).toContain(`mallee: public key key-${tag}`);
    expect(booted).toContain(`mallee: user-data user-data-${tag}`);
    expect(booted).toContain(`mallee: http page served for ${s.instanceId}`);
    expect(booted).toMatch(/mallee: eth0 \d+\.\d+\.\d+\.\d+/); // a DHCP lease on the user-mode NIC
    expect(text).toMatch(/mallee: root disk \/dev\/vda: mallee test root disk/);

    const t1 = Date.now();
    await hv.rebootInstance(s.instanceId);
    await waitForConsole(hv, s.instanceId, `mallee: boot done ${s.instanceId}`, 2);
    console.info(`libvirt/qemu: reboot → second boot-done marker in ${Date.now() - t1} ms`);

    const t2 = Date.now();
    await hv.terminateInstance(s.instanceId, { force: false });
    console.info(`libvirt/qemu: graceful terminate (ACPI shutdown, undefine, delete) in ${Date.now() - t2} ms`);
    expect(await hv.domainXml(s.instanceId)).toBeUndefined();
    expect((await hv.listGuests()).map((g) => g.instanceId)).not.toContain(s.instanceId);
    expect(existsSync(dir)).toBe(false);
    await expect(hv.consoleOutput(s.instanceId)).rejects.toThrow(/no guest/);
    await hv.terminateInstance(s.instanceId, { force: true }); // already gone: nothing to do
  }, 240_000);

  it('gives a guest exactly the memory of its type: 256 MiB and 512 MiB domains, and the guests see it', async () => {
    const hv = await driver(tempHome());
    const small = spec({}, 256, 0);
    const large = spec({}, 512, 0);
    await Promise.all([hv.runInstance(small), hv.runInstance(large)]);
    const memTotalKiB = async (id: string) => {
      const text = await waitForConsole(hv, id, `mallee: boot done ${id}`);
      return Number(/mallee: MemTotal:\s+(\d+) kB/.exec(text)?.[1]);
    };
    const [smallKiB, largeKiB] = await Promise.all([memTotalKiB(small.instanceId), memTotalKiB(large.instanceId)]);
    expect(parseDomainXml((await hv.domainXml(small.instanceId))!).memoryMiB).toBe(256);
    expect(parseDomainXml((await hv.domainXml(large.instanceId))!).memoryMiB).toBe(512);
    // The kernel keeps some for itself: MemTotal is a bit below what the domain has, never above.
    expect(smallKiB).toBeGreaterThan(180 * 1024);
    expect(smallKiB).toBeLessThanOrEqual(256 * 1024);
    expect(largeKiB).toBeGreaterThan(430 * 1024);
    expect(largeKiB).toBeLessThanOrEqual(512 * 1024);
    // A type with no disk allowance gets the root overlay only (and the config drive).
    expect(await hv.consoleOutput(small.instanceId).then((b) => b.toString())).toMatch(/mallee: disks vda vdb\s*\r?\n/);
    await Promise.all([hv.terminateInstance(small.instanceId, { force: true }), hv.terminateInstance(large.instanceId, { force: true })]);
    expect(await hv.domainXml(small.instanceId)).toBeUndefined();
  }, 240_000);

  it('a restarted NC (a new driver on the same home) lists and adopts the running guest; another NC never sees it', async () => {
    const home = tempHome();
    const first = await driver(home);
    const s = spec({}, 256, 0);
    await first.runInstance(s);
    await waitForConsole(first, s.instanceId, `mallee: boot done ${s.instanceId}`);
    await first.close();

    const second = await driver(home);
    const adopted = (await second.listGuests()).find((g) => g.instanceId === s.instanceId);
    expect(adopted).toEqual({ instanceId: s.instanceId, state: 'running', cores: 1, memoryMiB: 256 });
    expect((await second.consoleOutput(s.instanceId)).toString()).toContain(`mallee: boot done ${s.instanceId}`);
    await second.runInstance(s); // a retried launch after the restart does not start a second guest

    const other = await driver(tempHome());
    expect((await other.listGuests()).map((g) => g.instanceId)).not.toContain(s.instanceId);
    await expect(other.terminateInstance(s.instanceId, { force: true })).rejects.toThrow(/no guest/);

    await second.terminateInstance(s.instanceId, { force: true });
    expect((await second.listGuests()).map((g) => g.instanceId)).not.toContain(s.instanceId);
    expect(existsSync(join(home, 'instances', s.instanceId))).toBe(false);
  }, 240_000);

  it('a guest that powers itself off is reported terminated and cleaned up', async () => {
    const { home, hv, s } = await bootedGuest();
    // The power button with no terminate in progress: the guest's acpid powers it off, as `poweroff` inside would.
    await run('virsh', ['-c', 'qemu:///system', 'shutdown', s.instanceId]);
    const deadline = Date.now() + 60_000;
    let seen: string | undefined;
    while (Date.now() < deadline && seen !== 'terminated') {
      seen = (await hv.listGuests()).find((g) => g.instanceId === s.instanceId)?.state;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(seen).toBe('terminated');
    while (Date.now() < deadline && (await hv.domainXml(s.instanceId)) !== undefined) await new Promise((r) => setTimeout(r, 250));
    expect(await hv.domainXml(s.instanceId)).toBeUndefined();
    expect(existsSync(join(home, 'instances', s.instanceId))).toBe(false);
  }, 120_000);

  it('a guest shut off while it is migrated away is the migration\'s: reported running and its files kept until the move is over', async () => {
    // The source side of a live migration after the switch-over: the domain shows shut off until libvirt undefines
    // it and migrateOut has read the console and removed the directory. Two libvirtds are the e2e suite's
    // (test/e2e/migrate.test.ts); here the switch-over's shut-off is `virsh destroy` while the guest is marked leaving.
    const { home, hv, s } = await bootedGuest();
    hv.migration.leaving.add(s.instanceId);
    await run('virsh', ['-c', 'qemu:///system', 'destroy', s.instanceId]);
    for (let i = 0; i < 4; i++) {
      expect((await hv.listGuests()).find((g) => g.instanceId === s.instanceId)?.state).toBe('running');
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await hv.domainXml(s.instanceId)).toBeDefined();
    expect(count((await hv.consoleOutput(s.instanceId)).toString('latin1'), `mallee: boot done ${s.instanceId}`)).toBe(1);
    // No longer leaving (a migration that failed after the guest stopped): a shut-off domain is cleaned up as ever.
    hv.migration.leaving.delete(s.instanceId);
    expect((await hv.listGuests()).find((g) => g.instanceId === s.instanceId)?.state).toBe('terminated');
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (await hv.domainXml(s.instanceId)) !== undefined) await new Promise((r) => setTimeout(r, 250));
    expect(await hv.domainXml(s.instanceId)).toBeUndefined();
    expect(existsSync(join(home, 'instances', s.instanceId))).toBe(false);
  }, 120_000);

  it('boots a whole-disk image without kernel or ramdisk; the guest learns its id from the config drive', async () => {
    const hv = await driver(tempHome());
    const s = spec({ imageId: 'emi-dsk00001' }, 256, 0);
    delete s.kernelId;
    delete s.ramdiskId;
    // Given as a file:// imageLocation: the other way an NC finds an image until Walrus serves them.
    s.imageLocation = `file://${join(imagesOut, 'disk.img')}`;
    await hv.runInstance(s);
    const xml = (await hv.domainXml(s.instanceId))!;
    expect(xml).not.toContain('<kernel>');
    expect(xml).toMatch(/<boot dev=['"]hd['"]\/>/);
    const text = await waitForConsole(hv, s.instanceId, `mallee: boot done ${s.instanceId}`);
    expect(text).not.toContain('mallee.instance_id=');
    expect(text).toContain(`mallee: config drive /dev/vdb instance-id ${s.instanceId}`);
    await hv.terminateInstance(s.instanceId, { force: true });
    expect(await hv.domainXml(s.instanceId)).toBeUndefined();
  }, 180_000);

  it('refuses a launch whose image is not on the node and leaves nothing behind', async () => {
    const home = tempHome();
    const hv = await driver(home);
    const s = spec({ imageId: 'emi-missing1' });
    await expect(hv.runInstance(s)).rejects.toThrow(/image emi-missing1 is not on this node/);
    expect(await hv.domainXml(s.instanceId)).toBeUndefined();
    expect(existsSync(join(home, 'instances', s.instanceId))).toBe(false);
  });

  it('the KVM probe recognises a booting kernel (shown under TCG) and remembers its answer for the host', async () => {
    const conn = new LibvirtConnection('qemu:///system');
    await conn.open();
    try {
      const home = tempHome();
      chmodSync(home, 0o755); // what the driver's init does for its own directories
      const tcg = await bootsUnder(conn, 'qemu', join(imagesOut, 'vmlinuz'), join(home, 'probe-tcg'), 60_000);
      expect(tcg.booted).toBe(true);
      const stateDir = join(home, 'libvirt');
      const hostStateDir = join(home, 'host');
      const first = await chooseDomainType({ conn, stateDir, hostStateDir, log, timeoutMs: 15_000, kernel: join(imagesOut, 'vmlinuz') });
      console.info(`KVM probe on this host: ${first.type} (${first.reason})`);
      expect(['kvm', 'qemu']).toContain(first.type);
      const t = Date.now();
      const again = await chooseDomainType({ conn, stateDir, hostStateDir, log, kernel: join(imagesOut, 'vmlinuz') });
      expect(again.type).toBe(first.type);
      expect(again.reason).toMatch(/probed/);
      // Another NC home on the same host takes the host's answer instead of probing again.
      const other = await chooseDomainType({ conn, stateDir: join(home, 'other-nc'), hostStateDir, log, kernel: join(imagesOut, 'vmlinuz') });
      expect(other.type).toBe(first.type);
      expect(other.reason).toMatch(/for this host/);
      expect(Date.now() - t).toBeLessThan(1000);
      expect((await chooseDomainType({ conn, stateDir, log, forced: 'kvm' })).type).toBe('kvm');
    } finally {
      await conn.close();
    }
  }, 180_000);
});
