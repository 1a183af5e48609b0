// Two clc processes on one PostgreSQL database behind one cloud (one cc, one simulated nc): 500
// concurrent AllocateAddress and RunInstances calls, half to each, never hand out an address twice
// nor launch more instances than the node holds. Then the poller lease: only one clc moves states along,
// and when it dies the other takes over. Needs MALLEE_TEST_PG_URL (backends.sh up pg).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startCloud, eventually, type Cloud } from '../e2e/helpers/cloud.js';
import { Ec2Client } from '../e2e/helpers/ec2-client.js';
import { registerTestImage } from '../e2e/helpers/images.js';
import { dropDatabase, freshDatabase, startSecondClc, type SecondClc } from './helpers.js';

const pgUrl = process.env.MALLEE_TEST_PG_URL;
const POOL = 100;
/** The node holds exactly this many t1.micro (1 CPU; memory and disk to spare). */
const CAPACITY = 20;

describe.skipIf(!pgUrl)('two clc processes on one PostgreSQL', () => {
  const database = `mallee_two_clcs_${process.pid}`;
  let cloud: Cloud;
  let second: SecondClc | undefined;
  let clients: Ec2Client[];

  beforeAll(async () => {
    const dbUrl = freshDatabase(pgUrl!, database);
    const net = { VNET_PUBLICIPS: `198.51.100.1-198.51.100.${POOL}`, VNET_AUTOASSIGN: 'N' };
    cloud = await startCloud({ conf: { DB_URL: dbUrl, ...net, SIM_CORES: CAPACITY, SIM_MEM: 1_000_000, SIM_DISK: 100_000, SIM_BOOT_DELAY: 100 } });
    second = await startSecondClc(cloud, dbUrl, Object.fromEntries(Object.entries(net).map(([k, v]) => [`MALLEE_${k}`, v])));
    const creds = { accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: cloud.env.AWS_SECRET_ACCESS_KEY! };
    clients = [cloud.client, new Ec2Client(second.url, creds, cloud.region)];
    // Both see the registered zone and its capacity before the storm.
    for (const c of clients) {
      await eventually('the zone available on both clcs', async () => {
        const r = await c.call('DescribeAvailabilityZones', {});
        return r.body.includes('available') ? true : undefined;
      }, 60_000);
    }
  });

  const stateOf = async (c: Ec2Client, id: string) => /<instanceState><code>\d+<\/code><name>([a-z-]+)</.exec((await c.call('DescribeInstances', { 'InstanceId.1': id })).body)?.[1];

  afterAll(async () => {
    second?.stop();
    await cloud?.stop();
    dropDatabase(pgUrl!, database);
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
    expect(launched.length).toBeLessThanOrEqual(CAPACITY);
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

  it('one ClientToken sent to both clcs at once makes one volume (and one reservation), and each answers with it', async () => {
    const zone = /<zoneName>([^<]+)</.exec((await clients[0]!.call('DescribeAvailabilityZones', {})).body)![1]!;
    const token = `two-clcs-${process.pid}`;
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => clients[i % 2]!.call('CreateVolume', { AvailabilityZone: zone, Size: '1', ClientToken: token })));
    expect(replies.filter((r) => r.status !== 200).map((r) => `${r.code}: ${r.body}`)).toEqual([]);
    const ids = new Set(replies.map((r) => /<volumeId>(vol-[0-9a-f]+)</.exec(r.body)![1]));
    expect(ids.size).toBe(1);
    const listed = [...(await clients[1]!.call('DescribeVolumes', {})).body.matchAll(/<volumeId>(vol-[0-9a-f]+)</g)].map((m) => m[1]);
    expect(listed).toEqual([...ids]);
    const [id] = ids;
    await eventually('the volume available', async () => ((await clients[0]!.call('DescribeVolumes', { 'VolumeId.1': id! })).body.includes('<status>available</status>') ? true : undefined), 30_000);
    expect((await clients[0]!.call('DeleteVolume', { VolumeId: id! })).status).toBe(200);
    // RunInstances the same way: one reservation, whichever clc answers — once the storm's instances are gone.
    const storm = [...(await clients[1]!.call('DescribeInstances', {})).body.matchAll(/<instanceId>(i-[0-9a-f]+)</g)].map((m) => m[1]!);
    await clients[1]!.call('TerminateInstances', Object.fromEntries(storm.map((id, i) => [`InstanceId.${i + 1}`, id])));
    await eventually('the storm terminated', async () => ((await Promise.all(storm.map((id) => stateOf(clients[1]!, id)))).every((s) => s === 'terminated' || s === undefined) ? true : undefined), 60_000);
    const imageId = await registerTestImage(cloud, 'two-clcs/token.img.manifest.xml', 'two-clcs-token');
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => clients[i % 2]!.call('RunInstances', { ImageId: imageId!, MinCount: '1', MaxCount: '1', InstanceType: 't1.micro', ClientToken: token })));
    expect(runs.filter((r) => r.status !== 200).map((r) => `${r.code}: ${r.body}`)).toEqual([]);
    expect(new Set(runs.map((r) => /<reservationId>(r-[0-9a-f]+)</.exec(r.body)![1])).size).toBe(1);
    expect(new Set(runs.map((r) => /<instanceId>(i-[0-9a-f]+)</.exec(r.body)![1])).size).toBe(1);
  });

  it('one clc holds the poller lease; while it hangs the other moves nothing; killed with -9, the other takes over', async () => {
    const firstUrl = readFileSync(join(cloud.home, 'run', 'clc.url'), 'utf8').trim();
    const firstPid = Number(readFileSync(join(cloud.home, 'run', 'clc.pid'), 'utf8'));
    const lease = async (url: string) => {
      const text = await (await fetch(new URL('/metrics', url))).text();
      return Number(/^mallee_clc_poller_lease (\d+)$/m.exec(text)?.[1]);
    };
    // The first clc took it at its start, the second never did.
    expect(await lease(firstUrl)).toBe(1);
    expect(await lease(second!.url)).toBe(0);
    const imageId = await registerTestImage(cloud, 'two-clcs/lease.img.manifest.xml', 'two-clcs-lease');
    // The holder hangs (SIGSTOP: its session, and so the lease, stays): a launch through the other clc reaches
    // the node, but nobody moves it to running — the other clc polls only for its own view.
    process.kill(firstPid, 'SIGSTOP');
    try {
      const run = await clients[1]!.call('RunInstances', { ImageId: imageId!, MinCount: '1', MaxCount: '1', InstanceType: 't1.micro' });
      expect(run.status).toBe(200);
      const id = /<instanceId>(i-[0-9a-f]+)</.exec(run.body)![1]!;
      await new Promise((r) => setTimeout(r, 5_000)); // 5 polls of the other clc (POLL_INTERVAL 1 s); the simulated boot takes 0.1 s
      expect(await stateOf(clients[1]!, id)).toBe('pending');
      expect(await lease(second!.url)).toBe(0);
      // Killed: PostgreSQL ends its session, the lease is free, the other clc's next round takes it.
      process.kill(firstPid, 'SIGKILL');
      await eventually('the second clc holding the lease', async () => ((await lease(second!.url)) === 1 ? true : undefined), 30_000);
      expect(await eventually('the launch running', async () => ((await stateOf(clients[1]!, id)) === 'running' ? 'running' : undefined), 30_000)).toBe('running');
    } finally {
      try {
        process.kill(firstPid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
});
