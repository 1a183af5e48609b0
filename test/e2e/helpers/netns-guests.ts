// What the netns suites do from the `internet` namespace (helpers/netns.ts): awscli, euca2ools and boto3
// against the front end's public address, an HTTP GET as the internet sees a guest, and commands run
// inside real guests through their control loop (user data that polls helpers/guest-control.mjs, which
// runs in `internet`; tasks and results are files, so the test needs no socket into the namespace).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clientEnv, eventually, repoRoot } from './cloud.js';
import { ADDR, type Topology } from './netns.js';

/** busybox wget of a URL inside the guest: the body, or "FAILED". */
export const guestGet = (url: string, seconds = 3) => `timeout ${seconds} wget -q -O - ${url} 2>/dev/null || echo FAILED`;

/** User data for the test guest: its control loop (the test image runs user data that starts with #!). */
export const guestAgentScript = (mark: string) => `#!/bin/sh
# ${mark}
ctl=http://${ADDR.internet}:${ADDR.controlPort}
id=$(cat /run/instance-id)
while :; do
  if timeout 4 wget -q -O /tmp/task "$ctl/task/$id" 2>/dev/null && [ -s /tmp/task ]; then
    n=$(sed -n '1s/^# task //p' /tmp/task)
    sh /tmp/task > /tmp/out 2>&1
    timeout 6 wget -q -O /dev/null --post-file=/tmp/out "$ctl/result/$id/$n" 2>/dev/null
  fi
  sleep 1
done
`;

export interface NetnsTools {
  aws(args: string[]): Promise<Record<string, unknown>>;
  euca(cmd: string, args: string[]): Promise<string>;
  boto3(code: string): Promise<string>;
  /** HTTP GET from the internet namespace; undefined when nothing answers within a second. */
  fromInternet(ip: string, path?: string): Promise<string | undefined>;
  /** The guests' control server (in `internet`); guests running guestAgentScript poll it. */
  startGuestControl(): void;
  /** The guest's control loop has asked for work (so DHCP, SNAT and the route out work). */
  polling(instanceId: string): boolean;
  /** Run a shell command inside a guest (through its control loop) and return its output. */
  inGuest(instanceId: string, cmd: string, timeoutMs?: number): Promise<string>;
}

export function netnsTools(t: Topology): NetnsTools {
  const env = () => clientEnv(t.env);
  const ctlDir = join(t.dir, 'guest-control');
  let taskNo = 0;
  return {
    async aws(args) {
      const r = await t.exec(t.ns.internet, ['aws', '--endpoint-url', t.ec2Url, '--region', t.region, '--output', 'json', ...args], { env: env(), allowFail: true });
      if (r.code !== 0) throw new Error(`aws ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${t.logs()}`);
      return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
    },
    async euca(cmd, args) {
      const r = await t.exec(t.ns.internet, [join(repoRoot, '../shared/tools/euca'), cmd, ...args], { env: env(), allowFail: true });
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${t.logs()}`);
      return r.stdout;
    },
    async boto3(code) {
      const script = `import boto3, json, os\nec2 = boto3.client('ec2', endpoint_url=os.environ['EC2_URL'], region_name=os.environ['AWS_DEFAULT_REGION'])\n${code}\n`;
      const r = await t.exec(t.ns.internet, ['python3', '-c', script], { env: env(), allowFail: true });
      if (r.code !== 0) throw new Error(`boto3 failed: ${r.stderr}\n${t.logs()}`);
      return r.stdout;
    },
    async fromInternet(ip, path = '/') {
      const r = await t.exec(t.ns.internet, ['curl', '-s', '-m', '1', `http://${ip}${path}`], { allowFail: true });
      return r.code === 0 ? r.stdout : undefined;
    },
    startGuestControl() {
      mkdirSync(ctlDir, { recursive: true });
      const ctl = spawn('ip', ['netns', 'exec', t.ns.internet, process.execPath, join(repoRoot, 'test/e2e/helpers/guest-control.mjs'), ctlDir, ADDR.internet, String(ADDR.controlPort)], { detached: true, stdio: 'ignore' });
      ctl.unref();
    },
    polling: (id) => existsSync(join(ctlDir, id, 'seen')),
    async inGuest(id, cmd, timeoutMs = 60_000) {
      const n = ++taskNo;
      mkdirSync(join(ctlDir, id, 'tasks'), { recursive: true });
      writeFileSync(join(ctlDir, id, 'tasks', String(n)), cmd + '\n');
      const file = join(ctlDir, id, 'results', String(n));
      return eventually(`guest ${id} to run: ${cmd}`, async () => (existsSync(file) ? readFileSync(file, 'utf8') : undefined), timeoutMs);
    },
  };
}

