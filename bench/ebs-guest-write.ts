// Benchmark (not a test): EBS volume throughput inside a real guest (QEMU/TCG here), file backend over
// tgtd iSCSI against Ceph RBD, in the same run, each next to what its storage does without a guest.
// Writes bench/results/ebs-guest-write.md.
//   - guest: an all-in-one cloud per backend (`mallee up`, SC_BACKEND=file, then SC_BACKEND=ceph-rbd on the
//     throwaway Ceph); one t1.micro whose user data, once a 1 GiB volume is attached, writes MB MiB of random
//     data (made beforehand in its RAM) to the raw device with O_DIRECT and reads it back with O_DIRECT, RUNS
//     times at fresh offsets, timing each with the guest's /proc/uptime (10 ms). The guest's path: virtio-blk →
//     QEMU's iSCSI initiator → tgtd → the sparse file, or virtio-blk → librbd → the OSD.
//   - without a guest (the limit of each path's storage, same run, same sizes): `dd oflag=direct conv=fsync` into
//     a file on the SC's disk, and `rbd bench --io-type write/read` (1 MiB, one thread, sequential) on an image
//     of the same pool.
// Needs libvirtd, tgtd and the throwaway Ceph: eval "$(test/scale-out/backends.sh up ceph)"; npm run bench -- ebs-guest-write
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCloud, type Cloud } from '../test/e2e/helpers/cloud.js';
import { clients, tgtHere } from '../test/e2e/helpers/ebs.js';
import { machineFacts, percentile, until, writeResult } from './lib.js';

const MB = Number(process.env.MALLEE_BENCH_GUEST_WRITE_MB ?? 32);
const RUNS = Number(process.env.MALLEE_BENCH_GUEST_WRITE_RUNS ?? 5);
const conf = process.env.MALLEE_TEST_CEPH_CONF;
const keyring = process.env.MALLEE_TEST_CEPH_KEYRING ?? '';
const user = process.env.MALLEE_TEST_CEPH_ID ?? 'mallee';
const pool = process.env.MALLEE_TEST_CEPH_POOL ?? 'rbd';
const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!conf || !libvirtHere || !tgtHere()) {
  console.error('ebs-guest-write bench: needs libvirtd, tgtd and the throwaway Ceph (eval "$(test/scale-out/backends.sh up ceph)"); skipped');
  process.exit(0);
}

/** User data: for the first volume that appears, RUNS × (write MB MiB with O_DIRECT, read them back with O_DIRECT). */
const AGENT = `#!/bin/sh
dd if=/dev/urandom of=/run/rnd bs=1M count=${MB} 2>/dev/null
echo "mallee-bw: ready"
up() { cut -d" " -f1 /proc/uptime; }
while :; do
  for s in /sys/block/vd*/serial; do
    ser=$(cat $s 2>/dev/null); case "$ser" in vol-*) ;; *) continue ;; esac
    [ -e /run/done-$ser ] && continue; : > /run/done-$ser
    dev=$(basename $(dirname $s))
    for r in $(seq ${RUNS}); do
      off=$(( (r - 1) * ${MB} ))
      a=$(up); dd if=/run/rnd of=/dev/$dev bs=1M count=${MB} seek=$off oflag=direct 2>/dev/null; b=$(up)
      echo "mallee-bw: $ser write $r $a $b"
      a=$(up); dd if=/dev/$dev of=/dev/null bs=1M count=${MB} skip=$off iflag=direct 2>/dev/null; b=$(up)
      echo "mallee-bw: $ser read $r $a $b"
    done
    echo "mallee-bw: $ser done"
  done
  usleep 200000
done
`;

interface GuestResult { write: number[]; read: number[] }

