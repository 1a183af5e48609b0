// Fault injection: kill -9 of the clc, Walrus, sc, cc and nc (simulated) at random points of a mixed
// workload (RunInstances, TerminateInstances, PutObject, DeleteObject, and volumes, attachments and
// snapshots) from parallel clients, each daemon restarted by `mallee up` as an operator would; then: no
// acknowledged object lost or changed, no instance, volume or snapshot duplicated or orphaned (the clc and
// the node agree; tgtd holds exactly the attached volumes' targets; Walrus exactly the snapshots' chunks),
// every resource reaches a final state. An NC that stops answering is NOTREADY with its instances kept,
// and recovers when it returns. Walrus on a full disk (a small tmpfs home) answers clean S3 errors and
// keeps what it had.
//
// Elastic IPs join the workload (AllocateAddress, AssociateAddress, DisassociateAddress, ReleaseAddress, and
// the auto-assigned addresses of launches), and so do security group rules. The whole cloud runs in a network
// namespace of its own (a veth from this host reaches its BIND_ADDRESS), MANAGED over empty bridges standing in
// for the private and public interfaces, so the cc programs real iptables rules, bridges and public addresses
// while it is killed: the checks compare the cc's saved network state, the namespace's iptables (each hook once,
// one DNAT and one SNAT per mapped address, the default group's rules, nothing stale) and the public interface's
// addresses with the clc's.
//
// Extension point: `FAULT_TARGETS`, `OPERATIONS` and `MIX` below are tables (an operation with its
// bookkeeping, and a check of what the daemons reconciled) — see the README of test/faults.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signV4 } from '@mallee/aws-protocol';
import { nc, WireClient } from '@mallee/wire';
import { instancesOf, items } from '../e2e/helpers/ec2-client.js';
import { eventually, freePortBase, sleep, startCloud, type Cloud } from '../e2e/helpers/cloud.js';
import { deleteNetns } from '../e2e/helpers/netns.js';
import { registerTestImage } from '../e2e/helpers/images.js';
import { scTargetsOf, snapshotStoreOf } from '../e2e/helpers/ebs.js';

const OPS = Number(process.env.MALLEE_FAULT_OPS ?? 1000);
const SEED = Number(process.env.MALLEE_FAULT_SEED ?? 8);

/** A small seeded PRNG (mulberry32): the same seed gives the same workload and kill points. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let cloud: Cloud;
let image: string;
const FAULT_TARGETS = ['clc', 'walrus', 'sc', 'cc', 'nc'] as const;
type Target = (typeof FAULT_TARGETS)[number];

const pidOf = (svc: Target) => Number(readFileSync(join(cloud.home, 'run', `${svc}.pid`), 'utf8'));

// ---- the cloud's network namespace -----------------------------------------------------------
// A veth pair: this host's end 10.250.<n>.1, the namespace's end (every daemon's BIND_ADDRESS) 10.250.<n>.2.
// The cc's VNET_PRIVINTERFACE and VNET_PUBINTERFACE are empty bridges in it: this kernel has no dummy devices, and
// guests are simulated, so nothing crosses them. Only this namespace is touched; it goes, with whatever runs in
// it, at the end.
const NS = `mallee-faults-${process.pid}`;
const NET = `10.250.${process.pid % 250}`;
const VETH = `mflt${process.pid % 100000}`;
const PREFIX = 'flt';
const inNs = (...argv: string[]) => execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8' });

async function buildNetns(): Promise<void> {
  await removeNetns();
  const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
  ip('netns', 'add', NS);
  ip('link', 'add', `${VETH}h`, 'type', 'veth', 'peer', 'name', `${VETH}n`);
  ip('link', 'set', `${VETH}n`, 'netns', NS);
  ip('addr', 'add', `${NET}.1/30`, 'dev', `${VETH}h`);
  ip('link', 'set', `${VETH}h`, 'up');
  inNs('ip', 'link', 'set', 'lo', 'up');
  inNs('ip', 'addr', 'add', `${NET}.2/30`, 'dev', `${VETH}n`);
  inNs('ip', 'link', 'set', `${VETH}n`, 'up');
  for (const [dev, addr] of [['fltpriv0', '10.251.0.1/24'], ['fltpub0', '203.0.113.1/24']] as const) {
    inNs('ip', 'link', 'add', dev, 'type', 'bridge');
    inNs('ip', 'addr', 'add', addr, 'dev', dev);
    inNs('ip', 'link', 'set', dev, 'up');
  }
}

async function removeNetns(): Promise<void> {
  if (!existsSync(`/run/netns/${NS}`)) return;
  // With what `mallee down` leaves running on purpose (the cc's dnsmasq keeps serving guests across its restarts).
  await deleteNetns(NS);
  try {
    execFileSync('ip', ['link', 'del', `${VETH}h`], { stdio: 'pipe' });
  } catch {
    // went with the namespace's end
  }
}

/** The lines of `iptables-save` ccRules reads (Mallee's chains of prefix PREFIX). */
const RULE_LINE = {
  hook: new RegExp(`^-A (INPUT|FORWARD|PREROUTING|POSTROUTING) -j ${PREFIX}-`),
  dnat: new RegExp(`^-A ${PREFIX}-PRE -d (\\S+)/32 -j DNAT --to-destination (\\S+)$`),
  snat: new RegExp(`^-A ${PREFIX}-POST -s (\\S+)/32 .* -j SNAT --to-source (\\S+)$`),
  groupChain: new RegExp(`^:(${PREFIX}-G\\d+) `),
  ingress: new RegExp(`^-A (${PREFIX}-G\\d+) -s (\\S+) -p tcp -m tcp --dport (\\d+) -j ACCEPT$`),
};

/** What the cc has programmed in the namespace: its hooks, DNAT and SNAT rules, group chains and the public interface's addresses. */
function ccRules(): { hooks: string[]; dnat: string[]; snat: string[]; published: string[]; groupChains: string[]; ingress: Map<string, string[]> } {
  const lines = inNs('iptables-save').split('\n');
  const hooks = lines.filter((l) => RULE_LINE.hook.test(l));
  const dnat = lines.flatMap((l) => { const m = RULE_LINE.dnat.exec(l); return m ? [`${m[1]}→${m[2]}`] : []; });
  const snat = lines.flatMap((l) => { const m = RULE_LINE.snat.exec(l); return m ? [`${m[2]}→${m[1]}`] : []; });
  const groupChains = lines.flatMap((l) => { const m = RULE_LINE.groupChain.exec(l); return m ? [m[1]!] : []; });
  // Each group chain's tcp rules of RULE_PORTS, as `port from cidr` (a duplicate shows twice).
  const ingress = new Map<string, string[]>(groupChains.map((g) => [g, []]));
  for (const l of lines) {
    const m = RULE_LINE.ingress.exec(l);
    if (m && RULE_PORTS.includes(Number(m[3]))) ingress.get(m[1]!)?.push(`${m[3]} from ${m[2]}`);
  }
  for (const list of ingress.values()) list.sort();
  const shown = JSON.parse(inNs('ip', '-j', '-4', 'addr', 'show', 'dev', 'fltpub0')) as { addr_info?: { local: string; prefixlen: number }[] }[];
  const published = (shown[0]?.addr_info ?? []).filter((a) => a.prefixlen === 32).map((a) => a.local);
  return { hooks, dnat, snat, published, groupChains, ingress };
}

