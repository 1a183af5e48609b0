// Benchmark (not a test): EBS AttachVolume → the device visible inside a real guest (QEMU/TCG here), against
// the limit measured in the same run on the same guest: the same kind of disk (an iSCSI network disk with
// CHAP through a libvirt secret, QEMU's own initiator, from the same tgtd portal) hot-plugged with a raw
// `virsh attach-device`. Rounds interleaved; writes bench/results/attach.md.
//   - Mallee: EC2 AttachVolume (clc → sc: tgtd target, LUN, CHAP account, ACL → cc → nc: libvirt secret,
//     attach-device) until the guest's volume agent prints the disk on its console.
//   - by hand: the same steps without Mallee (tgtadm target + LUN + account + bind + ACL, virsh
//     secret-define + secret-set-value, attach-device), from the first tgtadm to the device in the guest.
//   - raw (the limit): `virsh attach-device` of an iSCSI disk exported beforehand, to the device in the guest.
// The guest is the busybox test image running the volume agent (test/e2e/helpers/ebs.ts), which polls
// /sys/block every 0.2 s; the bench reads the console file QEMU appends to every 20 ms.
//   npm run bench -- attach        (MALLEE_BENCH_ATTACH_RUNS=5; needs libvirtd and tgtd)
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { items } from '../test/e2e/helpers/ec2-client.js';
import { sleep, startCloud, type Cloud } from '../test/e2e/helpers/cloud.js';
import { tgtHere, VOLUME_AGENT } from '../test/e2e/helpers/ebs.js';
import { machineFacts, percentile, until, writeResult } from './lib.js';

const RUNS = Number(process.env.MALLEE_BENCH_ATTACH_RUNS ?? 5);
const URI = 'qemu:///system';

if ((!existsSync('/run/libvirt/libvirt-sock') && !existsSync('/var/run/libvirt/libvirt-sock')) || !tgtHere()) {
  console.error('attach bench: needs libvirtd and tgtd (test/run-all.sh or deploy/aio.sh start them); skipped');
  process.exit(0);
}

