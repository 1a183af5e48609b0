// Operating a real all-in-one cloud with the `mallee` command: cloud properties (an admin changes a
// setting and the cloud follows it, seen with awscli); registration and health (list-*, deregister-*,
// describe-services, DescribeAvailabilityZones verbose with euca2ools and awscli); components with the
// wrong key, unregistered senders and replayed messages refused by the real daemons; one version of
// wire skew: the real cc speaking N+1 and N-1 between a clc and an nc speaking N.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_WIRE_VERSION, WireClient, WireError, admin, nc as ncOps } from '@mallee/wire';
import { clientEnv, eventually, freePortBase, repoRoot, runTool, startCloud, type Cloud } from './helpers/cloud.js';
import { WireRecorder } from './helpers/wire-recorder.js';
import { uploadTestBundle } from './helpers/images.js';

let cloud: Cloud;
beforeAll(async () => {
  cloud = await startCloud();
});
afterAll(async () => {
  await cloud?.stop();
});

const aws = async (...args: string[]) => {
  const r = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, '--output', 'json', 'ec2', ...args], clientEnv(cloud.env));
  if (r.code !== 0) throw new Error(`aws ec2 ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout || '{}') as Record<string, unknown>;
};
const failing = async (p: Promise<unknown>) => {
  const err = await p.then(() => undefined, (e: unknown) => e as Error);
  expect(err).toBeInstanceOf(Error);
  return err!.message;
};

type Property = { name: string; value: string; defaultValue: string; source: string; type: string };

describe('mallee property', () => {
  it('lists the cloud properties with values, defaults and descriptions; NAME shows one, a prefix filters', async () => {
    const table = (await cloud.mallee(['property'])).stdout;
    expect(table).toMatch(/^NAME\s+VALUE\s+DEFAULT\s+SOURCE\s+DESCRIPTION/);
    expect(table).toMatch(/^cloud\.vmstate\.terminated_time\s+60\s+60\s+default\s+Minutes/m);
    const walrus = JSON.parse((await cloud.mallee(['property', 'walrus', '-o', 'json'])).stdout) as Property[];
    expect(walrus.length).toBeGreaterThanOrEqual(3);
    expect(walrus.every((p) => p.name.startsWith('walrus.'))).toBe(true);
    const one = (await cloud.mallee(['property', 'storage.maxvolumesizeingb'])).stdout;
    expect(one).toMatch(/TYPE/);
    expect(one).toMatch(/storage\.maxvolumesizeingb\s+15\s+integer/);
  });

  it('NAME=VALUE sets a property and the cloud follows it: RunInstances without a type launches the new default type', async () => {
    await uploadTestBundle(cloud, 'ops/img.manifest.xml');
    const image = String((await aws('register-image', '--image-location', 'ops/img.manifest.xml', '--name', 'ops-img')).ImageId);
    const { stdout } = await cloud.mallee(['property', 'cloud.vmtypes.default_type_name=c1.medium']);
    expect(stdout.trim()).toBe('PROPERTY\tcloud.vmtypes.default_type_name\tc1.medium\twas m1.small');
    const launched = await aws('run-instances', '--image-id', image);
    const instances = launched.Instances as { InstanceId: string; InstanceType: string }[];
    expect(instances[0]!.InstanceType).toBe('c1.medium');
    await aws('terminate-instances', '--instance-ids', instances[0]!.InstanceId);
    const reset = await cloud.mallee(['property', '--reset', 'cloud.vmtypes.default_type_name']);
    expect(reset.stdout).toMatch(/m1\.small\twas c1\.medium \(reset to its default\)/);
  });

  it('refuses a value of the wrong type, an unknown name and an unknown zone, saying what is wrong', async () => {
    expect(await failing(cloud.mallee(['property', 'walrus.storagemaxbucketsperaccount=lots']))).toMatch(/InvalidParameterValue: walrus\.storagemaxbucketsperaccount: "lots" is not valid: an integer/);
    expect(await failing(cloud.mallee(['property', 'walrus.nosuch=1']))).toMatch(/no property named walrus\.nosuch/);
    expect(await failing(cloud.mallee(['property', 'atlantis.storage.maxvolumesizeingb=5']))).toMatch(/no availability zone named atlantis/);
    const stays = JSON.parse((await cloud.mallee(['property', 'walrus.storagemaxbucketsperaccount', '-o', 'json'])).stdout) as Property[];
    expect(stays[0]!.value).toBe('100');
  });
});

type Service = { type: string; name: string; partition: string; state: string; url: string; lastContact?: string; detail?: string };
const json = async <T>(args: string[]) => JSON.parse((await cloud.mallee([...args, '-o', 'json'])).stdout) as T;
// The clc, cc and nc (Walrus is listed too, and stays out of these checks).
const services = async () => (await json<Service[]>(['describe-services'])).filter((s) => s.type !== 'walrus');
const recent = (iso: string | undefined) => iso !== undefined && Date.now() - Date.parse(iso) < 60_000;
const eucaWrapper = join(repoRoot, '../shared/tools/euca');

describe('registration and health', () => {
  it('list-clusters, list-nodes and describe-services show every component ENABLED with a recent last contact', async () => {
    const clusters = await json<Service[]>(['list-clusters']);
    expect(clusters.map((c) => [c.name, c.state])).toEqual([['mallee-1a', 'ENABLED']]);
    expect(recent(clusters[0]!.lastContact)).toBe(true);
    const nodes = await json<(Service & { cluster: string })[]>(['list-nodes', '--cluster', 'mallee-1a']);
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ cluster: 'mallee-1a', state: 'ENABLED' });
    expect(recent(nodes[0]!.lastContact)).toBe(true);
    const all = await services();
    expect(all.map((s) => s.type).sort()).toEqual(['cc', 'clc', 'nc', 'sc']);
    expect(all.every((s) => s.state === 'ENABLED' && recent(s.lastContact))).toBe(true);
    expect((await cloud.mallee(['list-nodes'])).stdout).toMatch(/^NAME\s+CLUSTER\s+URL\s+STATE\s+LASTCONTACT/);
    await expect(cloud.mallee(['list-nodes', '--cluster', 'atlantis'])).rejects.toThrow(/no cluster named atlantis/);
  });

  it("DescribeAvailabilityZones verbose lists each component's state and last contact (euca2ools and awscli)", async () => {
    const node = (await services()).find((s) => s.type === 'nc')!.name;
    const out = await runTool(eucaWrapper, ['euca-describe-availability-zones', 'verbose'], clientEnv(cloud.env));
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^AVAILABILITYZONE\s+\|- services\s+state\s+last contact/m);
    expect(out.stdout).toMatch(/^AVAILABILITYZONE\s+\|- cc mallee-1a\s+ENABLED\s+\d{4}-\d\d-\d\dT/m);
    expect(out.stdout).toMatch(new RegExp(`^AVAILABILITYZONE\\s+\\|- nc ${node}\\s+ENABLED\\s+\\d{4}-`, 'm'));
    expect(out.stdout).toMatch(/^AVAILABILITYZONE\s+\|- clc clc\s+ENABLED/m);
    const zones = (await aws('describe-availability-zones', '--zone-names', 'verbose')).AvailabilityZones as { ZoneName: string; State: string }[];
    expect(zones.find((z) => z.ZoneName === `|- nc ${node}`)?.State).toMatch(/^ENABLED\s+\d{4}-/);
    // Without verbose (and for other accounts) the listing stays AWS's: one row per zone.
    expect(((await aws('describe-availability-zones')).AvailabilityZones as unknown[]).length).toBe(1);
  });

  it('a node controller with the wrong key is refused (NOTREADY, never given work) until it has the key its registration issued; deregister-nodes removes it', async () => {
    const home2 = mkdtempSync(join(cloud.home, 'node2-'));
    const port = (await freePortBase()) + 2;
    writeFileSync(join(home2, 'mallee.conf'), `HYPERVISOR="simulated"\nNC_PORT="${port}"\nSIM_CORES="2"\nINSTANCE_PATH="${home2}/instances"\nLOG_LEVEL="warn"\n`);
    const nc2 = spawn(process.execPath, [join(repoRoot, 'services/nc/dist/src/main.js'), '--home', home2, '--conf', join(home2, 'mallee.conf')], { stdio: 'ignore' });
    try {
      const url = await eventually('the second nc up', async () => (existsSync(join(home2, 'run', 'nc.url')) ? readFileSync(join(home2, 'run', 'nc.url'), 'utf8').trim() : undefined));
      const { stdout } = await cloud.mallee(['register-nodes', '--cluster', 'mallee-1a', '--name', 'wrongkey', url]);
      const key = stdout.trim().split('\n').pop()!;
      mkdirSync(join(home2, 'keys'), { recursive: true });
      writeFileSync(join(home2, 'keys', 'node.key'), 'ab'.repeat(32) + '\n', { mode: 0o600 });
      const refused = await eventually('the wrong-keyed node refused', async () => {
        const n = (await json<Service[]>(['list-nodes'])).find((s) => s.name === 'wrongkey');
        return n?.detail?.includes('SignatureDoesNotMatch') ? n : undefined;
      });
      expect(refused.state).toBe('NOTREADY');
      // The first node has 4 cores: five instances need the refused one too, and the cc does not use it.
      await uploadTestBundle(cloud, 'ops/wk.manifest.xml');
      const image = String((await aws('register-image', '--image-location', 'ops/wk.manifest.xml', '--name', 'ops-wk')).ImageId);
      const r = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, 'ec2', 'run-instances', '--image-id', image, '--count', '5', '--instance-type', 'm1.small'], clientEnv(cloud.env));
      expect(r.stderr).toMatch(/InsufficientInstanceCapacity/);

      writeFileSync(join(home2, 'keys', 'node.key'), key + '\n', { mode: 0o600 });
      await eventually('the node ENABLED with its key', async () => ((await json<Service[]>(['list-nodes'])).find((s) => s.name === 'wrongkey')?.state === 'ENABLED' ? true : undefined));
      // Now the same five fit: the refusal was the key, not the capacity.
      const five = await eventually('five instances over both nodes', async () => {
        const ok = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, '--output', 'json', 'ec2', 'run-instances', '--image-id', image, '--count', '5', '--instance-type', 'm1.small'], clientEnv(cloud.env));
        return ok.code === 0 ? (JSON.parse(ok.stdout) as { Instances: { InstanceId: string }[] }).Instances.map((i) => i.InstanceId) : undefined;
      }, 20_000);
      expect(five).toHaveLength(5);
      await aws('terminate-instances', '--instance-ids', ...five);
      await cloud.mallee(['deregister-nodes', '--cluster', 'mallee-1a', 'wrongkey']);
      expect((await json<Service[]>(['list-nodes'])).map((s) => s.name)).not.toContain('wrongkey');
      await expect(cloud.mallee(['deregister-nodes', '--cluster', 'mallee-1a', 'wrongkey'])).rejects.toThrow(/NoSuchNode/);
    } finally {
      nc2.kill('SIGTERM');
    }
  });

  it('senders the receiver does not know are refused: an unregistered component at the clc, anyone but the cc at a node', async () => {
    const clcUrl = readFileSync(join(cloud.home, 'run', 'clc.url'), 'utf8').trim();
    const nodeUrl = (await services()).find((s) => s.type === 'nc')!.url;
    const adminKey = readFileSync(join(cloud.home, 'keys', 'admin.key'), 'utf8').trim();
    const nodeKey = readFileSync(join(cloud.home, 'keys', 'node.key'), 'utf8').trim();
    const codeOf = (p: Promise<unknown>) => p.then(() => 'accepted', (e: unknown) => (e instanceof WireError ? e.code : String(e)));
    expect(await codeOf(new WireClient({ url: clcUrl, from: 'cc:atlantis', key: adminKey }).call(admin.DescribeServices, {}))).toBe('UnknownComponent');
    // The node's own key, but claiming to be the clc: the node only takes orders from its cc.
    expect(await codeOf(new WireClient({ url: nodeUrl, from: 'clc', key: nodeKey }).call(ncOps.ncDescribeResource, {}))).toBe('UnknownComponent');
    expect(await codeOf(new WireClient({ url: clcUrl, from: 'admin', key: 'cd'.repeat(32) }).call(admin.DescribeServices, {}))).toBe('SignatureDoesNotMatch');
  });

  it('deregister-cluster and register-cluster through a recording proxy: the cloud comes back, and a recorded clc→cc message replayed at the cc is refused', async () => {
    const cc = (await services()).find((s) => s.type === 'cc')!;
    const recorder = new WireRecorder(cc.url);
    await recorder.start();
    try {
      expect((await cloud.mallee(['deregister-cluster', 'mallee-1a'])).stdout).toMatch(/deregistered cluster mallee-1a/);
      expect(await json<Service[]>(['list-clusters'])).toEqual([]);
      expect(((await aws('describe-availability-zones')).AvailabilityZones as unknown[]).length).toBe(0);
      const { stdout } = await cloud.mallee(['register-cluster', 'mallee-1a', recorder.url]);
      writeFileSync(join(cloud.home, 'keys', 'cloud.key'), stdout.trim().split('\n').pop()! + '\n', { mode: 0o600 });
      await eventually('the cluster ENABLED again', async () => ((await services()).filter((s) => s.state === 'ENABLED').length === 4 ? true : undefined));
      // One the cc accepted (the first polls came before its new key was installed, and were refused).
      const msg = recorder.recorded.filter((r) => r.body.includes('<DescribeInstances') && r.status === 200).at(-1)!;
      expect(msg).toBeDefined();
      const replayed = await recorder.replay(msg);
      expect(replayed.status).toBe(403);
      expect(replayed.body).toMatch(/StaleRequest[\s\S]*replayed message/);
      const tampered = await recorder.replay(msg, (r) => ({ ...r, headers: { ...r.headers, 'x-mallee-nonce': 'e'.repeat(32) } }));
      expect(tampered.body).toMatch(/SignatureDoesNotMatch/);
    } finally {
      await cloud.mallee(['deregister-cluster', 'mallee-1a']).catch(() => {});
      const { stdout } = await cloud.mallee(['register-cluster', 'mallee-1a', cc.url]);
      writeFileSync(join(cloud.home, 'keys', 'cloud.key'), stdout.trim().split('\n').pop()! + '\n', { mode: 0o600 });
      await recorder.stop();
    }
    await eventually('the cluster ENABLED at its own URL', async () => ((await services()).filter((s) => s.state === 'ENABLED').length === 4 ? true : undefined));
  });
});

describe('Walrus and storage controller registration', () => {
  type Row = { name: string; partition: string; url: string; state: string; lastContact?: string };
  const s3ls = (env: Record<string, string>) => runTool('aws', ['--endpoint-url', cloud.env.S3_URL!, '--region', cloud.region, 's3', 'ls'], clientEnv(env));

  it('list-walrus and list-sc show them ENABLED; deregister-sc and deregister-walrus take them out, and registering again brings them back', async () => {
    const [walrus] = await json<Row[]>(['list-walrus']);
    expect(walrus).toMatchObject({ name: 'walrus', state: 'ENABLED' });
    expect(recent(walrus!.lastContact)).toBe(true);
    const [sc] = await json<Row[]>(['list-sc']);
    expect(sc).toMatchObject({ name: 'mallee-1a', partition: 'mallee-1a', state: 'ENABLED' });

    expect((await cloud.mallee(['deregister-sc', 'mallee-1a'])).stdout).toMatch(/deregistered the storage controller of zone mallee-1a/);
    expect(await json<Row[]>(['list-sc'])).toEqual([]);
    await expect(cloud.mallee(['deregister-sc', 'mallee-1a'])).rejects.toThrow(/NoSuchEntity/);
    await cloud.mallee(['register-sc', 'mallee-1a', sc!.url, '--walrus-url', walrus!.url, '--sc-home', cloud.home]);
    await eventually('the sc ENABLED again', async () => ((await json<Row[]>(['list-sc']))[0]?.state === 'ENABLED' ? true : undefined));

    // Walrus asks the clc who signed each request: once deregistered, its key is refused and a new user's S3 request fails.
    await cloud.mallee(['deregister-walrus']);
    expect(await json<Row[]>(['list-walrus'])).toEqual([]);
    const tenant = JSON.parse((await cloud.mallee(['account', 'create', 'walrus-less', '-o', 'json'])).stdout) as { accessKeyId: string; secretAccessKey: string }[];
    const env = { ...cloud.env, AWS_ACCESS_KEY_ID: tenant[0]!.accessKeyId, AWS_SECRET_ACCESS_KEY: tenant[0]!.secretAccessKey };
    const refused = await s3ls(env);
    expect(refused.code).not.toBe(0);
    const { stdout } = await cloud.mallee(['register-walrus', walrus!.url]);
    writeFileSync(join(cloud.home, 'keys', 'walrus.key'), stdout.trim().split('\n').pop()! + '\n', { mode: 0o600 });
    await eventually('Walrus ENABLED again', async () => ((await json<Row[]>(['list-walrus']))[0]?.state === 'ENABLED' ? true : undefined));
    await eventually("the new user's S3 request served", async () => ((await s3ls(env)).code === 0 ? true : undefined), 30_000);
  });
});

describe('wire version skew', () => {
  const N = BUILD_WIRE_VERSION;
  const pidFile = () => join(cloud.home, 'run', 'cc.pid');
  const ccPid = () => Number(readFileSync(pidFile(), 'utf8'));
  /** Exited (or a zombie waiting to be reaped). */
  const gone = (pid: number) => {
    try {
      return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return true;
    }
  };
  /** Stop the running cc and start the same build speaking `version` (MALLEE_WIRE_VERSION), as a newer or older build would. */
  async function restartCcSpeaking(version: number): Promise<void> {
    const old = ccPid();
    process.kill(old, 'SIGTERM');
    await eventually('the cc stopped', async () => (gone(old) ? true : undefined));
    const log = openSync(join(cloud.home, 'log', 'cc.log'), 'a');
    const child = spawn(process.execPath, [join(repoRoot, 'services/cc/dist/src/main.js'), '--home', cloud.home, '--conf', join(cloud.home, 'mallee.conf')], {
      detached: true, stdio: ['ignore', log, log], env: { ...process.env, MALLEE_WIRE_VERSION: String(version) },
    });
    closeSync(log);
    child.unref();
    await eventually(`the cc speaking version ${version} up`, async () => (existsSync(pidFile()) && ccPid() === child.pid ? true : undefined));
  }
  const stateOf = async (type: string) => (await services()).find((s) => s.type === type);

  afterAll(async () => {
    // Back to the build's own version, through the command a user would run.
    process.kill(ccPid(), 'SIGTERM');
    await cloud.mallee(['up', '--detach']);
  });

  for (const version of [N + 1, N - 1]) {
    it(`a cc speaking wire version ${version} works between a clc and an nc speaking ${N}: polls, launches, terminates`, async () => {
      await restartCcSpeaking(version);
      await eventually('cc and nc ENABLED across the skew', async () => {
        const all = await services();
        return all.length === 4 && all.every((s) => s.state === 'ENABLED') && recent(all.find((s) => s.type === 'nc')!.lastContact) ? true : undefined;
      });
      await uploadTestBundle(cloud, `ops/skew${version}.manifest.xml`);
      const image = String((await aws('register-image', '--image-location', `ops/skew${version}.manifest.xml`, '--name', `ops-skew-${version}`)).ImageId);
      const id = String((((await aws('run-instances', '--image-id', image)).Instances as { InstanceId: string }[])[0]!).InstanceId);
      await eventually(`${id} running`, async () => {
        const r = await aws('describe-instances', '--instance-ids', id);
        return ((r.Reservations as { Instances: { State: { Name: string } }[] }[])[0]!.Instances[0]!.State.Name === 'running') ? true : undefined;
      });
      await aws('terminate-instances', '--instance-ids', id);
      expect(readFileSync(join(cloud.home, 'log', 'cc.log'), 'utf8')).not.toMatch(/UnsupportedVersion/);
    });
  }

  it(`a cc two versions ahead (${N + 2}) is refused: the clc reports it NOTREADY with UnsupportedVersion, and says who to upgrade`, async () => {
    await restartCcSpeaking(N + 2);
    const cc = await eventually('the cc refused', async () => {
      const c = await stateOf('cc');
      return c?.state === 'NOTREADY' && c.detail?.includes('UnsupportedVersion') ? c : undefined;
    });
    expect(cc.detail).toMatch(new RegExp(`wire version ${N} not supported; this component speaks ${N + 2}`));
    expect(cc.detail).toMatch(/upgrade the older side/);
  });
});