// ---- S3 with SigV4 ---------------------------------------------------------------------------

async function s3(method: string, key: string, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  const url = new URL(`${cloud.env.S3_URL}/faults/${key}`);
  const payload = body ?? Buffer.alloc(0);
  const s = signV4({ method, path: url.pathname, headers: { host: url.host, 'x-amz-content-sha256': createHash('sha256').update(payload).digest('hex') }, body: payload, accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY!, region: cloud.region, service: 's3', doubleEncodePath: false });
  const res = await fetch(url, { method, headers: s.headers, ...(body ? { body } : {}), signal: AbortSignal.timeout(20_000) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

// ---- the workload ------------------------------------------------------------------------------

type Outcome = 'ack' | 'refused' | 'unknown';
interface KeyOp { kind: 'put' | 'delete'; content?: string; outcome: Outcome }
const keyHistory = new Map<string, KeyOp[]>();
interface Launch { token: string; outcome: Outcome; ids: string[]; ackedAt?: number }
const launches: Launch[] = [];
const terminated = new Map<string, Outcome>();

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const outcomeOf = (status: number): Outcome => (status === 200 || status === 204 ? 'ack' : status >= 500 || status === 0 ? 'unknown' : 'refused');

// ---- EBS bookkeeping ---------------------------------------------------------------------------

const ZONE = 'mallee-1a';
const TAG = 'faults-op';
interface VolOp { kind: 'create' | 'attach' | 'detach' | 'delete'; outcome: Outcome; instanceId?: string }
/**
 * A CreateVolume (its ClientToken and parameters, to retry it as they were) and what followed on that volume
 * (only acknowledged volumes, whose id is known, get more).
 */
interface Vol { tag: string; token: string; params: Record<string, string | number>; id?: string; history: VolOp[] }
const volumes: Vol[] = [];
interface Snap { tag: string; id?: string; volumeId: string; created: Outcome; deleted?: Outcome }
const snaps: Snap[] = [];
/** How each EBS call went (action and reply code), for the log. */
const tally = new Map<string, number>();

const tagSpec = (type: string, value: string) => ({ 'TagSpecification.1.ResourceType': type, 'TagSpecification.1.Tag.1.Key': TAG, 'TagSpecification.1.Tag.1.Value': value });
const pickOf = <T>(r: () => number, xs: T[]): T | undefined => (xs.length ? xs[Math.floor(r() * xs.length)] : undefined);
async function ec2(action: string, params: Record<string, string | number>): Promise<{ outcome: Outcome; xml?: Record<string, unknown>; code?: string }> {
  try {
    const res = await cloud.client.call(action, params);
    const key = `${action} ${res.status === 200 ? 'ok' : res.code ?? res.status}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
    return { outcome: outcomeOf(res.status), xml: res.xml, ...(res.code ? { code: res.code } : {}) };
  } catch {
    return { outcome: 'unknown' };
  }
}
// ---- elastic IP bookkeeping --------------------------------------------------------------------

// A pool smaller than the launches at 1,000 operations: auto-assignment runs it dry, as a busy cloud does.
const POOL = Array.from({ length: 96 }, (_, i) => `198.51.100.${i + 1}`);
/** Every address operation in the order they were sent (seq), so "the last associate to this instance" is known. */
let addrSeq = 0;
interface AddrOp { kind: 'associate' | 'disassociate' | 'release'; outcome: Outcome; instanceId?: string; seq: number }
interface Addr { ip?: string; allocated: Outcome; seq: number; history: AddrOp[] }
const addrs: Addr[] = [];
/** What the workload may assume of an elastic address, as believed() does for volumes. */
function believedAddr(a: Addr): 'allocated' | 'associated' | 'released' | 'unsure' {
  if (a.allocated !== 'ack') return 'unsure';
  const last = a.history.findLast((o) => o.outcome !== 'refused');
  if (!last) return 'allocated';
  if (last.outcome === 'unknown') return 'unsure';
  // An instance terminated (or one whose termination is unknown) may have dropped it, or not yet.
  if (last.kind === 'associate') return terminated.has(last.instanceId!) ? 'unsure' : 'associated';
  return last.kind === 'release' ? 'released' : 'allocated';
}

// ---- security group bookkeeping ------------------------------------------------------------------

// Ingress rules of the default group (every instance's): tcp to one of 12 ports from a CIDR of its own, authorized
// and revoked at random. Operations on one port never overlap (each waits for the one before), so the last one
// that answered says what the rule is: acknowledged, or refused as InvalidPermission.Duplicate (it is there) or
// .NotFound (it is not); an unknown outcome leaves it unsure.
const RULE_PORTS = Array.from({ length: 12 }, (_, i) => 7000 + i);
const ruleCidr = (port: number) => `10.${200 + (port % 4)}.0.0/16`;
interface RuleOp { kind: 'authorize' | 'revoke'; outcome: Outcome; code?: string }
const ruleHistory = new Map<number, RuleOp[]>();
const ruleTurn = new Map<number, Promise<void>>();
function believedRule(port: number): 'present' | 'absent' | 'unsure' {
  const last = ruleHistory.get(port)?.at(-1);
  if (!last) return 'absent';
  if (last.outcome === 'ack') return last.kind === 'authorize' ? 'present' : 'absent';
  if (last.code === 'InvalidPermission.Duplicate') return 'present';
  if (last.code === 'InvalidPermission.NotFound') return 'absent';
  return 'unsure';
}
async function ruleOp(kind: RuleOp['kind'], r: () => number): Promise<void> {
  const port = RULE_PORTS[Math.floor(r() * RULE_PORTS.length)]!;
  const before = ruleTurn.get(port) ?? Promise.resolve();
  const mine = before.then(async () => {
    const op: RuleOp = { kind, outcome: 'unknown' };
    (ruleHistory.get(port) ?? ruleHistory.set(port, []).get(port)!).push(op);
    const res = await ec2(kind === 'authorize' ? 'AuthorizeSecurityGroupIngress' : 'RevokeSecurityGroupIngress',
      { GroupName: 'default', IpProtocol: 'tcp', FromPort: port, ToPort: port, CidrIp: ruleCidr(port) });
    op.outcome = res.outcome;
    if (res.code) op.code = res.code;
  });
  ruleTurn.set(port, mine);
  await mine;
}

/** The default group's tcp rules of RULE_PORTS as the clc lists them: `port from cidr`. */
async function clcRules(): Promise<string[]> {
  const groups = items((await cloud.client.ok('DescribeSecurityGroups', { 'GroupName.1': 'default' })).securityGroupInfo);
  return items(groups[0]?.ipPermissions).filter((p) => p.ipProtocol === 'tcp' && p.fromPort === p.toPort && RULE_PORTS.includes(Number(p.fromPort)))
    .flatMap((p) => items(p.ipRanges).map((x) => `${String(p.fromPort)} from ${String(x.cidrIp)}`)).sort();
}

/** The cc's address mappings as it last saved them (its `desired` network state: what it programs into iptables). */
function ccAddressMappings(): Map<string, string> {
  const db = new Database(join(cloud.home, 'cc.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const raw = db.prepare("SELECT data FROM network_state WHERE key = 'desired'").pluck().get() as string | undefined;
    const state = raw ? (JSON.parse(raw) as { addresses?: { publicIp: string; privateIp: string }[] }) : {};
    return new Map((state.addresses ?? []).map((a) => [a.publicIp, a.privateIp]));
  } finally {
    db.close();
  }
}

/** Public → private address of every running instance that has a public one, as the clc says. */
async function clcAddressMappings(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const i of instancesOf(await cloud.client.ok('DescribeInstances'))) {
    if (i.state === 'running' && i.item.ipAddress) out.set(String(i.item.ipAddress), String(i.item.privateIpAddress));
  }
  return out;
}

/**
 * The cc maps exactly the clc's public addresses to exactly their instances' private ones (none stale, none
 * missing): in its saved state, in the namespace's iptables (each of Mallee's four hooks once, one DNAT and one
 * SNAT per address) and on the public interface.
 */
async function expectCcAddressesMatchClc(): Promise<void> {
  let last = '';
  await eventually('the cc maps the public addresses the clc has', async () => {
    const clc = await clcAddressMappings();
    const ccMap = ccAddressMappings();
    const stale = [...ccMap].filter(([pub, priv]) => clc.get(pub) !== priv).map(([pub, priv]) => `${pub}→${priv}`);
    const missing = [...clc].filter(([pub, priv]) => ccMap.get(pub) !== priv).map(([pub, priv]) => `${pub}→${priv}`);
    const want = [...clc].map(([pub, priv]) => `${pub}→${priv}`).sort();
    const rules = ccRules();
    const off: string[] = [];
    if (rules.hooks.length !== 4) {
      const per = new Map<string, number>();
      for (const chain of rules.hooks.map((h) => h.split(' ')[1]!)) per.set(chain, (per.get(chain) ?? 0) + 1);
      off.push(`hooks (one each wanted): ${['INPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING'].map((c) => `${c}×${per.get(c) ?? 0}`).join(' ')}`);
    }
    for (const [kind, got] of [['DNAT', rules.dnat], ['SNAT', rules.snat]] as const) {
      if (JSON.stringify([...got].sort()) !== JSON.stringify(want)) off.push(`${kind} rules ${[...got].sort().join(' ') || 'none'}`);
    }
    const pubs = [...clc.keys()].sort();
    if (JSON.stringify([...rules.published].sort()) !== JSON.stringify(pubs)) off.push(`on fltpub0: ${[...rules.published].sort().join(' ') || 'none'}`);
    last = `cc maps but the clc has not: ${stale.join(' ') || 'none'}; the clc has but the cc does not map: ${missing.join(' ') || 'none'}; ` +
      `the clc has ${want.join(' ') || 'none'}; iptables and addresses: ${off.join('; ') || 'as the clc has'}`;
    return stale.length || missing.length || off.length ? undefined : true;
  }, 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${last}`);
  });
}

/** What the workload may assume of a volume: from its last acknowledged operation (an unknown one since makes it unsure). */
function believed(v: Vol): 'available' | 'attached' | 'deleted' | 'unsure' {
  const last = v.history.findLast((o) => o.outcome !== 'refused');
  if (!last || last.outcome === 'unknown' || (last.kind === 'attach' && terminated.has(last.instanceId!))) return 'unsure';
  return last.kind === 'create' || last.kind === 'detach' ? 'available' : last.kind === 'attach' ? 'attached' : 'deleted';
}

const OPERATIONS = {
  async put(worker: number, r: () => number) {
    const key = `w${worker}/k${Math.floor(r() * 8)}`;
    const content = `${key} ${r().toString(36)} `.repeat(1 + Math.floor(r() * 2000));
    const op: KeyOp = { kind: 'put', content: md5(content), outcome: 'unknown' };
    (keyHistory.get(key) ?? keyHistory.set(key, []).get(key)!).push(op);
    op.outcome = await s3('PUT', key, Buffer.from(content)).then((x) => outcomeOf(x.status), () => 'unknown' as const);
  },
  async delete(worker: number, r: () => number) {
    const key = `w${worker}/k${Math.floor(r() * 8)}`;
    const op: KeyOp = { kind: 'delete', outcome: 'unknown' };
    (keyHistory.get(key) ?? keyHistory.set(key, []).get(key)!).push(op);
    op.outcome = await s3('DELETE', key).then((x) => outcomeOf(x.status), () => 'unknown' as const);
  },
  async run(worker: number, r: () => number) {
    const launch: Launch = { token: `faults-${SEED}-${worker}-${r().toString(36).slice(2)}`, outcome: 'unknown', ids: [] };
    launches.push(launch);
    try {
      const res = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 + Math.floor(r() * 2), ClientToken: launch.token });
      launch.outcome = outcomeOf(res.status);
      if (res.status === 200) {
        launch.ids = items(res.xml.instancesSet).map((i) => String(i.instanceId));
        launch.ackedAt = Date.now();
      }
    } catch {
      launch.outcome = 'unknown';
    }
  },
  async terminate(_worker: number, r: () => number) {
    const known = launches.flatMap((l) => l.ids).filter((id) => !terminated.has(id));
    if (!known.length) return;
    const id = known[Math.floor(r() * known.length)]!;
    terminated.set(id, 'unknown');
    try {
      const res = await cloud.client.call('TerminateInstances', { 'InstanceId.1': id });
      terminated.set(id, outcomeOf(res.status));
    } catch {
      terminated.set(id, 'unknown');
    }
  },
  // EBS: every created volume and snapshot carries a tag naming the operation that made it, so that what
  // an unacknowledged CreateVolume/CreateSnapshot left behind is accounted for (and never made twice).
  async createVolume(_worker: number, r: () => number) {
    const from = r() < 0.3 ? pickOf(r, snaps.filter((x) => x.id && x.created === 'ack' && !x.deleted)) : undefined;
    const tag = `v${volumes.length}-${r().toString(36).slice(2, 8)}`;
    const vol: Vol = {
      tag, token: `faults-${SEED}-${tag}`, history: [{ kind: 'create', outcome: 'unknown' }],
      params: { AvailabilityZone: ZONE, ...(from ? { SnapshotId: from.id! } : { Size: 1 }), ...tagSpec('volume', tag) },
    };
    volumes.push(vol);
    const res = await ec2('CreateVolume', { ...vol.params, ClientToken: vol.token });
    vol.history[0]!.outcome = res.outcome;
    if (res.outcome === 'ack') vol.id = String(res.xml!.volumeId);
  },
  async attachVolume(_worker: number, r: () => number) {
    const vol = pickOf(r, volumes.filter((v) => v.id && believed(v) === 'available'));
    // An instance launched a few seconds ago is running by now (simulated node), unless a kill held it up.
    const instanceId = pickOf(r, launches.filter((l) => l.outcome === 'ack' && Date.now() - l.ackedAt! > 3000).flatMap((l) => l.ids).filter((id) => !terminated.has(id)));
    if (!vol || !instanceId) return;
    const op: VolOp = { kind: 'attach', outcome: 'unknown', instanceId };
    vol.history.push(op);
    op.outcome = (await ec2('AttachVolume', { VolumeId: vol.id!, InstanceId: instanceId, Device: `/dev/sd${'fghijklmnop'[Math.floor(r() * 11)]}` })).outcome;
  },
  async detachVolume(_worker: number, r: () => number) {
    const vol = pickOf(r, volumes.filter((v) => v.id && believed(v) === 'attached'));
    if (!vol) return;
    const op: VolOp = { kind: 'detach', outcome: 'unknown' };
    vol.history.push(op);
    op.outcome = (await ec2('DetachVolume', { VolumeId: vol.id! })).outcome;
  },
  async deleteVolume(_worker: number, r: () => number) {
    const vol = pickOf(r, volumes.filter((v) => v.id && believed(v) === 'available'));
    if (!vol) return;
    const op: VolOp = { kind: 'delete', outcome: 'unknown' };
    vol.history.push(op);
    op.outcome = (await ec2('DeleteVolume', { VolumeId: vol.id! })).outcome;
  },
  async createSnapshot(_worker: number, r: () => number) {
    const vol = pickOf(r, volumes.filter((v) => v.id && believed(v) !== 'deleted'));
    if (!vol) return;
    // Some data first (written into the backing file, as a guest would): snapshots have chunks to upload and share.
    const file = join(cloud.home, 'sc', 'volumes', `${vol.id!}.img`);
    if (existsSync(file)) {
      const fd = openSync(file, 'r+');
      for (let n = 1 + Math.floor(r() * 3); n > 0; n--) writeSync(fd, randomBytes(256 * 1024), 0, 256 * 1024, Math.floor(r() * 1023) * 1024 * 1024);
      closeSync(fd);
    }
    const snap: Snap = { tag: `s${snaps.length}-${r().toString(36).slice(2, 8)}`, volumeId: vol.id!, created: 'unknown' };
    snaps.push(snap);
    const res = await ec2('CreateSnapshot', { VolumeId: vol.id!, ...tagSpec('snapshot', snap.tag) });
    snap.created = res.outcome;
    if (res.outcome === 'ack') snap.id = String(res.xml!.snapshotId);
  },
  async deleteSnapshot(_worker: number, r: () => number) {
    const snap = pickOf(r, snaps.filter((x) => x.id && !x.deleted));
    if (!snap) return;
    snap.deleted = 'unknown';
    snap.deleted = (await ec2('DeleteSnapshot', { SnapshotId: snap.id! })).outcome;
  },
  // Elastic IPs. AllocateAddress has no ClientToken (as in EC2): an unacknowledged one may have taken an address.
  async allocateAddress() {
    const a: Addr = { allocated: 'unknown', seq: addrSeq++, history: [] };
    addrs.push(a);
    const res = await ec2('AllocateAddress', {});
    a.allocated = res.outcome;
    if (res.outcome === 'ack') a.ip = String(res.xml!.publicIp);
  },
  async associateAddress(_worker: number, r: () => number) {
    const a = pickOf(r, addrs.filter((x) => x.ip && (believedAddr(x) === 'allocated' || believedAddr(x) === 'associated')));
    const instanceId = pickOf(r, launches.filter((l) => l.outcome === 'ack' && Date.now() - l.ackedAt! > 3000).flatMap((l) => l.ids).filter((id) => !terminated.has(id)));
    if (!a || !instanceId) return;
    const op: AddrOp = { kind: 'associate', outcome: 'unknown', instanceId, seq: addrSeq++ };
    a.history.push(op);
    op.outcome = (await ec2('AssociateAddress', { PublicIp: a.ip!, InstanceId: instanceId })).outcome;
  },
  async disassociateAddress(_worker: number, r: () => number) {
    const a = pickOf(r, addrs.filter((x) => x.ip && believedAddr(x) === 'associated'));
    if (!a) return;
    const op: AddrOp = { kind: 'disassociate', outcome: 'unknown', seq: addrSeq++ };
    a.history.push(op);
    op.outcome = (await ec2('DisassociateAddress', { PublicIp: a.ip! })).outcome;
  },
  async releaseAddress(_worker: number, r: () => number) {
    const a = pickOf(r, addrs.filter((x) => x.ip && believedAddr(x) === 'allocated'));
    if (!a) return;
    const op: AddrOp = { kind: 'release', outcome: 'unknown', seq: addrSeq++ };
    a.history.push(op);
    op.outcome = (await ec2('ReleaseAddress', { PublicIp: a.ip! })).outcome;
  },
  async authorize(_worker: number, r: () => number) {
    await ruleOp('authorize', r);
  },
  async revoke(_worker: number, r: () => number) {
    await ruleOp('revoke', r);
  },
};
const MIX: [keyof typeof OPERATIONS, number][] = [
  ['put', 14], ['delete', 6], ['run', 17], ['terminate', 10],
  ['createVolume', 9], ['attachVolume', 8], ['detachVolume', 6], ['deleteVolume', 5], ['createSnapshot', 8], ['deleteSnapshot', 3],
  ['allocateAddress', 4], ['associateAddress', 4], ['disassociateAddress', 2], ['releaseAddress', 1],
  ['authorize', 2], ['revoke', 1],
];