/** A guest serving its page through an EIP with a volume holding data (upgrade and migration suites). */
export interface ServingGuest { instanceId: string; volumeId: string; eip: string; dataSum: string }

/**
 * Group `web` (port 80 open), one t1.micro guest running guestAgentScript(mark), a 1 GiB volume attached at
 * /dev/sdf with an ext2 filesystem and 4 MiB of random data at /mnt/vol/data (its MD5 served as /volume.txt),
 * an elastic IP associated and the page answering through it. `phase` is told when the guest is up.
 */
export async function serveWithVolume(t: Topology, tools: NetnsTools, mark: string, phase: (what: string) => void = () => undefined): Promise<ServingGuest> {
  const { aws } = tools;
  await aws(['ec2', 'create-security-group', '--group-name', 'web', '--description', 'the page']);
  await aws(['ec2', 'authorize-security-group-ingress', '--group-name', 'web', '--protocol', 'tcp', '--port', '80', '--cidr', '0.0.0.0/0']);
  writeFileSync(join(t.dir, 'user-data.sh'), guestAgentScript(mark));
  const run = await eventually('run-instances', () => aws(['ec2', 'run-instances', '--image-id', t.image.emi, '--instance-type', 't1.micro', '--security-groups', 'web',
    '--user-data', `file://${join(t.dir, 'user-data.sh')}`]), 180_000);
  const instanceId = (run.Instances as { InstanceId: string }[])[0]!.InstanceId;
  const volumeId = String((await aws(['ec2', 'create-volume', '--size', '1', '--availability-zone', 'mallee-1a'])).VolumeId);
  await eventually(`${instanceId} polling the control server`, async () => (tools.polling(instanceId) ? true : undefined), 240_000);
  phase('guest up');
  await eventually('the volume available', async () => (((await aws(['ec2', 'describe-volumes', '--volume-ids', volumeId])).Volumes as { State: string }[])[0]!.State === 'available' ? true : undefined), 60_000);
  await aws(['ec2', 'attach-volume', '--volume-id', volumeId, '--instance-id', instanceId, '--device', '/dev/sdf']);
  // In the guest: the disk whose serial is the volume id gets a filesystem and 4 MiB of data; its checksum is served too.
  const out = await tools.inGuest(instanceId, `for i in $(seq 60); do for s in /sys/block/vd*/serial; do [ "$(cat $s 2>/dev/null)" = "${volumeId}" ] && dev=$(basename $(dirname $s)); done; [ -n "$dev" ] && break; sleep 1; done
mke2fs -q /dev/$dev && mkdir -p /mnt/vol && mount -t ext2 /dev/$dev /mnt/vol && dd if=/dev/urandom of=/mnt/vol/data bs=1M count=4 2>/dev/null && sync
md5sum < /mnt/vol/data | cut -c1-32 | tee /www/volume.txt`, 120_000);
  const dataSum = out.trim().split('\n').pop() ?? '';
  if (!/^[0-9a-f]{32}$/.test(dataSum)) throw new Error(`the volume's data was not written in ${instanceId}: ${out}`);
  const eip = /ADDRESS\s+(\S+)/.exec(await tools.euca('euca-allocate-address', []))?.[1] ?? '';
  await tools.euca('euca-associate-address', ['-i', instanceId, eip]);
  const page = await eventually('the page through the EIP', () => tools.fromInternet(eip), 30_000);
  if (!page.includes(`instance ${instanceId}`)) throw new Error(`the page through ${eip} is not ${instanceId}'s: ${page}`);
  return { instanceId, volumeId, eip, dataSum };
}
