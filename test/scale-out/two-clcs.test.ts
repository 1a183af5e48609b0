// Two clc processes on one PostgreSQL database behind one cloud (one cc, one simulated nc): 500
// concurrent AllocateAddress and RunInstances calls, half to each, never hand out an address twice
// nor launch more instances than the node holds. Needs MALLEE_TEST_PG_URL (backends.sh up pg).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgDatabase } from '@mallee/store';
import { startCloud, eventually, freePortBase, type Cloud } from '../e2e/helpers/cloud.js';
import { Ec2Client } from '../e2e/helpers/ec2-client.js';
import { registerTestImage } from '../e2e/helpers/images.js';

const pgUrl = process.env.MALLEE_TEST_PG_URL;
const repo = new URL('../..', import.meta.url).pathname;
const POOL = 100;
const CORES = 40;

describe.skipIf(!pgUrl)('two clc processes on one PostgreSQL', () => {
  const database = `mallee_two_clcs_${process.pid}`;
  let cloud: Cloud;
  let second: ChildProcess | undefined;
  let secondHome: string;
  let clients: Ec2Client[];

  beforeAll(async () => {
    const admin = new PgDatabase({ url: pgUrl!, schema: 'public' });
    admin.exec(`DROP DATABASE IF EXISTS ${database}`).exec(`CREATE DATABASE ${database}`);
    admin.close();
    const dbUrl = pgUrl!.replace(/\/[^/?]*(\?|$)/, `/${database}$1`);
    cloud = await startCloud({
      conf: { DB_URL: dbUrl, VNET_PUBLICIPS: `198.51.100.1-198.51.100.${POOL}`, VNET_AUTOASSIGN: 'N', MAX_CORES: CORES, SIM_BOOT_DELAY: 100 },
    });
    // The second clc: its own home and port, the first one's keys (admin key, cloud CA), the same database.
    secondHome = mkdtempSync(join(tmpdir(), 'mallee-clc2-'));
    cpSync(join(cloud.home, 'keys'), join(secondHome, 'keys'), { recursive: true });
    const port = (await freePortBase()) + 1;
    second = spawn(process.execPath, [join(repo, 'services/clc/dist/src/main.js'), '--home', secondHome, '--conf', join(cloud.home, 'mallee.conf')], {
      env: { ...process.env, MALLEE_DB_URL: dbUrl, MALLEE_CLC_PORT: String(port), MALLEE_VNET_PUBLICIPS: `198.51.100.1-198.51.100.${POOL}`, MALLEE_VNET_AUTOASSIGN: 'N', MALLEE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    second.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const url = await eventually('the second clc listening', async () => {
      if (second!.exitCode !== null) throw new Error(`the second clc exited: ${stderr}`);
      return existsSync(join(secondHome, 'run', 'clc.url')) ? readFileSync(join(secondHome, 'run', 'clc.url'), 'utf8').trim() : undefined;
    }, 60_000);
    const creds = { accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY! };
    clients = [cloud.client, new Ec2Client(url, creds, cloud.region)];
    // Both see the registered zone and its capacity before the storm.
    for (const c of clients) {
      await eventually('the zone available on both clcs', async () => {
        const r = await c.call('DescribeAvailabilityZones', {});
        return r.body.includes('available') ? true : undefined;
      }, 60_000);
    }
  });

  afterAll(async () => {
    second?.kill('SIGTERM');
    await cloud?.stop();
    if (secondHome) rmSync(secondHome, { recursive: true, force: true });
    const admin = new PgDatabase({ url: pgUrl!, schema: 'public' });
    admin.exec(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    admin.close();
  });

  it('500 concurrent AllocateAddress and RunInstances never double-allocate an address or exceed capacity', async () => {
    const imageId = await registerTestImage(cloud, 'two-clcs/test.img.manifest.xml', 'two-clcs');
    const calls = Array.from({ length: 500 }, (_, i) => {
      const client = clients[i % 2]!;
      return i % 4 < 2
        ? client.call('AllocateAddress', {})
        : client.call('RunInstances', { ImageId: imageId!, MinCount: '1', MaxCount: '1', InstanceType: 't1.micro' });
    });
    const replies = await Promise.all(calls);
    const failures = replies.filter((r) => r.status !== 200);
    // Every refusal is the one EC2 gives for a full pool or full zone; nothing broke.
    expect(new Set(failures.map((r) => r.code))).toEqual(new Set(['AddressLimitExceeded', 'InsufficientInstanceCapacity']));
    const ips = replies.filter((r) => r.status === 200 && r.body.includes('AllocateAddressResponse')).map((r) => /<publicIp>([^<]+)</.exec(r.body)![1]!);
    expect(ips.length).toBe(POOL);
    expect(new Set(ips).size).toBe(POOL);
    const launched = replies.filter((r) => r.status === 200 && r.body.includes('RunInstancesResponse')).map((r) => /<instanceId>(i-[0-9a-f]+)</.exec(r.body)![1]!);
    expect(launched.length).toBeGreaterThan(0);
    expect(launched.length).toBeLessThanOrEqual(CORES);
    expect(new Set(launched).size).toBe(launched.length);
    // What the database holds agrees, seen from either clc.
    for (const c of clients) {
      const addrs = await c.call('DescribeAddresses', {});
      expect(addrs.body.match(/<publicIp>/g)?.length).toBe(POOL);
      const inst = await c.call('DescribeInstances', {});
      const ids = [...inst.body.matchAll(/<instanceId>(i-[0-9a-f]+)</g)].map((m) => m[1]);
      expect(new Set(ids)).toEqual(new Set(launched));
      const privateIps = [...inst.body.matchAll(/<privateIpAddress>([^<]+)</g)].map((m) => m[1]);
      expect(new Set(privateIps).size).toBe(privateIps.length);
    }
  });
});