function pick(r: () => number): keyof typeof OPERATIONS {
  let x = r() * 100;
  for (const [op, w] of MIX) if ((x -= w) < 0) return op;
  return 'put';
}

/** This cloud's tgt targets (its SC's IQN prefix) are one per attached volume, backed by that volume's file: no orphan, none missing. */
async function expectTargetsMatchAttachments(): Promise<void> {
  let last = '';
  await eventually('tgt targets match the attachments', async () => {
    const attached = items((await cloud.client.ok('DescribeVolumes')).volumeSet).filter((v) => v.status === 'in-use').map((v) => String(v.volumeId)).sort();
    const targets = scTargetsOf(cloud.home);
    const exported = targets.map((t) => /\.(vol-[0-9a-f]+)\./.exec(t.iqn)?.[1] ?? t.iqn).sort();
    const misbacked = targets.filter((t) => t.backing.join() !== join(cloud.home, 'sc', 'volumes', `${/\.(vol-[0-9a-f]+)\./.exec(t.iqn)?.[1]}.img`));
    last = `attached ${attached.join(' ') || '-'}; targets ${targets.map((t) => `${t.iqn}=${t.backing.join(',') || 'no LUN'}`).join(' ') || '-'}`;
    return JSON.stringify(attached) === JSON.stringify(exported) && !misbacked.length ? true : undefined;
  }, 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${last}`);
  });
}

/** Every chunk object in the SC's bucket is named by a manifest of a snapshot that exists, every named chunk is there. */
async function expectChunksMatchSnapshots(): Promise<number> {
  let last = '';
  return eventually('Walrus chunks match the snapshots', async () => {
    const { chunks, manifests } = await snapshotStoreOf(cloud);
    const snapshots = new Set(items((await cloud.client.ok('DescribeSnapshots', { 'Owner.1': 'self' })).snapshotSet).filter((x) => x.status === 'completed').map((x) => String(x.snapshotId)));
    const referenced = new Set([...manifests.values()].flat());
    const have = new Set(chunks);
    const leaked = chunks.filter((k) => !referenced.has(k));
    const missing = [...referenced].filter((k) => !have.has(k));
    const orphanManifests = [...manifests.keys()].filter((id) => !snapshots.has(id));
    const absentManifests = [...snapshots].filter((id) => !manifests.has(id));
    last = `leaked chunks ${leaked.length}, missing chunks ${missing.length}, manifests of no snapshot ${orphanManifests.join(' ') || '-'}, snapshots without manifest ${absentManifests.join(' ') || '-'}`;
    return leaked.length || missing.length || orphanManifests.length || absentManifests.length ? undefined : chunks.length;
  }, 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${last}`);
  });
}

