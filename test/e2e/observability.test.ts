// Operator visibility: /metrics in Prometheus text on every daemon (requests and latency by action,
// instances by state, capacity, walrus bytes), and one request id across the clc, cc and nc log lines
// of one user request.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancesOf, items } from './helpers/ec2-client.js';
import { eventually, startCloud, type Cloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';

let cloud: Cloud;
const url = (svc: string) => readFileSync(join(cloud.home, 'run', `${svc}.url`), 'utf8').trim();
const scrape = async (svc: string, path = '/metrics') => {
  const res = await fetch(new URL(path, url(svc)));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
};
const logLines = (svc: string) =>
  readFileSync(join(cloud.home, 'log', `${svc}.log`), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

let runRequestId: string;
let instanceId: string;
beforeAll(async () => {
  cloud = await startCloud();
  const image = await registerTestImage(cloud, 'obs/img.manifest.xml', 'obs');
  const run = await cloud.client.ok('RunInstances', { ImageId: image, MinCount: 1, MaxCount: 1 });
  runRequestId = String(run.requestId);
  instanceId = String(items(run.instancesSet)[0]!.instanceId);
  await eventually('instance running', async () => (instancesOf(await cloud.client.ok('DescribeInstances', { 'InstanceId.1': instanceId }))[0]?.state === 'running' ? true : undefined), 60_000);
});
afterAll(async () => {
  await cloud?.stop();
});

describe('/metrics on every daemon', () => {
  it('clc: EC2 requests and latency by action, instances by zone and state, process RSS', async () => {
    await cloud.client.call('DescribeInstances', { 'InstanceId.1': 'i-00000000' });
    const text = await scrape('clc');
    expect(text).toMatch(/^mallee_requests_total\{api="ec2",action="RunInstances",status="200"\} 1$/m);
    expect(text).toMatch(/^mallee_requests_total\{api="ec2",action="DescribeInstances",status="400"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_request_duration_seconds_count\{api="ec2",action="RunInstances"\} 1$/m);
    expect(text).toMatch(/^mallee_request_duration_seconds_bucket\{le="\+Inf",api="ec2",action="DescribeInstances"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_clc_instances\{zone="[^"]+",state="running"\} 1$/m);
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
  });

  it('cc: wire operations by name, instances by state, capacity', async () => {
    const text = await scrape('cc');
    expect(text).toMatch(/^mallee_requests_total\{api="wire",action="RunInstances",status="200"\} 1$/m);
    expect(text).toMatch(/^mallee_requests_total\{api="wire",action="DescribeInstances",status="200"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_request_duration_seconds_count\{api="wire",action="DescribeResources"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_cc_instances\{state="running"\} 1$/m);
    expect(text).toMatch(/^mallee_cc_capacity\{resource="cores",kind="max"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mallee_cc_nodes\{state="ENABLED"\} 1$/m);
  });

  it('nc: wire operations, instances by state, capacity', async () => {
    const text = await scrape('nc');
    expect(text).toMatch(/^mallee_requests_total\{api="wire",action="ncRunInstance",status="200"\} 1$/m);
    expect(text).toMatch(/^mallee_nc_instances\{state="running"\} 1$/m);
    expect(text).toMatch(/^mallee_nc_capacity\{resource="memory_mib",kind="available"\} \d+$/m);
  });

  it('walrus: S3 requests by action and the bytes it stores', async () => {
    const text = await scrape('walrus', '/_mallee/metrics');
    expect(text).toMatch(/^mallee_walrus_stored_bytes \d+$/m);
    expect(text).toMatch(/^mallee_walrus_objects \d+$/m);
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
  });

  it('sc: wire operations the clc sends it, volumes by status after a CreateVolume', async () => {
    const zone = String(items((await cloud.client.ok('DescribeAvailabilityZones')).availabilityZoneInfo)[0]!.zoneName);
    const vol = String((await cloud.client.ok('CreateVolume', { Size: 1, AvailabilityZone: zone })).volumeId);
    await eventually('volume available', async () => (items((await cloud.client.ok('DescribeVolumes', { 'VolumeId.1': vol })).volumeSet)[0]?.status === 'available' ? true : undefined), 60_000);
    const text = await scrape('sc');
    expect(text).toMatch(/^mallee_requests_total\{api="wire",action="CreateStorageVolume",status="200"\} 1$/m);
    expect(text).toMatch(/^mallee_sc_volumes\{status="available"\} 1$/m);
    expect(text).toMatch(/^mallee_sc_volume_gib\{status="available"\} 1$/m);
  });

  it('unknown paths and fuzzed actions do not become label values', async () => {
    await fetch(new URL('/no/such/path/zzz123', url('clc')));
    await cloud.client.call('Zzz123Action');
    const text = await scrape('clc');
    expect(text).not.toContain('zzz123');
    expect(text).not.toContain('Zzz123');
  });
});

describe('request ids across daemons', () => {
  it('the clc, cc and nc log lines of one RunInstances share its EC2 request id', async () => {
    expect(runRequestId).toMatch(/^[0-9a-f-]{36}$/);
    const mine = (svc: string) => logLines(svc).filter((l) => l.requestId === runRequestId);
    const clc = mine('clc');
    expect(clc.some((l) => l.api === 'ec2' && l.action === 'RunInstances' && l.status === 200)).toBe(true);
    const cc = mine('cc');
    expect(cc.some((l) => l.api === 'wire' && l.action === 'RunInstances')).toBe(true);
    const nc = mine('nc');
    expect(nc.some((l) => l.api === 'wire' && l.action === 'ncRunInstance')).toBe(true);
    // Lines the nc writes while starting the instance carry it too (pino mixin over the request context).
    expect(nc.some((l) => l.msg === 'instance started' && l.instanceId === instanceId)).toBe(true);
  });
});
