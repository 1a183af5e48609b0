// The `mallee` command on a real all-in-one cloud: idempotent up, status, accounts and keys, down.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ec2Client } from './helpers/ec2-client.js';
import { eventually, freePortBase, mallee, parseEucarc, repoRoot, startCloud, type Cloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';

let cloud: Cloud;
beforeAll(async () => {
  cloud = await startCloud();
});
afterAll(async () => {
  await cloud?.stop();
});

type Service = { type: string; name: string; state: string; url: string };
const pidOf = (svc: string) => Number(readFileSync(join(cloud.home, 'run', `${svc}.pid`), 'utf8'));
/** Alive and not a zombie waiting for init to reap it. */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('the mallee command', () => {
  it('`mallee status -o json` reports clc, walrus, sc, cc and nc ENABLED', async () => {
    const services = JSON.parse((await cloud.mallee(['status', '-o', 'json'])).stdout) as Service[];
    expect(services.map((s) => `${s.type}:${s.state}`).sort()).toEqual(['cc:ENABLED', 'clc:ENABLED', 'nc:ENABLED', 'sc:ENABLED', 'walrus:ENABLED']);
  });

  it('a second `mallee up` on a running home starts nothing and keeps the same processes and keys', async () => {
    const pids = ['clc', 'cc', 'nc'].map(pidOf);
    const key = readFileSync(join(cloud.home, 'keys', 'node.key'), 'utf8');
    const { stdout } = await cloud.mallee(['up', '--detach']);
    for (const svc of ['clc', 'cc', 'nc']) expect(stdout).toMatch(new RegExp(`^${svc}: already running`, 'm'));
    expect(stdout).not.toMatch(/: started/);
    expect(['clc', 'cc', 'nc'].map(pidOf)).toEqual(pids);
    expect(readFileSync(join(cloud.home, 'keys', 'node.key'), 'utf8')).toBe(key);
  });

  it('`mallee up` after the cc and nc were killed restarts just them, and the cloud is healthy again', async () => {
    const clc = pidOf('clc');
    process.kill(pidOf('cc'), 'SIGKILL');
    process.kill(pidOf('nc'), 'SIGKILL');
    const { stdout } = await cloud.mallee(['up', '--detach']);
    expect(stdout).toMatch(/clc: already running/);
    expect(stdout).toMatch(/cc: started/);
    expect(stdout).toMatch(/nc: started/);
    expect(pidOf('clc')).toBe(clc);
    const services = JSON.parse((await cloud.mallee(['describe-services', '-o', 'json'])).stdout) as Service[];
    expect(services.every((s) => s.state === 'ENABLED')).toBe(true);
  });

  it('`mallee up` waits for an nc whose start-up outlasts the ordinary window (as a KVM probe does), showing what it waits for on stderr', async () => {
    process.kill(pidOf('nc'), 'SIGKILL');
    // 22 s of driver start-up, beyond the 18 s up gives a component that is merely down (poll interval 1 s).
    const { stdout, stderr } = await mallee(['up', '--detach', '--home', cloud.home], { MALLEE_SIM_INIT_DELAY: '22000' });
    expect(stdout).toMatch(/nc: started/);
    expect(stdout).toMatch(/all components ENABLED/);
    expect(stderr).toMatch(/waiting for every component to be ENABLED: \d+ s — nc [^:]+: NOTREADY \(NodeStarting: the node controller is starting: simulating a slow start-up/);
    expect(stderr).toMatch(/waiting for every component to be ENABLED: all ENABLED/);
  }, 120_000);

  it('account create, account list, user key create and credentials give a working, separate identity', async () => {
    const created = JSON.parse((await cloud.mallee(['account', 'create', 'cli-tenant', '-o', 'json'])).stdout) as { accountId: string; accessKeyId: string }[];
    const accounts = JSON.parse((await cloud.mallee(['account', 'list', '-o', 'json'])).stdout) as { accountName: string; accountId: string }[];
    expect(accounts.map((a) => a.accountName)).toEqual(expect.arrayContaining(['eucalyptus', 'cli-tenant']));
    const key = JSON.parse((await cloud.mallee(['user', 'key', 'create', '--account', 'cli-tenant', '-o', 'json'])).stdout) as { accessKeyId: string; secretAccessKey: string }[];
    expect(key[0]!.accessKeyId).not.toBe(created[0]!.accessKeyId);
    const viaNewKey = new Ec2Client(cloud.ec2Url, { accessKeyId: key[0]!.accessKeyId, secretAccessKey: key[0]!.secretAccessKey }, cloud.region);
    expect((await viaNewKey.call('DescribeKeyPairs')).status).toBe(200);

    const out = join(cloud.home, 'cli-tenant-creds');
    await cloud.mallee(['credentials', '--account', 'cli-tenant', '--out', out]);
    for (const f of ['eucarc', 'euca2ools.ini', 'aws-config', 'aws-credentials']) expect(existsSync(join(out, f))).toBe(true);
    const env = parseEucarc(join(out, 'eucarc'));
    expect(env.EC2_USER_ID).toBe(created[0]!.accountId);
    const viaEucarc = new Ec2Client(env.EC2_URL!, { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! }, env.AWS_DEFAULT_REGION!);
    expect((await viaEucarc.call('DescribeInstances')).status).toBe(200);
  });

  it('`mallee register-nodes` adds a second node controller: its printed key, installed, brings it ENABLED and instances fill it', async () => {
    const home2 = mkdtempSync(join(cloud.home, 'node2-'));
    const port = (await freePortBase()) + 2;
    writeFileSync(join(home2, 'mallee.conf'), `HYPERVISOR="simulated"\nNC_PORT="${port}"\nSIM_CORES="2"\nINSTANCE_PATH="${home2}/instances"\n`);
    const nc2 = spawn(process.execPath, [join(repoRoot, 'services/nc/dist/src/main.js'), '--home', home2, '--conf', join(home2, 'mallee.conf')], { stdio: 'ignore' });
    try {
      const url = await eventually('the second nc up', async () => (existsSync(join(home2, 'run', 'nc.url')) ? readFileSync(join(home2, 'run', 'nc.url'), 'utf8').trim() : undefined));
      const { stdout } = await cloud.mallee(['register-nodes', '--cluster', 'mallee-1a', url]);
      expect(stdout).toMatch(new RegExp(`registered node 127-0-0-1-${port} at`));
      const key = stdout.trim().split('\n').pop()!;
      expect(key).toMatch(/^[0-9a-f]{64}$/);
      mkdirSync(join(home2, 'keys'), { recursive: true });
      writeFileSync(join(home2, 'keys', 'node.key'), key + '\n', { mode: 0o600 });
      await eventually('two nodes ENABLED', async () => {
        const services = JSON.parse((await cloud.mallee(['describe-services', '-o', 'json'])).stdout) as Service[];
        const ncs = services.filter((s) => s.type === 'nc');
        return ncs.length === 2 && ncs.every((s) => s.state === 'ENABLED') ? true : undefined;
      }, 30_000);
      // The first node simulates 4 cores and the second 2: six 1-core instances fit only on both, seven on neither.
      const image = await registerTestImage(cloud, 'cli/img.manifest.xml', 'cli-image');
      const seven = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 7, MaxCount: 7, InstanceType: 'm1.small' });
      expect(seven.code).toBe('InsufficientInstanceCapacity');
      await eventually('six instances launched over both nodes', async () => {
        const six = await cloud.client.call('RunInstances', { ImageId: image, MinCount: 6, MaxCount: 6, InstanceType: 'm1.small' });
        return six.status === 200 ? true : undefined;
      }, 20_000);
    } finally {
      nc2.kill('SIGTERM');
    }
  });

  it('a bad account name is refused with a message, not a stack trace', async () => {
    await expect(cloud.mallee(['account', 'create', 'Bad Name!'])).rejects.toThrow(/mallee: CreateAccount: name: .*\n(?![\s\S]*\n\s+at )/);
  });

  it('`mallee down` stops every daemon; `mallee status` then says how to start the cloud', async () => {
    const pids = ['clc', 'cc', 'nc'].map(pidOf);
    await cloud.mallee(['down']);
    expect(pids.filter(alive)).toEqual([]);
    await expect(mallee(['status', '--home', cloud.home])).rejects.toThrow(/mallee up --home/);
  });
});