beforeAll(async () => {
  // Volumes are sparse 1 GiB files: the storage limit is not what is under test.
  // MANAGED over the namespace's stand-in interfaces (VXLAN: this kernel has no 802.1Q). One network of 1,024
  // addresses holds every instance of the default group.
  await buildNetns();
  cloud = await startCloud({
    netns: NS,
    conf: {
      BIND_ADDRESS: `${NET}.2`,
      SIM_CORES: 512, SIM_MEM: 512 * 1024, SIM_DISK: 512 * 20, SC_MAX_TOTAL_STORAGE_GB: 400,
      VNET_MODE: 'MANAGED', VNET_ENCAP: 'vxlan', VNET_PREFIX: PREFIX, VNET_PRIVINTERFACE: 'fltpriv0', VNET_PUBINTERFACE: 'fltpub0',
      VNET_ADDRSPERNET: 1024, VNET_PUBLICIPS: `${POOL[0]}-${POOL.at(-1)}`,
    },
  });
  image = await registerTestImage(cloud, 'faults-images/img.manifest.xml', 'faults');
  const bucket = new URL(`${cloud.env.S3_URL}/faults`);
  const s = signV4({ method: 'PUT', path: bucket.pathname, headers: { host: bucket.host, 'x-amz-content-sha256': createHash('sha256').update('').digest('hex') }, accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY!, region: cloud.region, service: 's3', doubleEncodePath: false });
  expect((await fetch(bucket, { method: 'PUT', headers: s.headers })).status).toBe(200);
}, 180_000);
afterAll(async () => {
  await cloud?.stop();
  await removeNetns();
});

