// Rolling upgrade with guests running, proven through an elastic IP (issue 7): the seed topology in
// network namespaces (helpers/netns.ts, with the sc and its own tgtd on the front end), each host installed
// first by deploy/install.sh into a root of its own (the front end --role frontend, the node --role node;
// the daemons run from the installed trees, registration as on separate hosts), one real guest
// (QEMU/TCG) with an EBS volume holding data and serving its HTTP page through an EIP, and a client in
// `internet` that GETs the page every 100 ms, each poll a new connection (helpers/http-poller.mjs).
// Then the newer build is installed on both hosts by its own deploy/install.sh while everything runs (only
// the files that changed are written), and clc, cc, sc, walrus and nc are restarted one by one onto it: a copy
// of the built tree at another path whose wire protocol is version N+1 (so upgraded daemons talk to old ones across one
// version of skew) and whose clc has one more database migration (so a forward migration runs on the
// start of the new build, under a running cloud). Each restart must keep the guest (same libvirt domain
// id, no second boot on its console), its volume (attached, the data read back from the iSCSI target with
// the page cache dropped) and its address; the longest gap between two answered polls during each restart
// is printed and checked. The new tree is made by hard links (seconds, no second `npm ci`), with the two
// changed files written as new files so the checkout's own build is never touched.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, repoRoot, sleep } from './helpers/cloud.js';
import { ADDR, buildTopology, installHost, netnsSuiteCanRun, sh, type Svc, type Topology } from './helpers/netns.js';
import { netnsTools, serveWithVolume, type NetnsTools } from './helpers/netns-guests.js';
import { gapIn, readPolls } from './helpers/polls.js';

const canRun = netnsSuiteCanRun('upgrade.test.ts', ['/usr/sbin/dnsmasq', '/usr/sbin/tgtd']);

let t: Topology;
let tools: NetnsTools;
let nextTree = '';
let nextWire = 0;
let instanceId = '';
let volumeId = '';
let eip = '';
let domId = '';
let dataSum = '';
let pollLog = '';
let poller: ReturnType<typeof spawn> | undefined;
const gaps: { svc: Svc; longestGapMs: number; failedPolls: number; polls: number; restartMs: number }[] = [];

/** The migration the newer build adds to the clc (checked in the clc's database after its restart). */
const NEXT_MIGRATION = 'upgrade test: a migration only the newer build has';

/** A copy of the built tree at another path, as the next release: wire version N+1, one more clc migration. */
async function makeNextTree(dir: string): Promise<number> {
  mkdirSync(dir, { recursive: true });
  for (const e of readdirSync(repoRoot)) {
    if (e === '.git' || e === 'test-output' || e === 'test' || e === 'bench') continue;
    await sh(['cp', '-al', join(repoRoot, e), join(dir, e)]);
  }
  // The image builders are part of an installed tree (`mallee test-image`).
  mkdirSync(join(dir, 'test'));
  await sh(['cp', '-al', join(repoRoot, 'test/images'), join(dir, 'test/images')]);
  // Files the new build changes are written anew (never through a hard link into this checkout).
  const protocol = join(dir, 'packages/wire/dist/src/protocol.js');
  const src = readFileSync(protocol, 'utf8');
  const m = /export const BUILD_WIRE_VERSION = (\d+);/.exec(src);
  if (!m) throw new Error(`no BUILD_WIRE_VERSION in ${protocol}`);
  const wireVersion = Number(m[1]) + 1;
  rmSync(protocol);
  writeFileSync(protocol, src.replace(m[0], `export const BUILD_WIRE_VERSION = ${wireVersion};`));
  const migrations = join(dir, 'services/clc/dist/src/migrations.js');
  const mig = readFileSync(migrations, 'utf8');
  rmSync(migrations);
  if (!mig.includes('export const clcMigrations')) throw new Error(`no clcMigrations in ${migrations}`);
  writeFileSync(migrations, `${mig}\nclcMigrations.push({ id: Math.max(...clcMigrations.map((m) => m.id)) + 1, name: ${JSON.stringify(NEXT_MIGRATION)}, up: 'CREATE TABLE upgrade_probe (note TEXT)' });\n`);
  return wireVersion;
}

