// What the real-guest tests need from the host: libvirtd and QEMU (skip, saying why, when absent),
// running daemons, and the test image set (built once, cached in test-output/images).
import { execFile, execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadBindings } from '../src/hypervisors/libvirt-connection.js';

const run = promisify(execFile);
export const repo = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const imagesOut = join(repo, 'test-output', 'images');

function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why real guests cannot run here, or undefined when they can. */
export async function whyLibvirtUnavailable(): Promise<string | undefined> {
  for (const cmd of ['libvirtd', 'virtlogd', 'virsh', 'qemu-system-x86_64', 'qemu-img']) if (!onPath(cmd)) return `${cmd} is not installed`;
  try {
    await loadBindings();
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

function running(name: string): boolean {
  try {
    execFileSync('pgrep', ['-x', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Start virtlogd and libvirtd when they are not running (no systemd here). They are left running:
 * they are the host's daemons, and other test files may be using them at the same moment.
 */
export async function ensureLibvirtd(): Promise<void> {
  for (const daemon of ['virtlogd', 'libvirtd']) {
    if (running(daemon)) continue;
    // Another test file may start it at the same moment: only a daemon still not running is an error.
    await run(daemon, ['-d']).catch((err: unknown) => {
      if (!running(daemon)) throw err;
    });
  }
  for (let i = 0; i < 50; i++) {
    try {
      await run('virsh', ['-c', 'qemu:///system', 'version'], { timeout: 5000 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error('libvirtd did not answer on qemu:///system');
}

/** Build (or find up to date) the test image set. */
export async function buildTestImages(): Promise<void> {
  await run('bash', [join(repo, 'test/images/build-test-image.sh'), imagesOut], { timeout: 600_000 });
}