describe('kill -9 during a mixed workload', () => {
  const kills: string[] = [];

  it(`${OPS} operations from 4 clients while each daemon is killed at random points and restarted`, async () => {
    const r = rng(SEED);
    let next = 0;
    const plan = Array.from({ length: OPS }, () => ({ op: pick(r), seed: Math.floor(r() * 2 ** 31) }));
    // Kill points: each target once, at seeded positions in the workload, plus one more random one.
    const killAt = new Map<number, Target>();
    for (const t of [...FAULT_TARGETS, FAULT_TARGETS[Math.floor(r() * FAULT_TARGETS.length)]!]) {
      let at: number;
      do at = 10 + Math.floor(r() * (OPS - 20)); while (killAt.has(at));
      killAt.set(at, t);
    }
    let restarting: Promise<void> = Promise.resolve();
    // Killed and not restarted yet (a daemon down that is not here crashed on its own: the kill says so).
    const down = new Set<Target>();
    const worker = async (w: number) => {
      while (next < plan.length) {
        const i = next++;
        const target = killAt.get(i);
        if (target) {
          // The same daemon twice: its second kill waits for the restart of the first.
          if (down.has(target)) await restarting;
          // Kill now, while the other clients' requests are in flight; restart a moment later.
          const pid = pidOf(target);
          try {
            process.kill(pid, 'SIGKILL');
          } catch (err) {
            throw new Error(`${target} (pid ${pid}) was not running at operation ${i}: ${(err as Error).message}\n${cloud.logs()}`);
          }
          kills.push(`${target}@${i}`);
          down.add(target);
          restarting = restarting.then(async () => {
            await sleep(300 + Math.floor(r() * 1500));
            // A kill that lands while `up` waits for the cloud fails that `up`: run it again, as an operator would.
            for (let attempt = 1; ; attempt++) {
              try {
                await cloud.mallee(['up', '--detach']);
                break;
              } catch (err) {
                if (attempt === 3) throw err;
                await sleep(1000);
              }
            }
            down.clear();
          });
        }
        // While a daemon is down, clients slow down (as retrying ones do) instead of spending the workload on refusals.
        if (down.size) await sleep(400);
        const p = plan[i]!;
        await OPERATIONS[p.op](w, rng(p.seed));
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    await restarting;
    await cloud.mallee(['up', '--detach']);
    expect(kills).toHaveLength(FAULT_TARGETS.length + 1);
    const acked = launches.filter((l) => l.outcome === 'ack').length;
    console.log(`kills: ${kills.join(', ')}; launches acknowledged ${acked}/${launches.length}; S3 ops acknowledged ${[...keyHistory.values()].flat().filter((o) => o.outcome === 'ack').length}/${[...keyHistory.values()].flat().length}`);
    console.log(`EBS and address calls: ${[...tally].sort().map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    expect(acked).toBeGreaterThan(0);
  }, 600_000);

  it('no acknowledged object was lost or changed; unacknowledged writes left one of the attempted states', async () => {
    for (const [key, history] of keyHistory) {
      const lastAck = history.map((o) => o.outcome).lastIndexOf('ack');
      // Final states allowed: after the last acknowledged op, or after any later op whose outcome is unknown.
      const allowed = new Set<string>();
      const state = (o: KeyOp) => (o.kind === 'delete' ? 'absent' : o.content!);
      if (lastAck >= 0) allowed.add(state(history[lastAck]!));
      else allowed.add('absent');
      for (const o of history.slice(lastAck + 1)) if (o.outcome === 'unknown') allowed.add(state(o));
      const got = await s3('GET', key);
      const actual = got.status === 404 ? 'absent' : got.status === 200 ? md5(got.body) : `status ${got.status}`;
      if (lastAck < 0 && actual !== 'absent' && history.some((o) => o.content === actual)) continue;
      expect(allowed, `${key}: ${history.map((o) => `${o.kind}:${o.outcome}`).join(' ')}`).toContain(actual);
    }
  });

  it('no instance duplicated: an unacknowledged launch retried with its ClientToken is the same launch', async () => {
    for (const l of launches.filter((x) => x.outcome !== 'ack')) {
      const res = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1, ClientToken: l.token });
      if (res.status === 200) l.ids = items(res.xml.instancesSet).map((i) => String(i.instanceId));
      else expect([res.status, res.code], res.body).toEqual([400, 'InvalidParameterValue']); // the launch failed: nothing exists
    }
    const all = instancesOf(await cloud.client.ok('DescribeInstances'));
    const seen = new Map<string, number>();
    for (const i of all) seen.set(i.instanceId, (seen.get(i.instanceId) ?? 0) + 1);
    expect([...seen].filter(([, n]) => n > 1)).toEqual([]);
    const launched = new Set(launches.flatMap((l) => l.ids));
    for (const l of launches.filter((x) => x.outcome === 'ack')) for (const id of l.ids) expect(seen.get(id), `${id} (acknowledged) listed once`).toBe(1);
    // Nothing exists that no launch accounts for.
    expect(all.map((i) => i.instanceId).filter((id) => !launched.has(id))).toEqual([]);
  });

  it('no volume duplicated: an unacknowledged create retried with its ClientToken is the same volume', async () => {
    for (const v of volumes.filter((x) => x.history[0]!.outcome !== 'ack')) {
      const res = await cloud.client.call('CreateVolume', { ...v.params, ClientToken: v.token });
      // The volume it made, or (if it made none) a new one; never refused for its own parameters. A create that
      // made none from a snapshot deleted since is refused as any create from it would be.
      if (res.status === 200) v.id = String(res.xml.volumeId);
      else expect([res.status, res.code], res.body).toEqual([400, 'InvalidSnapshot.NotFound']);
    }
    // Each retry's volume is checked to be the one listed under its tag, and no tag listed twice, below.
  });

  it('every volume and snapshot reaches a final state; none is lost, duplicated or unaccounted for', async () => {
    const FINAL_VOLUME = new Set(['available', 'in-use', 'error']);
    const started = Date.now();
    const waited = new Map<string, number>();
    const settled = await eventually('every volume and snapshot in a final state', async () => {
      const vols = items((await cloud.client.ok('DescribeVolumes')).volumeSet);
      const ss = items((await cloud.client.ok('DescribeSnapshots', { 'Owner.1': 'self' })).snapshotSet);
      const pending = [
        ...vols.filter((v) => !FINAL_VOLUME.has(String(v.status)) || items(v.attachmentSet).some((a) => a.status !== 'attached')).map((v) => `${String(v.volumeId)} ${String(v.status)}${items(v.attachmentSet).map((a) => `/${String(a.status)}`).join('')}`),
        ...ss.filter((x) => x.status !== 'completed' && x.status !== 'error').map((x) => `${String(x.snapshotId)} ${String(x.status)} ${String(x.progress)}`),
      ];
      for (const p of pending) waited.set(p, Date.now() - started);
      return pending.length ? undefined : { vols, ss };
    }, 240_000);
    console.log(`settled in ${Math.round((Date.now() - started) / 1000)} s; waited for: ${[...waited].map(([p, ms]) => `${p} (${Math.round(ms / 1000)} s)`).join(', ') || 'nothing'}`);
    const tagOf = (x: Record<string, unknown>) => String(items(x.tagSet).find((t) => t.key === TAG)?.value ?? '');
    const byTag = <T extends { tag: string }>(made: T[], listed: Record<string, unknown>[], idKey: string) => {
      const known = new Map(made.map((m) => [m.tag, m]));
      // Nothing exists that no operation made, and no operation made two.
      expect(listed.filter((x) => !known.has(tagOf(x))).map((x) => x[idKey]), 'unaccounted for').toEqual([]);
      const count = new Map<string, number>();
      for (const x of listed) count.set(tagOf(x), (count.get(tagOf(x)) ?? 0) + 1);
      expect([...count].filter(([, n]) => n > 1), 'made twice').toEqual([]);
      return new Map(listed.map((x) => [tagOf(x), x]));
    };
    const vols = byTag(volumes, settled.vols, 'volumeId');
    const instances = new Map(instancesOf(await cloud.client.ok('DescribeInstances')).map((i) => [i.instanceId, i.state]));
    for (const v of volumes) {
      const got = vols.get(v.tag);
      const what = `${v.tag} ${v.id ?? '(id unknown)'}: ${v.history.map((o) => `${o.kind}:${o.outcome}`).join(' ')} → ${got ? String(got.status) : 'absent'}`;
      if (got && v.id) expect(got.volumeId, what).toBe(v.id);
      // Only a create that was never acknowledged may have failed.
      if (got?.status === 'error') expect(v.history[0]!.outcome, what).not.toBe('ack');
      const state = believed(v);
      if (state === 'deleted') expect(got, what).toBeUndefined();
      else if (state === 'available') expect(got?.status, what).toBe('available');
      else if (state === 'attached') {
        const last = v.history.findLast((o) => o.outcome === 'ack')!;
        if (instances.get(last.instanceId!) === 'running') expect([got?.status, items(got?.attachmentSet)[0]?.instanceId], what).toEqual(['in-use', last.instanceId]);
      } else if (v.history[0]!.outcome === 'ack' && !v.history.some((o) => o.kind === 'delete')) expect(got, what).toBeDefined();
      // In use only by an instance that runs.
      if (got?.status === 'in-use') expect(instances.get(String(items(got.attachmentSet)[0]?.instanceId)), what).toBe('running');
    }
    const ss = byTag(snaps, settled.ss, 'snapshotId');
    for (const x of snaps) {
      const got = ss.get(x.tag);
      const what = `${x.tag} ${x.id ?? '(id unknown)'} of ${x.volumeId}: create ${x.created}, delete ${x.deleted ?? '-'} → ${got ? String(got.status) : 'absent'}`;
      if (x.deleted === 'ack') expect(got, what).toBeUndefined();
      else if (x.created === 'ack' && !x.deleted) expect(got?.status, what).toBe('completed');
      if (got?.status === 'error') expect(x.created, what).not.toBe('ack');
    }
    const n = (st: string) => settled.vols.filter((v) => v.status === st).length;
    console.log(`volumes: ${volumes.length} creates (${volumes.filter((v) => v.history[0]!.outcome === 'ack').length} acknowledged), ${volumes.reduce((a, v) => a + v.history.length - 1, 0)} later ops; now ${n('available')} available, ${n('in-use')} in use, ${n('error')} error; snapshots: ${snaps.length} creates (${snaps.filter((x) => x.created === 'ack').length} acknowledged), ${settled.ss.length} left`);
    expect(volumes.filter((v) => v.history[0]!.outcome === 'ack').length).toBeGreaterThan(0);
    expect(snaps.filter((x) => x.created === 'ack').length).toBeGreaterThan(0);
  });

  it('tgtd holds exactly the targets of the attached volumes, and Walrus exactly the chunks of the snapshots', async () => {
    await expectTargetsMatchAttachments();
    await expectChunksMatchSnapshots();
  });

  it('every elastic IP is where its acknowledged operations left it, none is held twice or by a gone instance, and the cc maps exactly what the clc has', async () => {
    await eventually('every instance running or terminated', async () => (instancesOf(await cloud.client.ok('DescribeInstances')).every((i) => i.state === 'running' || i.state === 'terminated') ? true : undefined), 180_000);
    // The administrator's view of the whole pool (`euca-describe-addresses verbose`): each address once, held by "nobody",
    // "available (account)" or "i-… (account)".
    const pool = items((await cloud.client.ok('DescribeAddresses', { 'PublicIp.1': 'verbose' })).addressesSet);
    expect(pool.map((x) => String(x.publicIp)).sort()).toEqual([...POOL].sort());
    const listed = items((await cloud.client.ok('DescribeAddresses')).addressesSet);
    const ips = listed.map((x) => String(x.publicIp));
    expect(ips.filter((ip, i) => ips.indexOf(ip) !== i), 'listed twice').toEqual([]);
    const byIp = new Map(listed.map((x) => [String(x.publicIp), x]));
    const instances = new Map(instancesOf(await cloud.client.ok('DescribeInstances')).map((i) => [i.instanceId, i]));
    // Held only by an instance that runs, and that instance shows it as its public address.
    for (const x of pool) {
      const holder = /^(i-[0-9a-f]+)/.exec(String(x.instanceId))?.[1];
      if (!holder) continue;
      const i = instances.get(holder);
      expect([i?.state, i?.item.ipAddress], `${String(x.publicIp)} held by ${String(x.instanceId)}`).toEqual(['running', x.publicIp]);
    }
    // Each running instance shows at most the one address the pool says it holds.
    for (const [id, i] of instances) {
      if (i.state !== 'running' || !i.item.ipAddress) continue;
      expect(String(pool.find((x) => x.publicIp === i.item.ipAddress)?.instanceId ?? ''), `${id} shows ${String(i.item.ipAddress)}`).toMatch(new RegExp(`^${id} `));
    }
    // Nothing allocated that no AllocateAddress accounts for (an unacknowledged one may have taken one address).
    const acked = new Set(addrs.filter((a) => a.ip).map((a) => a.ip!));
    expect(ips.filter((ip) => !acked.has(ip)).length, `elastic addresses no acknowledged allocation made: ${ips.filter((ip) => !acked.has(ip)).join(' ')}`).toBeLessThanOrEqual(addrs.filter((a) => a.allocated === 'unknown').length);
    for (const a of addrs.filter((x) => x.ip)) {
      const got = byIp.get(a.ip!);
      const what = `${a.ip}: allocate:ack ${a.history.map((o) => `${o.kind}${o.instanceId ? `(${o.instanceId})` : ''}:${o.outcome}`).join(' ')} → ${got ? String(got.instanceId) || 'unassociated' : 'absent'}`;
      const last = a.history.findLast((o) => o.outcome !== 'refused');
      // After a release, a later allocation (of this address, or one whose answer was lost) may hold it again.
      const retaken = last && addrs.some((o) => o.seq > last.seq && (o.ip === a.ip || o.allocated === 'unknown'));
      const believed = believedAddr(a);
      if (believed === 'released') {
        if (!retaken) expect(got, what).toBeUndefined();
      } else if (believed === 'allocated') {
        expect(got, what).toBeDefined();
        expect(String(got?.instanceId ?? ''), what).toBe('');
      } else if (believed === 'associated') {
        // Unless another address was associated with the same instance since (it took this one's place).
        const displaced = addrs.some((o) => o !== a && o.history.some((h) => h.kind === 'associate' && h.instanceId === last!.instanceId && h.seq > last!.seq && h.outcome !== 'refused'));
        expect(got, what).toBeDefined();
        if (!displaced && instances.get(last!.instanceId!)?.state === 'running') expect(String(got?.instanceId), what).toBe(last!.instanceId);
      } else if (!a.history.some((o) => o.kind === 'release')) expect(got, what).toBeDefined();
    }
    console.log(`addresses: ${addrs.length} allocations (${acked.size} acknowledged), ${addrs.reduce((n, a) => n + a.history.length, 0)} later ops; now ${listed.length} elastic, ${pool.filter((x) => /^i-/.test(String(x.instanceId))).length} of ${POOL.length} held by instances`);
    await expectCcAddressesMatchClc();
  });

  it('every security group rule is where its last answered operation left it, and the group\'s chain in iptables has exactly the clc\'s rules', async () => {
    const clc = await clcRules();
    for (const port of RULE_PORTS) {
      const believed = believedRule(port);
      const listed = clc.includes(`${port} from ${ruleCidr(port)}`);
      const what = `tcp ${port}: ${(ruleHistory.get(port) ?? []).map((o) => `${o.kind}:${o.outcome}${o.code ? `(${o.code})` : ''}`).join(' ') || 'never touched'}`;
      if (believed !== 'unsure') expect(listed, what).toBe(believed === 'present');
    }
    // Every instance of the workload is in the default group: while any runs, its network has the one group chain
    // (and with none running, there is none).
    let last = '';
    await eventually('the default group\'s chain has the clc\'s rules', async () => {
      const want = await clcRules();
      const running = instancesOf(await cloud.client.ok('DescribeInstances')).filter((i) => i.state === 'running').length;
      const rules = ccRules();
      last = `${running} instances running; the clc lists ${want.join(', ') || 'none'}; iptables has ${[...rules.ingress].map(([g, l]) => `${g}: ${l.join(', ') || 'none'}`).join('; ') || 'no group chain'}`;
      if (running === 0) return rules.groupChains.length === 0 ? true : undefined;
      return rules.groupChains.length === 1 && JSON.stringify(rules.ingress.get(rules.groupChains[0]!)) === JSON.stringify(want) ? true : undefined;
    }, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${last}`);
    });
    console.log(`rules: ${[...ruleHistory.values()].reduce((n, h) => n + h.length, 0)} operations on ${ruleHistory.size} ports; the default group has ${clc.length} of them`);
  });

  it('every instance reaches a final state, acknowledged terminations are terminated, and the node runs exactly what the clc says', async () => {
    const settled = await eventually('every instance running or terminated', async () => {
      const all = instancesOf(await cloud.client.ok('DescribeInstances'));
      return all.every((i) => i.state === 'running' || i.state === 'terminated') ? all : undefined;
    }, 180_000);
    for (const [id, outcome] of terminated) if (outcome === 'ack') expect(settled.find((i) => i.instanceId === id)?.state, id).toBe('terminated');
    const node = new WireClient({ url: readFileSync(join(cloud.home, 'run', 'nc.url'), 'utf8').trim(), from: 'cc', key: readFileSync(join(cloud.home, 'keys', 'node.key'), 'utf8').trim() });
    await eventually('the node and the clc agree on what runs', async () => {
      const onNode = new Set((await node.call(nc.ncDescribeInstances, { instanceIds: [] })).instances.filter((i) => i.state !== 'terminated' && i.state !== 'shutting-down').map((i) => i.instanceId));
      const running = new Set(instancesOf(await cloud.client.ok('DescribeInstances')).filter((i) => i.state === 'running').map((i) => i.instanceId));
      const orphans = [...onNode].filter((id) => !running.has(id));
      const missing = [...running].filter((id) => !onNode.has(id));
      if (orphans.length === 0 && missing.length === 0) return true;
      // Said when it times out (the last error of eventually): which instances, and what the clc has of them.
      const clcStates = new Map(instancesOf(await cloud.client.ok('DescribeInstances')).map((i) => [i.instanceId, i.state]));
      throw new Error(`on the node but not running in the clc: ${orphans.map((id) => `${id} (clc: ${clcStates.get(id) ?? 'none'})`).join(', ') || 'none'}; running in the clc but not on the node: ${missing.join(', ') || 'none'}`);
    }, 120_000);
    // And all of it can be ended: terminate what runs, everything reaches terminated.
    const running = settled.filter((i) => i.state === 'running').map((i) => i.instanceId);
    for (let i = 0; i < running.length; i += 50) {
      await cloud.client.ok('TerminateInstances', Object.fromEntries(running.slice(i, i + 50).map((id, j) => [`InstanceId.${j + 1}`, id])));
    }
    await eventually('every instance terminated', async () => (instancesOf(await cloud.client.ok('DescribeInstances')).every((i) => i.state === 'terminated') ? true : undefined), 120_000);
  });

  it('and the addresses can be ended: released, the whole pool is free again and the cc maps nothing', async () => {
    for (const x of items((await cloud.client.ok('DescribeAddresses')).addressesSet)) {
      // Disassociated by the terminations above: released as they are.
      expect(String(x.instanceId ?? ''), String(x.publicIp)).toBe('');
      await cloud.client.ok('ReleaseAddress', { PublicIp: String(x.publicIp) });
    }
    const pool = items((await cloud.client.ok('DescribeAddresses', { 'PublicIp.1': 'verbose' })).addressesSet);
    expect(pool.filter((x) => x.instanceId !== 'nobody').map((x) => `${String(x.publicIp)} ${String(x.instanceId)}`)).toEqual([]);
    await expectCcAddressesMatchClc();
    expect(ccAddressMappings().size).toBe(0);
    // Nor does iptables: no address rule, no public address, no group chain of a network no instance uses.
    expect(ccRules()).toMatchObject({ dnat: [], snat: [], published: [], groupChains: [] });
  });

  it('and the volumes and snapshots can be ended: once their instances are gone they are deleted, and no target or chunk is left', async () => {
    const vols = await eventually('attachments of the terminated instances released', async () => {
      const all = items((await cloud.client.ok('DescribeVolumes')).volumeSet);
      return all.every((v) => v.status === 'available' || v.status === 'error') ? all : undefined;
    }, 120_000);
    for (const v of vols) await cloud.client.ok('DeleteVolume', { VolumeId: String(v.volumeId) });
    for (const x of items((await cloud.client.ok('DescribeSnapshots', { 'Owner.1': 'self' })).snapshotSet)) await cloud.client.ok('DeleteSnapshot', { SnapshotId: String(x.snapshotId) });
    await eventually('every volume gone', async () => (items((await cloud.client.ok('DescribeVolumes')).volumeSet).length === 0 ? true : undefined), 60_000);
    expect(scTargetsOf(cloud.home)).toEqual([]);
    expect(await expectChunksMatchSnapshots()).toBe(0);
  });
});