async function domIdOf(id: string): Promise<string> {
  return (await sh(['virsh', '-c', t.libvirtUri, 'domid', id])).stdout.trim();
}

function bootsOf(id: string): number {
  const file = join(t.nodeHome, 'instances', id, 'console.log');
  return (readFileSync(file, 'utf8').match(new RegExp(`mallee: boot done ${id}`, 'g')) ?? []).length;
}

const polls = () => readPolls(pollLog);

/**
 * What carries the guest's traffic, as the kernel has it: the bridges, tunnels and taps (by ifindex, so one
 * made again shows), dnsmasq (by pid), Mallee's iptables rules, the node's ebtables, the public /32s. A
 * restart must adopt all of it, not rebuild it.
 */
async function netState(): Promise<Record<string, unknown>> {
  // Two commands (one per namespace): this runs twice per restart on a loaded host.
  const fe = (await t.exec(t.ns.frontend, ['sh', '-c', `ip -o link show; echo ==; iptables -t filter -S; echo ==; iptables -t nat -S; echo ==; ip -o -4 addr show dev ${t.id}pub0; echo ==; cat ${join(t.feHome, 'run', 'dnsmasq')}/*.pid`])).stdout.split('==\n');
  const node = (await t.exec(t.ns.node, ['sh', '-c', 'ip -o link show; echo ==; ebtables -L'])).stdout.split('==\n');
  const links = (text: string) => text.split('\n').map((l) => /^(\d+): ([^:@]+)/.exec(l)).filter((m) => m?.[2]?.startsWith(t.id)).map((m) => `${m![2]} ${m![1]}`);
  const ours = (text: string) => text.split('\n').filter((l) => l.includes(t.id));
  return {
    frontendLinks: links(fe[0]!),
    filter: ours(fe[1]!),
    nat: ours(fe[2]!),
    publicAddresses: fe[3]!.split('\n').filter((l) => l.includes('/32')).map((l) => l.split(/\s+/)[3]),
    dnsmasq: fe[4]!.split('\n').filter(Boolean),
    nodeLinks: links(node[0]!),
    ebtables: node[1],
  };
}

async function services(): Promise<{ type: string; name: string; state: string }[]> {
  return JSON.parse(await t.mallee(['describe-services', '--output', 'json'])) as { type: string; name: string; state: string }[];
}

async function allEnabled(): Promise<true | undefined> {
  const s = await services();
  const types = new Set(s.map((x) => x.type));
  return ['cc', 'nc', 'sc', 'walrus'].every((k) => types.has(k)) && s.every((x) => x.state === 'ENABLED') ? true : undefined;
}

beforeAll(async () => {
  if (!canRun) return;
  const started = Date.now();
  const took: string[] = [];
  const phase = (what: string) => took.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t = await buildTopology({ sc: true, install: true });
  phase('cloud up');
  tools = netnsTools(t);
  tools.startGuestControl();
  pollLog = join(t.dir, 'polls.log');
  nextTree = join(t.dir, 'next-tree');
  // The newer build is made while the guest boots (it does not need the cloud).
  const tree = makeNextTree(nextTree);
  tree.catch(() => undefined);
  ({ instanceId, volumeId, eip, dataSum } = await serveWithVolume(t, tools, 'mallee-upgrade-test', phase));
  phase('volume and EIP');
  nextWire = await tree;
  domId = await domIdOf(instanceId);
  const net = await netState();
  // Sanity of the snapshot the restarts compare: it sees the guest's bridge, tap, dnsmasq and EIP rules.
  expect((net.nodeLinks as string[]).some((n) => n.startsWith(`${t.id}t`))).toBe(true);
  expect(net.dnsmasq).toHaveLength(1);
  expect((net.nat as string[]).some((r) => r.includes(`-d ${eip}/32`) && r.includes('DNAT'))).toBe(true);
  expect(net.publicAddresses).toContain(`${eip}/32`);
  poller = spawn('ip', ['netns', 'exec', t.ns.internet, process.execPath, join(repoRoot, 'test/e2e/helpers/http-poller.mjs'), `http://${eip}/`, `instance ${instanceId}`, pollLog, '100'], { stdio: 'ignore' });
  await eventually('the poller answered', async () => (polls().some((p) => p.ok) ? true : undefined), 10_000);
  phase('polling');
  console.log(`upgrade.test.ts: set-up: ${took.join(', ')}`);
}, 900_000);

