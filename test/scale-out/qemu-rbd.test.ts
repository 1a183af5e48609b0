// What EBS on RBD (SC_BACKEND=ceph-rbd; sc-rbd.test.ts, rbd-guests.test.ts) stands on: Debian 12's QEMU (qemu-block-extra's
// block-rbd) reads and writes an RBD image of the harness's Ceph as the cephx user client.mallee, limited
// to the rbd pool, and RBD snapshots + export-diff give the incremental a snapshot upload would carry.
// Needs MALLEE_TEST_CEPH_CONF (backends.sh up ceph).
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const conf = process.env.MALLEE_TEST_CEPH_CONF;
const keyring = process.env.MALLEE_TEST_CEPH_KEYRING;
const id = process.env.MALLEE_TEST_CEPH_ID ?? 'mallee';
const pool = process.env.MALLEE_TEST_CEPH_POOL ?? 'rbd';
const image = `qemu-probe-${process.pid}`;
const rbd = (...args: string[]) => run('rbd', ['-c', conf!, '--id', id, '--keyring', keyring!, ...args], { maxBuffer: 1 << 26 });
const qemuPath = `rbd:${pool}/${image}:id=${id}:keyring=${keyring}:conf=${conf}`;
const dir = mkdtempSync(join(tmpdir(), 'qemu-rbd-'));

describe.skipIf(!conf)('QEMU on Ceph RBD', () => {
  afterAll(async () => {
    await rbd('snap', 'purge', `${pool}/${image}`).catch(() => undefined);
    await rbd('rm', `${pool}/${image}`).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('QEMU writes and reads an RBD image with cephx; export-diff between snapshots carries only what changed', async () => {
    await rbd('create', '--size', '256', `${pool}/${image}`);
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 8M', qemuPath]);
    const { stdout: read } = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 8M', qemuPath]);
    expect(read).toMatch(/read 8388608\/8388608 bytes/);
    await rbd('snap', 'create', `${pool}/${image}@one`);
    // 64 scattered 4 KiB writes: 256 KiB of change spread over 64 different MiB.
    const writes = Array.from({ length: 64 }, (_, i) => ['-c', `write -P 0x${(i + 1).toString(16)} ${i * 4}M 4k`]).flat();
    await run('qemu-io', ['-f', 'raw', ...writes, qemuPath]);
    await rbd('snap', 'create', `${pool}/${image}@two`);
    await rbd('export-diff', '--from-snap', 'one', `${pool}/${image}@two`, join(dir, 'one-two.diff'));
    await rbd('export-diff', `${pool}/${image}@one`, join(dir, 'one.diff'));
    const incremental = statSync(join(dir, 'one-two.diff')).size;
    expect(statSync(join(dir, 'one.diff')).size).toBeGreaterThan(8 * 1024 * 1024);
    expect(incremental).toBeGreaterThanOrEqual(64 * 4096);
    expect(incremental).toBeLessThan(2 * 64 * 4096);
  });
});