describe('an NC that stops answering', () => {
  it('is NOTREADY with its instances kept as last known, and is ENABLED with them running when it returns', async () => {
    const run = await cloud.client.ok('RunInstances', { ImageId: image, MinCount: 2, MaxCount: 2 });
    const ids = items(run.instancesSet).map((i) => String(i.instanceId));
    await eventually('running', async () => (instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! })).every((i) => i.state === 'running') ? true : undefined), 60_000);
    process.kill(pidOf('nc'), 'SIGKILL');
    const nodeState = async () => {
      const { stdout } = await cloud.mallee(['describe-services', '--output', 'json']);
      const services = JSON.parse(stdout) as { services?: { type?: string; name?: string; state?: string }[] } | { type?: string; state?: string }[];
      const list = Array.isArray(services) ? services : services.services ?? [];
      return list.find((s) => s.type === 'nc')?.state;
    };
    await eventually('node NOTREADY', async () => ((await nodeState()) === 'NOTREADY' ? true : undefined), 60_000);
    // The instances are still there, as last known: not lost, not terminated.
    const during = instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! }));
    expect(during.map((i) => i.state)).toEqual(['running', 'running']);
    await cloud.mallee(['up', '--detach']);
    await eventually('node ENABLED again', async () => ((await nodeState()) === 'ENABLED' ? true : undefined), 60_000);
    const after = instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! }));
    expect(after.map((i) => i.state)).toEqual(['running', 'running']);
    await cloud.client.ok('TerminateInstances', { 'InstanceId.1': ids[0]!, 'InstanceId.2': ids[1]! });
  });
});

