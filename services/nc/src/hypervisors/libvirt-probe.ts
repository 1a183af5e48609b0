// Does KVM really work here? /dev/kvm can exist while guests hang under it (nested or restricted
// hosts), so the probe boots a kernel under domain type kvm and watches its console; anything but a
// kernel that gets as far as looking for its root file system means TCG. The answer is remembered,
// per NC home and for the whole host.
import { constants } from 'node:fs';
import { access, copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { buildDomainXml, type DomainType } from './libvirt-domain-xml.js';
import type { LibvirtConnection } from './libvirt-connection.js';

export interface ProbeResult {
  type: DomainType;
  reason: string;
  /** ms the probe guest took to show a booted kernel (when it did). */
  bootMs?: number;
}

/** A kernel line printed once the kernel has initialised and looks for its root or init. */
const KERNEL_UP = /Kernel panic|VFS: |Run \/init|Freeing unused kernel/;

/** The newest host kernel in /boot (any bootable x86_64 bzImage does). */
export async function findProbeKernel(bootDir = '/boot'): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(bootDir);
  } catch {
    return undefined;
  }
  const kernels = names.filter((n) => n.startsWith('vmlinuz-')).sort().reverse();
  for (const k of kernels) {
    try {
      await access(join(bootDir, k), constants.R_OK);
      return join(bootDir, k);
    } catch {
      // unreadable: try the next
    }
  }
  return undefined;
}

/**
 * Boot `kernel` (no initrd, no disk) under `type` and report whether it came up within `timeoutMs`.
 * Works in `dir` (removed afterwards); the domain is transient in effect: destroyed and undefined.
 */
export async function bootsUnder(
  conn: LibvirtConnection,
  type: DomainType,
  kernel: string,
  dir: string,
  timeoutMs: number,
): Promise<{ booted: boolean; ms: number; console: string }> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  // A private copy: libvirt relabels the files a guest uses, and the host's /boot is not ours to touch.
  const kcopy = join(dir, 'vmlinuz');
  await copyFile(kernel, kcopy);
  const consoleLog = join(dir, 'console.log');
  const name = `mallee-probe-${type}-${process.pid}-${Date.now().toString(36)}`;
  const xml = buildDomainXml({
    name,
    type,
    memoryMiB: 128,
    cores: 1,
    kernel: kcopy,
    cmdline: 'console=ttyS0 panic=0',
    disks: [],
    consoleLog,
    network: { kind: 'none' },
  });
  const started = Date.now();
  let booted = false;
  let text = '';
  try {
    await conn.defineAndStart(xml);
    while (Date.now() - started < timeoutMs) {
      text = await readFile(consoleLog, 'latin1').catch(() => '');
      if (KERNEL_UP.test(text)) {
        booted = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await conn.destroy(name).catch(() => undefined);
    await conn.undefine(name).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return { booted, ms: Date.now() - started, console: text };
}

interface CachedProbe extends ProbeResult {
  key: string;
  at: string;
}

/** What invalidates a remembered answer: another host kernel, another QEMU, /dev/kvm appearing or going. */
async function probeKey(): Promise<string> {
  const qemu = await stat('/usr/bin/qemu-system-x86_64').then((s) => String(s.mtimeMs), () => 'no-qemu');
  const kvm = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(() => 'kvm', () => 'no-kvm');
  return `${release()}|${qemu}|${kvm}`;
}

/** Where a host-wide answer is kept, shared by every NC home on the host (MALLEE_HOST_CACHE, default /var/cache/mallee). */
export function defaultHostStateDir(): string {
  return process.env.MALLEE_HOST_CACHE || '/var/cache/mallee';
}

async function readCached(file: string, key: string): Promise<CachedProbe | undefined> {
  try {
    const cached = JSON.parse(await readFile(file, 'utf8')) as CachedProbe;
    return cached.key === key ? cached : undefined;
  } catch {
    return undefined; // no answer yet
  }
}

async function writeCached(dir: string, entry: CachedProbe): Promise<void> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'kvm-probe.json');
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(entry, null, 2) + '\n');
  await rename(tmp, file);
}

/**
 * Pick the domain type: `forced` (HYPERVISOR=kvm|qemu) wins; else a remembered answer for this host
 * (the NC's own, else the host-wide one another NC home left); else boot a probe guest under kvm.
 * Failures of the probe itself mean TCG, never an NC that cannot start.
 */
export async function chooseDomainType(opts: {
  conn: LibvirtConnection;
  forced?: DomainType;
  stateDir: string;
  /** Host-wide cache directory (default defaultHostStateDir()); unwritable is fine. */
  hostStateDir?: string;
  log: Logger;
  timeoutMs?: number;
  kernel?: string;
}): Promise<ProbeResult> {
  const { conn, forced, stateDir, log } = opts;
  if (forced) return { type: forced, reason: `HYPERVISOR forces ${forced}` };
  const key = await probeKey();
  const hostDir = opts.hostStateDir ?? defaultHostStateDir();
  const own = await readCached(join(stateDir, 'kvm-probe.json'), key);
  if (own) return { type: own.type, reason: `${own.reason} (probed ${own.at})` };
  // The probe costs up to its timeout (20 s where KVM hangs): one NC home on the host pays it, not each.
  const host = await readCached(join(hostDir, 'kvm-probe.json'), key);
  if (host) {
    await writeCached(stateDir, host);
    return { type: host.type, reason: `${host.reason} (probed ${host.at} for this host)` };
  }
  const result = await probe(conn, stateDir, opts.timeoutMs ?? 20_000, opts.kernel, log);
  const entry: CachedProbe = { ...result, key, at: new Date().toISOString() };
  await writeCached(stateDir, entry);
  await writeCached(hostDir, entry).catch((err: unknown) => log.debug({ dir: hostDir, err: (err as Error).message }, 'cannot keep the KVM probe answer for the host'));
  return result;
}

async function probe(conn: LibvirtConnection, stateDir: string, timeoutMs: number, kernel: string | undefined, log: Logger): Promise<ProbeResult> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { type: 'qemu', reason: '/dev/kvm is missing or not usable' };
  }
  const k = kernel ?? (await findProbeKernel());
  if (!k) return { type: 'qemu', reason: 'no kernel in /boot to boot a KVM probe guest with' };
  await removeStaleProbes(conn, log);
  log.info({ kernel: k, timeoutMs }, 'probing KVM: booting a probe guest under domain type kvm');
  try {
    const r = await bootsUnder(conn, 'kvm', k, join(stateDir, 'probe'), timeoutMs);
    if (r.booted) return { type: 'kvm', reason: `a probe guest booted under KVM in ${r.ms} ms`, bootMs: r.ms };
    return { type: 'qemu', reason: `a probe guest under KVM showed no booted kernel within ${timeoutMs} ms (console: ${r.console.length} bytes)` };
  } catch (err) {
    return { type: 'qemu', reason: `a probe guest could not start under KVM: ${(err as Error).message}` };
  }
}

/** Probe guests left by an NC that died mid-probe (their pid is gone) are destroyed and undefined. */
async function removeStaleProbes(conn: LibvirtConnection, log: Logger): Promise<void> {
  for (const d of await conn.listDomains()) {
    const m = /^mallee-probe-(?:kvm|qemu)-(\d+)-/.exec(d.name);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
      continue; // its NC is still probing
    } catch {
      // gone
    }
    log.warn({ domain: d.name }, 'removing a probe guest left behind by an earlier node controller');
    await conn.destroy(d.name).catch(() => undefined);
    await conn.undefine(d.name).catch(() => undefined);
  }
}