const virsh = (...args: string[]) => execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8' });
const tgtadm = (...args: string[]) => execFileSync('tgtadm', ['--lld', 'iscsi', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** A tgtd target of the bench's own (its IQN and CHAP user carry `tag`), deleted again by `remove`. */
class BenchTarget {
  readonly iqn: string;
  readonly user: string;
  readonly password = randomBytes(12).toString('hex');
  tid = 0;
  constructor(readonly tag: string, readonly backing: string) {
    this.iqn = `iqn.2010-05.org.mallee:${tag}`;
    this.user = tag;
  }

  /** What the sc does for an export: target, LUN 1 on the file, CHAP account bound to it, ACL for the initiator. */
  create(initiator: string): void {
    for (let attempt = 0; ; attempt++) {
      this.tid = 9000 + Math.floor(Math.random() * 900);
      try {
        tgtadm('--mode', 'target', '--op', 'new', '--tid', String(this.tid), '--targetname', this.iqn);
        break;
      } catch (err) {
        if (attempt > 20) throw err; // tid taken (tgtd is shared with everything on the host): another one
      }
    }
    tgtadm('--mode', 'logicalunit', '--op', 'new', '--tid', String(this.tid), '--lun', '1', '--backing-store', this.backing);
    tgtadm('--mode', 'account', '--op', 'new', '--user', this.user, '--password', this.password);
    tgtadm('--mode', 'account', '--op', 'bind', '--tid', String(this.tid), '--user', this.user);
    tgtadm('--mode', 'target', '--op', 'bind', '--tid', String(this.tid), '--initiator-address', initiator);
  }

  remove(): void {
    if (this.tid) {
      try {
        tgtadm('--mode', 'target', '--op', 'delete', '--force', '--tid', String(this.tid));
      } catch {
        // already gone
      }
    }
    try {
      tgtadm('--mode', 'account', '--op', 'delete', '--user', this.user);
    } catch {
      // never made
    }
    this.tid = 0;
  }
}

/** A libvirt iSCSI CHAP secret of the bench's own. */
function defineSecret(dir: string, usage: string, password: string): string {
  const uuid = randomUUID();
  const xml = join(dir, `secret-${uuid}.xml`);
  writeFileSync(xml, `<secret ephemeral='no' private='yes'><uuid>${uuid}</uuid><usage type='iscsi'><target>${usage}</target></usage></secret>`);
  virsh('secret-define', xml);
  const value = join(dir, `value-${uuid}`);
  writeFileSync(value, password, { mode: 0o600 });
  virsh('secret-set-value', uuid, '--file', value, '--plain');
  rmSync(value);
  return uuid;
}

/** The NC's <disk> for a volume (services/nc/src/hypervisors/libvirt-volumes.ts networkDisk), for the bench's own target. */
function diskXml(t: BenchTarget, portal: { host: string; port: string }, usage: string, dev: string, serial: string): string {
  return `<disk type='network' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>` +
    `<source protocol='iscsi' name='${t.iqn}/1'><host name='${portal.host}' port='${portal.port}'/>` +
    `<auth username='${t.user}'><secret type='iscsi' usage='${usage}'/></auth></source>` +
    `<target dev='${dev}' bus='virtio'/><serial>${serial}</serial></disk>`;
}

async function main(): Promise<void> {
  const cloud: Cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1, conf: { HYPERVISOR: 'qemu', LOG_LEVEL: 'warn' } });
  const tag = `bench-${randomBytes(4).toString('hex')}`;
  const dir = join(cloud.home, 'bench-attach');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const targets: BenchTarget[] = [];
  const secrets: string[] = [];
  try {
    const image = (JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as { emi: string }).emi;
    const run = await cloud.client.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: 't1.micro', UserData: Buffer.from(VOLUME_AGENT).toString('base64') });
    const id = String(items(run.instancesSet)[0]!.instanceId);
    const consoleLog = join(cloud.home, 'instances', id, 'console.log');
    const consoleText = () => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
    const appearances = (serial: string) => consoleText().split(`mallee-vol: appeared ${serial} `).length - 1;
    const agentDone = (serial: string, n: number) => until(`agent done with ${serial} (${n})`, () => (new RegExp(`mallee-vol: done ${serial} ${n}\\r?\\n`).test(consoleText()) ? true : undefined), 240_000, 100);
    await until(`${id} booted with the agent`, () => (consoleText().includes('mallee-vol: agent running') ? true : undefined), 600_000, 200);
    const volState = async (v: string) => String(items((await cloud.client.ok('DescribeVolumes', { 'VolumeId.1': v })).volumeSet)[0]?.status);
    const vol = String((await cloud.client.ok('CreateVolume', { Size: 1, AvailabilityZone: 'mallee-1a' })).volumeId);
    await until('volume available', async () => ((await volState(vol)) === 'available' ? true : undefined), 120_000, 200);

    // The peers' backing files: 1 GiB sparse, as an sc volume.
    const backing = (name: string) => {
      const f = join(dir, `${name}.img`);
      execFileSync('truncate', ['-s', '1G', f]);
      return f;
    };
    const rawBacking = backing('raw');
    const handBacking = backing('hand');
    const rawSerial = 'vol-0000be01';
    const handSerial = 'vol-0000be02';
    let portal: { host: string; port: string; initiator: string } | undefined;
    let raw: { target: BenchTarget; xml: string } | undefined;
    const mallee: number[] = [];
    const hand: number[] = [];
    const direct: number[] = [];
    const gone = (serial: string) => until(`${serial} unplugged`, () => (!virsh('dumpxml', id).includes(`<serial>${serial}</serial>`) ? true : undefined), 60_000, 100);
    for (let n = 1; n <= RUNS; n++) {
      // 1. Mallee.
      let t = performance.now();
      await cloud.client.ok('AttachVolume', { VolumeId: vol, InstanceId: id, Device: '/dev/sdf' });
      await until('the volume in the guest', () => (appearances(vol) >= n ? true : undefined), 120_000, 20);
      mallee.push(performance.now() - t);
      if (!portal) {
        // The portal the sc handed out and the initiator address its ACL allows: the peers use the same.
        const xml = virsh('dumpxml', id);
        const host = /<source protocol='iscsi'[^>]*>\s*<host name='([^']+)' port='(\d+)'/.exec(xml);
        if (!host) throw new Error(`no iSCSI disk in the domain XML:\n${xml}`);
        const acl = /ACL information:\s*\n\s*(\S+)/.exec(tgtadm('--mode', 'target', '--op', 'show').split(/^(?=Target \d+:)/m).find((b) => b.includes(`.${vol}.`)) ?? '');
        portal = { host: host[1]!, port: host[2]!, initiator: acl?.[1] ?? host[1]! };
        const target = new BenchTarget(`${tag}.raw`, rawBacking);
        targets.push(target);
        target.create(portal.initiator);
        const usage = `mallee-bench/${tag}.raw`;
        secrets.push(defineSecret(dir, usage, target.password));
        raw = { target, xml: join(dir, 'raw.xml') };
        writeFileSync(raw.xml, diskXml(target, portal, usage, 'vdy', rawSerial));
      }
      await agentDone(vol, n);
      await cloud.client.ok('DetachVolume', { VolumeId: vol });
      await until('detached', async () => ((await volState(vol)) === 'available' ? true : undefined), 120_000, 100);
      await gone(vol);

      // 2. Raw: the exported iSCSI disk hot-plugged by virsh (the limit).
      t = performance.now();
      virsh('attach-device', id, raw!.xml, '--live');
      await until('the raw disk in the guest', () => (appearances(rawSerial) >= n ? true : undefined), 120_000, 20);
      direct.push(performance.now() - t);
      await agentDone(rawSerial, n);
      virsh('detach-device', id, raw!.xml, '--live');
      await gone(rawSerial);

      // 3. By hand: export, CHAP, secret and hot-plug, as Mallee's daemons do them, without the daemons.
      t = performance.now();
      const target = new BenchTarget(`${tag}.hand${n}`, handBacking);
      targets.push(target);
      target.create(portal.initiator);
      const usage = `mallee-bench/${tag}.hand${n}`;
      const uuid = defineSecret(dir, usage, target.password);
      secrets.push(uuid);
      const xml = join(dir, `hand${n}.xml`);
      writeFileSync(xml, diskXml(target, portal, usage, 'vdx', handSerial));
      virsh('attach-device', id, xml, '--live');
      await until('the hand-made disk in the guest', () => (appearances(handSerial) >= n ? true : undefined), 120_000, 20);
      hand.push(performance.now() - t);
      await agentDone(handSerial, n);
      virsh('detach-device', id, xml, '--live');
      await gone(handSerial);
      target.remove();
      virsh('secret-undefine', uuid);
      secrets.splice(secrets.indexOf(uuid), 1);
      await sleep(500);
    }
    await cloud.client.ok('TerminateInstances', { 'InstanceId.1': id });
    await until('terminated', () => (!existsSync(join(cloud.home, 'instances', id)) ? true : undefined), 180_000, 200);
    await cloud.client.ok('DeleteVolume', { VolumeId: vol });

    const s = (ms: number) => (ms / 1000).toFixed(2);
    const row = (what: string, xs: number[]) => `| ${what} | ${s(percentile(xs, 50))} | ${s(Math.min(...xs))} | ${s(Math.max(...xs))} | ${xs.map(s).join(', ')} |`;
    const med = (xs: number[]) => percentile(xs, 50);
    writeResult('attach', [
      '# EBS: AttachVolume → device visible in the guest, Mallee vs raw libvirt',
      '',
      machineFacts('attach.ts'),
      `- ${execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0]}; libvirt ${execFileSync('virsh', ['--version'], { encoding: 'utf8' }).trim()}; tgtd on the host, portal ${portal!.host}:${portal!.port}`,
      '- Guest: the busybox test image (t1.micro, QEMU/TCG: no usable KVM here) running the volume agent, which polls `/sys/block/vd*/serial` every 0.2 s',
      '  and prints the disk on its serial console; the bench reads the console file every 20 ms. Every disk: `<disk type=\'network\'>`, protocol iscsi',
      '  (QEMU\'s own initiator), CHAP through a libvirt secret, `cache=none io=native`, virtio, the same 1 GiB sparse backing kind, the same tgtd and portal.',
      `- ${RUNS} rounds, the three paths interleaved in each; after each attach the agent finishes (mkfs or read) and the disk is unplugged before the next.`,
      '',
      '| path: start → device in the guest | median s | min s | max s | runs s |',
      '|---|---:|---:|---:|---|',
      row('Mallee: EC2 AttachVolume (clc → sc export + CHAP → cc → nc secret + attach-device)', mallee),
      row('by hand: tgtadm target, LUN, account, bind, ACL; virsh secret-define, secret-set-value, attach-device', hand),
      row('raw `virsh attach-device` of an iSCSI disk exported beforehand (the limit)', direct),
      '',
      `Medians: Mallee − raw ${s(med(mallee) - med(direct))} s, by hand − raw ${s(med(hand) - med(direct))} s, so Mallee's own cost (its signed wire hops and ` +
        `bookkeeping around the same tgtadm and virsh steps) is about ${s(med(mallee) - med(hand))} s of its ${s(med(mallee))} s; the rest is the hot-plug itself ` +
        '(QEMU\'s iSCSI login, ACPI, the guest\'s virtio probe under TCG, the agent\'s 0.2 s poll).',
      '',
    ].join('\n'));
  } finally {
    for (const t of targets) t.remove();
    for (const uuid of secrets) {
      try {
        virsh('secret-undefine', uuid);
      } catch {
        // gone
      }
    }
    await cloud.stop();
  }
}

await main();