// ---- Walrus on a full disk ---------------------------------------------------------------------

describe('Walrus on a full disk', () => {
  let dir: string;
  let mounted = false;
  let stop: (() => void) | undefined;
  let url: string;
  const key = { accessKeyId: 'AKIAFAULTS0000000001', secretAccessKey: 'faults/secret/key/000000000000000000000' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mallee-faults-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'mallee-faults', dir]);
    mounted = true;
    const home = join(dir, 'home');
    mkdirSync(home);
    const creds = join(tmpdir(), `mallee-faults-creds-${process.pid}.json`);
    writeFileSync(creds, JSON.stringify({ [key.accessKeyId]: { secretAccessKey: key.secretAccessKey, accountId: '100000000099', accountName: 'faults' } }));
    const { spawn } = await import('node:child_process');
    const repo = new URL('../../', import.meta.url).pathname;
    const child = spawn(process.execPath, [join(repo, 'services/walrus/dist/src/main.js'), '--home', home], { env: { ...process.env, MALLEE_WALRUS_CREDENTIALS: creds, MALLEE_WALRUS_PORT: String(await freePortBase()), MALLEE_BIND_ADDRESS: '127.0.0.1', MALLEE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    stop = () => child.kill('SIGKILL');
    url = await eventually('walrus on tmpfs listening', async () => {
      try {
        return readFileSync(join(home, 'run', 'walrus.url'), 'utf8').trim() || undefined;
      } catch {
        if (child.exitCode !== null) throw new Error(`walrus exited: ${stderr}`);
        return undefined;
      }
    }, 30_000);
  }, 60_000);
  afterAll(() => {
    stop?.();
    if (mounted) execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(tmpdir(), `mallee-faults-creds-${process.pid}.json`), { force: true });
  });

  const put = async (path: string, body: Buffer) => {
    const u = new URL(path, url);
    const s = signV4({ method: 'PUT', path: u.pathname, headers: { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
    const res = await fetch(u, { method: 'PUT', headers: s.headers, body });
    return { status: res.status, body: await res.text() };
  };
  const req = async (method: string, path: string) => {
    const u = new URL(path, url);
    const s = signV4({ method, path: u.pathname, headers: { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
    const res = await fetch(u, { method, headers: s.headers });
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  };

  it('uploads past the free space fail with InsufficientStorage (507), keep every acknowledged object, leave no partial file, and work again once space is freed', async () => {
    expect((await put('/full', Buffer.alloc(0))).status).toBe(200);
    const stored = new Map<string, string>();
    let refusal: { status: number; body: string } | undefined;
    for (let i = 0; i < 40 && !refusal; i++) {
      const body = Buffer.alloc(2 * 1024 * 1024, i);
      const r = await put(`/full/obj-${i}`, body);
      if (r.status === 200) stored.set(`obj-${i}`, md5(body));
      else refusal = r;
    }
    expect(refusal, 'the tmpfs filled up').toBeDefined();
    expect(refusal!.status).toBe(507);
    expect(refusal!.body).toMatch(/<Code>InsufficientStorage<\/Code>/);
    expect(stored.size).toBeGreaterThan(2);
    // No partial object, and no temp file left behind.
    const tmpFiles = readdirSync(join(dir, 'home', 'walrus', 'tmp'));
    expect(tmpFiles).toEqual([]);
    for (const [k, sum] of stored) {
      const g = await req('GET', `/full/${k}`);
      expect([g.status, md5(g.body)], k).toEqual([200, sum]);
    }
    // Free space, and uploads work again.
    for (const k of [...stored.keys()].slice(0, 3)) expect((await req('DELETE', `/full/${k}`)).status).toBe(204);
    expect((await put('/full/after', Buffer.alloc(1024 * 1024, 7))).status).toBe(200);
  });
});