afterAll(async () => {
  poller?.kill('SIGTERM');
  if (gaps.length) console.log(`upgrade.test.ts: longest gap between answered 100 ms polls through the EIP, per restart:\n${gaps.map((g) => `  ${g.svc.padEnd(6)} ${String(g.longestGapMs).padStart(5)} ms  (${g.failedPolls} of ${g.polls} polls unanswered; restart took ${g.restartMs} ms)`).join('\n')}`);
  const left = await t?.teardown();
  const unexpected = (left ?? []).filter((l) => !l.includes('guest-control.mjs') && !l.includes('http-poller.mjs'));
  if (unexpected.length) console.warn(`upgrade.test.ts teardown killed: ${unexpected.join('; ')}`);
}, 180_000);

describe.skipIf(!canRun)('rolling upgrade: clc, cc, sc, walrus and nc restarted one by one onto a newer build, a guest serving through its EIP all along', () => {
  const order: Svc[] = ['clc', 'cc', 'sc', 'walrus', 'nc'];
  it('the newer build is installed on the front end and the node by its deploy/install.sh under the running cloud: only the two changed files are written', async () => {
    const from = Date.now();
    for (const [root, role] of [[t.roots.frontend, 'frontend'], [t.roots.node1, 'node']] as const) {
      const r = await installHost(nextTree, root, role);
      expect(r.code, `install.sh --role ${role}: ${r.stderr}`).toBe(0);
      expect(`${r.stdout}${r.stderr}`, `install.sh --role ${role}`).toMatch(/tree: 2 written, 0 removed, \d+ unchanged/);
    }
    const g = gapIn(pollLog, from, Date.now());
    expect([g.polls > 0, g.failedPolls]).toEqual([true, 0]);
    expect(readFileSync(join(t.roots.frontend, 'opt/mallee/packages/wire/dist/src/protocol.js'), 'utf8')).toContain(`BUILD_WIRE_VERSION = ${nextWire};`);
  }, 300_000);

  for (const svc of order) {
    it(`${svc}: restarted on the newer build (wire N+1) as installed; the guest, its volume and its address stay, the page keeps answering`, async () => {
      const before = await netState();
      const from = Date.now();
      await t.stopDaemon(svc, 'SIGTERM');
      await t.startDaemon(svc);
      await eventually(`every component ENABLED after the ${svc} restart`, allEnabled, 120_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n${t.logs()}`);
      });
      const restartMs = Date.now() - from;
      // The daemons' first reconcile after start (the cc's network apply, the nc's adoption) is part of the restart.
      await sleep(2000);
      const to = Date.now();
      const g = gapIn(pollLog, from, to);
      gaps.push({ svc, ...g, restartMs });
      console.log(`upgrade.test.ts: ${svc} restart: longest gap ${g.longestGapMs} ms, ${g.failedPolls} of ${g.polls} polls unanswered, restart ${restartMs} ms`);
      expect(g.polls).toBeGreaterThan(0);
      // Every poll answered: the data path (DNAT/SNAT on the front end, the bridges and tunnel, the guest) is untouched.
      expect(g.failedPolls).toBe(0);
      expect(g.longestGapMs).toBeLessThan(1500);
      expect(await netState()).toEqual(before);
      expect(await domIdOf(instanceId)).toBe(domId);
      expect(bootsOf(instanceId)).toBe(1);
      // One boto3 run for both (a client start costs seconds on a loaded host).
      const seen = JSON.parse(await tools.boto3(`i = ec2.describe_instances(InstanceIds=['${instanceId}'])['Reservations'][0]['Instances'][0]
v = ec2.describe_volumes(VolumeIds=['${volumeId}'])['Volumes'][0]
print(json.dumps([i['State']['Name'], i.get('PublicIpAddress'), [[a['InstanceId'], a['State']] for a in v['Attachments']]]))`)) as unknown;
      expect(seen).toEqual(['running', eip, [[instanceId, 'attached']]]);
    }, 180_000);
  }

  it('an nc started on a node that lost the guest\'s tap from its bridge and its anti-spoofing chain puts them back', async () => {
    const tap = `${t.id}t${instanceId.slice(2)}`;
    const chain = tap.toUpperCase();
    await t.stopDaemon('nc', 'SIGTERM');
    // What a careless admin (or another tool) does to the node while its nc is down.
    await t.exec(t.ns.node, ['ip', 'link', 'set', tap, 'nomaster']);
    await t.exec(t.ns.node, ['ebtables', '-D', 'FORWARD', '-i', tap, '-j', chain]);
    await t.exec(t.ns.node, ['ebtables', '-F', chain]);
    await t.exec(t.ns.node, ['ebtables', '-X', chain]);
    await eventually('the page gone with the tap off its bridge', async () => ((await tools.fromInternet(eip)) === undefined ? true : undefined), 10_000);
    const from = Date.now();
    await t.startDaemon('nc');
    await eventually('the page back after the nc restart', () => tools.fromInternet(eip), 60_000);
    console.log(`upgrade.test.ts: nc start on a node that lost the guest's tap and rules: page back ${Date.now() - from} ms after the start`);
    const link = JSON.parse((await t.exec(t.ns.node, ['ip', '-j', 'link', 'show', tap])).stdout) as { master?: string }[];
    expect(link[0]?.master).toMatch(new RegExp(`^${t.id}br\\d+$`));
    const eb = (await t.exec(t.ns.node, ['ebtables', '-L'])).stdout;
    expect(eb).toContain(`-i ${tap} -j ${chain}`);
    expect(eb).toMatch(new RegExp(`Bridge chain: ${chain}, entries: 6`));
    expect(await domIdOf(instanceId)).toBe(domId);
    expect(bootsOf(instanceId)).toBe(1);
  }, 120_000);

  it('after the upgrade: the volume\'s data reads back from the target, it takes new writes, the clc ran the new migration', async () => {
    const out = await tools.inGuest(instanceId, 'sync; echo 3 > /proc/sys/vm/drop_caches; md5sum < /mnt/vol/data | cut -c1-32; dd if=/dev/urandom of=/mnt/vol/after bs=1M count=1 conv=fsync 2>/dev/null && echo wrote', 60_000);
    expect(out.trim().split('\n')).toEqual([dataSum, 'wrote']);
    expect(await tools.fromInternet(eip, '/volume.txt')).toBe(`${dataSum}\n`);
    const db = new Database(join(t.feHome, 'clc.sqlite'), { readonly: true });
    try {
      const newest = db.prepare('SELECT id, name FROM schema_migrations ORDER BY id DESC LIMIT 1').get() as { id: number; name: string };
      expect(newest.name).toBe(NEXT_MIGRATION);
      expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'upgrade_probe'").pluck().get()).toBe('upgrade_probe');
    } finally {
      db.close();
    }
    // Every daemon now speaks the newer wire version (a probe at a version nobody accepts is told which).
    const wire: Record<Svc, string> = {
      clc: 'http://127.0.0.1:8773/wire', cc: 'http://127.0.0.1:8774/wire', sc: 'http://127.0.0.1:8777/wire',
      walrus: 'http://127.0.0.1:8776/_mallee/wire', nc: `http://${ADDR.node}:8775/wire`,
    };
    for (const [svc, url] of Object.entries(wire)) {
      const r = await t.exec(t.ns.frontend, ['curl', '-s', '-m', '5', '-X', 'POST', '-H', 'content-type: application/xml', '-H', 'x-mallee-wire-version: 999', '--data', '<Envelope/>', url], { allowFail: true });
      expect(r.stdout, svc).toContain(`this component speaks ${nextWire} and`);
    }
    expect(gaps.map((g) => g.svc)).toEqual(['clc', 'cc', 'sc', 'walrus', 'nc']);
  }, 120_000);
});
