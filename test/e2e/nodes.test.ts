// Two node controllers with real guests (libvirt, QEMU/TCG here) behind one cluster controller, run as an
// operator runs them: the all-in-one's nc plus a second nc in its own home and port, registered with
// `mallee register-nodes`; capacity (MAX_CORES) and placement (SCHEDPOLICY) changed in each host's
// mallee.conf and the daemon restarted; the second host forces HYPERVISOR="qemu" and caps MAX_MEM. Then a node is killed with -9 under its guests, an instance is
// terminated while it is down, and it comes back: nothing lost, nothing duplicated, the terminated one
// cleaned up. awscli, boto3 and euca2ools drive it; libvirt and the instance directories are the truth.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, libvirtDomains, startCloud, type Cloud } from './helpers/cloud.js';
import { awsCli, awsCliError, boto3, consoleOf, domainIds, domainsGone, euca, eucaResult, instancesIn, terminateAndWaitGone } from './helpers/clients.js';
import { addNode, homeOf, nodeStates, setConf, stopDaemon, waitNodesEnabled, type ExtraNode } from './helpers/nodes.js';

const libvirtHere = existsSync('/run/libvirt/libvirt-sock') || existsSync('/var/run/libvirt/libvirt-sock');
if (!libvirtHere) console.warn('nodes.test.ts skipped: libvirtd is not running (run test/run-all.sh, which starts it)');

const TYPE = 't1.micro'; // 1 core, 256 MiB: MAX_CORES decides how many fit
let cloud: Cloud;
let node2: ExtraNode;
let image: string;
let homes: string[];
const launched = new Set<string>();

/** Restart the all-in-one's daemon as an operator would: stop it, `mallee up` starts what is down. */
async function restart(svc: 'nc' | 'cc', signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  await stopDaemon(cloud.home, svc, signal);
  await cloud.mallee(['up', '--detach'], 300_000);
}

/** free / max of a type in the zone, as `euca-describe-availability-zones verbose` prints it. */
async function capacity(type = TYPE): Promise<{ free: number; max: number }> {
  const out = await euca(cloud, 'euca-describe-availability-zones', ['verbose']);
  const m = new RegExp(`\\|- ${type.replace('.', '\\.')}\\s+(\\d+)\\s*/\\s*(\\d+)`).exec(out);
  if (!m) throw new Error(`no ${type} row in:\n${out}`);
  return { free: Number(m[1]), max: Number(m[2]) };
}

const capacityIs = (free: number, max: number) =>
  eventually(`zone capacity ${free}/${max} ${TYPE}`, async () => {
    const c = await capacity();
    return c.free === free && c.max === max ? c : undefined;
  }, 60_000);

async function runCount(count: number): Promise<string[]> {
  const ids = instancesIn(await awsCli(cloud, ['ec2', 'run-instances', '--image-id', image, '--instance-type', TYPE, '--count', String(count)])).map((i) => i.InstanceId);
  ids.forEach((id) => launched.add(id));
  return ids;
}

/** Every instance boots for real: its own boot-done marker on its console. */
async function booted(ids: string[]): Promise<void> {
  await Promise.all(ids.map((id) => eventually(`${id} boot-done marker`, async () => ((await consoleOf(cloud, id)).includes(`mallee: boot done ${id}`) ? true : undefined), 300_000)));
}

const placement = (ids: string[]) => ids.map((id) => homeOf(id, homes));
const countOn = (ids: string[], home: string) => placement(ids).filter((h) => h === home).length;

async function terminate(ids: string[]): Promise<void> {
  await terminateAndWaitGone(cloud, ids);
  ids.forEach((id) => launched.delete(id));
}

/** The instances this cloud's nodes have directories for (other engineers' guests share libvirt). */
const instanceDirs = () => homes.flatMap((h) => (existsSync(join(h, 'instances')) ? readdirSync(join(h, 'instances')) : []));

/** A launch that does not fit, refused by each client with InsufficientInstanceCapacity and nothing started. */
async function refusedByEveryClient(count: number): Promise<void> {
  const before = instanceDirs();
  const aws = await awsCliError(cloud, ['ec2', 'run-instances', '--image-id', image, '--instance-type', TYPE, '--count', String(count)]);
  expect(aws.code).not.toBe(0);
  expect(aws.stderr).toContain('InsufficientInstanceCapacity');
  const b3 = await boto3(cloud, `from botocore.exceptions import ClientError
try:
    ec2.run_instances(ImageId="${image}", InstanceType="${TYPE}", MinCount=${count}, MaxCount=${count})
    print(json.dumps("launched"))
except ClientError as e:
    print(json.dumps(e.response["Error"]["Code"]))`);
  expect(b3).toBe('InsufficientInstanceCapacity');
  const e2 = await eucaResult(cloud, 'euca-run-instances', ['-t', TYPE, '-n', String(count), image]);
  expect(e2.code).not.toBe(0);
  expect(e2.stderr + e2.stdout).toContain('InsufficientInstanceCapacity');
  expect(instanceDirs().filter((d) => !before.includes(d))).toEqual([]);
}