async function inGuest(backend: 'file' | 'ceph-rbd'): Promise<GuestResult> {
  const rbd: Record<string, string> = backend === 'ceph-rbd' ? { SC_BACKEND: 'ceph-rbd', SC_CEPH_CONF: conf!, SC_CEPH_KEYRING: keyring, SC_CEPH_USER: user, SC_CEPH_POOL: pool } : {};
  let cloud: Cloud | undefined;
  const { aws } = clients(() => cloud!);
  const launched: string[] = [];
  let volumeId = '';
  try {
    cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1, conf: { HYPERVISOR: 'qemu', ...rbd } });
    const image = JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as { emi: string };
    const userData = join(cloud.home, 'write-agent.sh');
    writeFileSync(userData, AGENT);
    const run = await aws(['run-instances', '--image-id', image.emi, '--instance-type', 't1.micro', '--user-data', `file://${userData}`]);
    const id = (run.Instances as { InstanceId: string }[])[0]!.InstanceId;
    launched.push(id);
    const consoleOf = async () => String((await aws(['get-console-output', '--instance-id', id])).Output ?? '');
    await until(`${id} ready`, async () => ((await consoleOf()).includes('mallee-bw: ready') ? true : undefined), 600_000, 1000);
    volumeId = String((await aws(['create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
    await until(`${volumeId} available`, async () => (((await aws(['describe-volumes', '--volume-ids', volumeId])).Volumes as { State: string }[])[0]?.State === 'available' ? true : undefined), 180_000, 500);
    await aws(['attach-volume', '--volume-id', volumeId, '--instance-id', id, '--device', '/dev/sdf']);
    const out = await until(`${backend}: the guest done with ${volumeId}`, async () => {
      const o = await consoleOf();
      return o.includes(`mallee-bw: ${volumeId} done`) ? o : undefined;
    }, 1_200_000, 2000);
    const rate = (verb: 'write' | 'read') => [...out.matchAll(new RegExp(`mallee-bw: ${volumeId} ${verb} \\d+ ([\\d.]+) ([\\d.]+)`, 'g'))].map((m) => MB / (Number(m[2]) - Number(m[1])));
    const r = { write: rate('write'), read: rate('read') };
    console.log(`${backend}: in the guest, MiB/s write ${r.write.map((x) => x.toFixed(1)).join(' ')}, read ${r.read.map((x) => x.toFixed(1)).join(' ')}`);
    return r;
  } finally {
    if (cloud) {
      if (volumeId) {
        await aws(['detach-volume', '--volume-id', volumeId, '--force']).catch(() => undefined);
        await until('the volume detached', async () => (((await aws(['describe-volumes', '--volume-ids', volumeId])).Volumes as { State: string }[])[0]?.State === 'available' ? true : undefined), 120_000, 500).catch(() => undefined);
        await aws(['delete-volume', '--volume-id', volumeId]).catch(() => undefined);
      }
      if (launched.length) await aws(['terminate-instances', '--instance-ids', ...launched]).catch(() => undefined);
      await cloud.stop();
    }
  }
}

/** The storage without a guest: dd with O_DIRECT into a file on the disk the file backend uses. */
function fileLimit(): GuestResult {
  const dir = mkdtempSync(join(tmpdir(), 'mallee-bench-gw-'));
  const src = join(dir, 'rnd');
  writeFileSync(src, randomBytes(MB * 1024 * 1024));
  const write: number[] = [];
  const read: number[] = [];
  try {
    for (let r = 0; r < RUNS; r++) {
      const dst = join(dir, `vol-${r}`);
      let t = performance.now();
      execFileSync('dd', [`if=${src}`, `of=${dst}`, 'bs=1M', `count=${MB}`, 'oflag=direct', 'conv=fsync'], { stdio: 'ignore' });
      write.push(MB / ((performance.now() - t) / 1000));
      t = performance.now();
      execFileSync('dd', [`if=${dst}`, 'of=/dev/null', 'bs=1M', `count=${MB}`, 'iflag=direct'], { stdio: 'ignore' });
      read.push(MB / ((performance.now() - t) / 1000));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { write, read };
}

/** The pool without a guest: rbd bench, 1 MiB sequential, one thread (as the guest's dd). */
function rbdLimit(): GuestResult {
  const rbd = (...args: string[]) => execFileSync('rbd', ['-c', conf!, '--id', user, '--keyring', keyring, ...args], { encoding: 'utf8' });
  const image = `${pool}/mallee-bench-gw-${process.pid}`;
  rbd('create', '--size', '1G', image);
  const rate = (type: 'write' | 'read') => {
    const out = rbd('bench', '--io-type', type, '--io-size', '1M', '--io-threads', '1', '--io-total', `${MB}M`, '--io-pattern', 'seq', image);
    const m = /elapsed:\s*([\d.]+)\s+ops:\s*\d+\s+ops\/sec:\s*[\d.]+\s+bytes\/sec:\s*([\d.]+)\s*([KMG]i?B)?/i.exec(out);
    if (!m) throw new Error(`rbd bench said: ${out.slice(-300)}`);
    const unit = (m[3] ?? '').toUpperCase();
    const bytes = Number(m[2]) * (unit.startsWith('G') ? 2 ** 30 : unit.startsWith('M') ? 2 ** 20 : unit.startsWith('K') ? 2 ** 10 : 1);
    return bytes / 2 ** 20;
  };
  try {
    const write: number[] = [];
    const read: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      write.push(rate('write'));
      read.push(rate('read'));
    }
    return { write, read };
  } finally {
    rbd('rm', '--no-progress', image);
  }
}

const fmt = (xs: number[]) => `${percentile(xs, 50).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
const file = await inGuest('file');
const fileHost = fileLimit();
const rbd = await inGuest('ceph-rbd');
const rbdHost = rbdLimit();

writeResult('ebs-guest-write', [
  '# EBS volume throughput inside a guest: file + iSCSI against Ceph RBD',
  '',
  machineFacts('ebs-guest-write.ts'),
  `- ${RUNS} runs of ${MB} MiB each (MALLEE_BENCH_GUEST_WRITE_RUNS, MALLEE_BENCH_GUEST_WRITE_MB); MiB/s, median (min–max)`,
  '- Ceph is `test/scale-out/backends.sh`\'s one-OSD cluster on sparse files, on the same 2 cores as the guest',
  '',
  '| path | write MiB/s | read MiB/s |',
  '|---|---:|---:|',
  `| guest → tgtd iSCSI → sparse file (SC_BACKEND=file) | ${fmt(file.write)} | ${fmt(file.read)} |`,
  `| the same disk without a guest: dd O_DIRECT + fsync | ${fmt(fileHost.write)} | ${fmt(fileHost.read)} |`,
  `| guest → librbd → OSD (SC_BACKEND=ceph-rbd) | ${fmt(rbd.write)} | ${fmt(rbd.read)} |`,
  `| the same pool without a guest: rbd bench, 1 thread | ${fmt(rbdHost.write)} | ${fmt(rbdHost.read)} |`,
  '',
  '## Reading',
  '',
  '- The guest is QEMU/TCG (no KVM here): its dd, the virtio queue and QEMU\'s block layer all run on emulated CPUs,',
  '  so the guest rows measure the whole guest path on this machine, not what the storage can do; the rows without a',
  '  guest are each path\'s storage limit in the same run.',
  '- O_DIRECT in the guest: every 1 MiB request goes through to the backend (no guest page cache); QEMU opens the',
  '  iSCSI and RBD disks with cache=none.',
  '',
].join('\n'));