beforeAll(async () => {
  if (!libvirtHere) return;
  cloud = await startCloud({ hypervisor: 'libvirt', pollInterval: 1 });
  image = (JSON.parse(readFileSync(join(cloud.home, 'test-image.json'), 'utf8')) as { emi: string }).emi;
  // Both hosts offer 2 cores: the all-in-one's nc after a restart with its mallee.conf edited, the second from its own.
  setConf(join(cloud.home, 'mallee.conf'), 'MAX_CORES', 2);
  await restart('nc');
  // The second host forces TCG (HYPERVISOR="qemu") instead of probing for KVM.
  node2 = await addNode(cloud, { HYPERVISOR: 'qemu', MAX_CORES: 2, POLL_INTERVAL: 1 });
  homes = [cloud.home, node2.home];
  await waitNodesEnabled(cloud, 2);
}, 600_000);

afterAll(async () => {
  if (cloud && launched.size) await terminateAndWaitGone(cloud, [...launched]).catch(() => undefined);
  await node2?.remove();
  await cloud?.stop();
}, 300_000);

describe.skipIf(!libvirtHere)('two node controllers with real guests', () => {
  it('HYPERVISOR="qemu" forces TCG on the second host and says so; the all-in-one\'s node chose by probing', async () => {
    const choice = (home: string) => {
      const line = readFileSync(join(home, 'log', 'nc.log'), 'utf8').split('\n').reverse().find((l) => l.includes('libvirt driver uses domain type'));
      return line ? (JSON.parse(line) as { domainType: string; reason: string }) : undefined;
    };
    expect(choice(node2.home)).toMatchObject({ domainType: 'qemu', reason: 'HYPERVISOR forces qemu' });
    expect(choice(cloud.home)?.reason).toMatch(/probe/);
  });

  it('MAX_CORES=2 on both: the zone offers 4 t1.micro, 5 are refused with InsufficientInstanceCapacity (awscli, boto3, euca2ools); GREEDY fills the first node, then the second', async () => {
    await capacityIs(4, 4);
    await refusedByEveryClient(5);
    const three = await runCount(3);
    expect(placement(three)).toEqual([cloud.home, cloud.home, node2.home]);
    const fourth = await runCount(1);
    expect(placement(fourth)).toEqual([node2.home]);
    await capacityIs(0, 4);
    await refusedByEveryClient(1);
    await booted([...three, ...fourth]);
    await terminate([...three, ...fourth]);
  }, 900_000);

  it('MAX_CORES=4 in both hosts\' mallee.conf and MAX_MEM=768 on the second, the NCs restarted: 7 fit (4 + 3 by memory) where 4 did, 8 are refused; GREEDY packs 4 onto the first node before the second', async () => {
    setConf(join(cloud.home, 'mallee.conf'), 'MAX_CORES', 4);
    setConf(node2.conf, 'MAX_CORES', 4);
    setConf(node2.conf, 'MAX_MEM', 768);
    await node2.stop();
    await node2.start();
    await restart('nc');
    await waitNodesEnabled(cloud, 2);
    await capacityIs(7, 7);
    // m1.small (512 MiB): 4 on the first node, 1 in the second's 768 MiB.
    expect(await capacity('m1.small')).toEqual({ free: 5, max: 5 });
    await refusedByEveryClient(8);
    const five = await runCount(5);
    expect(countOn(five, cloud.home)).toBe(4);
    expect(countOn(five, node2.home)).toBe(1);
    await capacityIs(2, 7);
    await booted(five);
    await terminate(five);
  }, 900_000);

  it('SCHEDPOLICY=ROUNDROBIN in the cc\'s mallee.conf, the cc restarted: 6 instances are spread 3 and 3, alternating', async () => {
    setConf(join(cloud.home, 'mallee.conf'), 'SCHEDPOLICY', 'ROUNDROBIN');
    await restart('cc');
    await waitNodesEnabled(cloud, 2);
    await capacityIs(7, 7);
    const six = await runCount(6);
    const where = placement(six);
    expect(where.filter((h) => h === cloud.home)).toHaveLength(3);
    expect(where.filter((h) => h === node2.home)).toHaveLength(3);
    // Alternating nodes, whichever the rotation started with.
    for (let i = 1; i < where.length; i++) expect(where[i]).not.toBe(where[i - 1]);
    await booted(six);
  }, 900_000);

  it('kill -9 of a node with 3 guests: its instances stay running (system status impaired), one terminated meanwhile is cleaned up when it returns; the others are the same guests, not restarted, not duplicated', async () => {
    const running = instancesIn(await awsCli(cloud, ['ec2', 'describe-instances', '--filters', 'Name=instance-state-name,Values=running']));
    const onNode2 = running.map((i) => i.InstanceId).filter((id) => homeOf(id, homes) === node2.home);
    const onNode1 = running.map((i) => i.InstanceId).filter((id) => homeOf(id, homes) === cloud.home);
    expect(onNode2).toHaveLength(3);
    const domidsBefore = await domainIds(onNode2);

    await node2.stop('SIGKILL');
    await eventually('node2 NOTREADY', async () => ((await nodeStates(cloud)).get(node2.name) === 'NOTREADY' ? true : undefined), 60_000);
    // Marked, not lost: still running as last reported, with failing system status checks.
    const status = async (ids: string[]) => {
      const r = await awsCli(cloud, ['ec2', 'describe-instance-status', '--instance-ids', ...ids]);
      return new Map((r.InstanceStatuses as { InstanceId: string; SystemStatus: { Status: string; Details: { Status: string }[] } }[]).map((s) => [s.InstanceId, s.SystemStatus]));
    };
    await eventually('node2 instances impaired', async () => {
      const s = await status(onNode2);
      return onNode2.every((id) => s.get(id)?.Status === 'impaired' && s.get(id)?.Details[0]?.Status === 'failed') ? true : undefined;
    }, 60_000);
    expect([...(await status(onNode1)).values()].map((s) => s.Status)).toEqual(['ok', 'ok', 'ok']);
    const states = instancesIn(await awsCli(cloud, ['ec2', 'describe-instances', '--instance-ids', ...onNode2])).map((i) => i.State.Name);
    expect(states).toEqual(['running', 'running', 'running']);
    // The guests themselves go on without their node controller.
    expect([...(await domainIds(onNode2)).values()]).toEqual([...domidsBefore.values()]);

    // Terminated through the cloud while its node is down: accepted, finished when the node is back.
    const [gone, ...kept] = onNode2 as [string, ...string[]];
    expect(await euca(cloud, 'euca-terminate-instances', [gone])).toContain(gone);
    expect((await libvirtDomains())).toContain(gone);

    await node2.start();
    await waitNodesEnabled(cloud, 2);
    await domainsGone([gone]);
    await eventually(`${gone} disks gone`, async () => (!existsSync(join(node2.home, 'instances', gone)) ? true : undefined), 60_000);
    await eventually(`${gone} terminated`, async () => {
      const d = instancesIn(await awsCli(cloud, ['ec2', 'describe-instances', '--instance-ids', gone]));
      return d[0]?.State.Name === 'terminated' ? true : undefined;
    }, 60_000);
    await eventually('node2 instances ok again', async () => {
      const s = await status(kept);
      return kept.every((id) => s.get(id)?.Status === 'ok') ? true : undefined;
    }, 60_000);

    // The same guests: same QEMU processes (domain ids), one boot each, one domain each, and nothing new.
    expect(await domainIds(kept)).toEqual(new Map(kept.map((id) => [id, domidsBefore.get(id)!])));
    for (const id of kept) expect((await consoleOf(cloud, id)).split('\n').filter((l) => l.includes(`mallee: boot done ${id}`))).toHaveLength(1);
    const described = instancesIn(await awsCli(cloud, ['ec2', 'describe-instances', '--filters', 'Name=instance-state-name,Values=pending,running']));
    expect(described.map((i) => i.InstanceId).sort()).toEqual([...onNode1, ...kept].sort());
    const domains = await libvirtDomains();
    for (const id of [...onNode1, ...kept]) expect(domains.filter((d) => d === id)).toHaveLength(1);
    launched.delete(gone);
  }, 900_000);

  it('kill -9 of the all-in-one\'s nc with its 3 guests, `mallee up` restarts it: the same 3 instances running, same guests, none duplicated', async () => {
    const running = instancesIn(await awsCli(cloud, ['ec2', 'describe-instances', '--filters', 'Name=instance-state-name,Values=running'])).map((i) => i.InstanceId);
    const mine = running.filter((id) => homeOf(id, homes) === cloud.home);
    expect(mine).toHaveLength(3);
    const before = await domainIds(mine);
    await restart('nc', 'SIGKILL');
    await waitNodesEnabled(cloud, 2);
    const after = instancesIn(await awsCli(cloud, ['ec2', 'describe-instances', '--instance-ids', ...mine]));
    expect(after.map((i) => [i.InstanceId, i.State.Name]).sort()).toEqual(mine.map((id) => [id, 'running']).sort());
    expect(await domainIds(mine)).toEqual(before);
    const domains = await libvirtDomains();
    for (const id of mine) expect(domains.filter((d) => d === id)).toHaveLength(1);
    await terminate([...launched]);
  }, 900_000);
});
