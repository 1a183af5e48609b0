// Real clients against a listening ec2Api: boto 2 (SigV2), euca2ools 3.4 (SigV4, made-up region),
// awscli and boto3 (SigV4). Each must get its answer parsed, and a wrong secret must fail cleanly.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { defineEc2Action, ec2Api, q, type Principal } from '../src/index.js';

const run = promisify(execFile);
const KEY = 'AKIDCLIENTS00000001';
const SECRET = 'clients/Secret+Key/0000000000000000000';
const principal: Principal = { accountId: '5', accountName: 'clients', userId: 'u', accessKeyId: KEY, isAdmin: false };

const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000 }).status === 0;
const debianPython = '/usr/bin/python3';
const hasBoto2 = existsSync(debianPython) && has(debianPython, ['-c', 'import boto']);
const hasBoto3 = has('python3', ['-c', 'import boto3']);
const hasAwsCli = has('aws', ['--version']);
const euca = fileURLToPath(new URL('../../../../shared/tools/euca', import.meta.url));
const hasEuca = existsSync(euca) && existsSync(debianPython) && has(debianPython, ['-c', 'import requests, lxml, six, yaml']);

const seen: { action: string; input: unknown; version: string }[] = [];

const describeRegions = defineEc2Action('DescribeRegions', z.object({ RegionName: q.list(z.string()), Filter: q.filters() }), (input, ctx) => {
  seen.push({ action: 'DescribeRegions', input, version: ctx.apiVersion });
  return { regionInfo: [{ regionName: 'mallee-1', regionEndpoint: 'http://clc.example:8773/services/compute' }] };
});

const describeInstances = defineEc2Action('DescribeInstances', z.object({ InstanceId: q.list(z.string()), Filter: q.filters() }), (input, ctx) => {
  seen.push({ action: 'DescribeInstances', input, version: ctx.apiVersion });
  return {
    reservationSet: [{
      reservationId: 'r-0a1b2c3d', ownerId: ctx.principal.accountId, groupSet: [{ groupId: 'sg-1', groupName: 'default' }],
      instancesSet: input.InstanceId.map((instanceId, i) => ({
        instanceId, imageId: 'emi-12345678', instanceState: { code: 16, name: 'running' }, privateDnsName: '', dnsName: '',
        amiLaunchIndex: i, instanceType: 'm1.small', launchTime: new Date('2026-11-25T09:30:00Z'),
        placement: { availabilityZone: 'zone-a' }, monitoring: { state: 'disabled' },
        tagSet: [{ key: 'Name', value: `web <${i}> & co` }],
      })),
    }],
  };
});

let app: FastifyInstance;
let url = '';
beforeAll(async () => {
  app = Fastify({ logger: false });
  await app.register(ec2Api, { actions: [describeRegions, describeInstances], credentials: (id) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined) });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await app.close();
});

const port = () => new URL(url).port;

describe('real EC2 clients', () => {
  // boto 2.49 (Debian's python3-boto) signs EC2 with SigV4, scoped to the endpoint's first host label
  // ("127" here); boto 2 before 2.3x and the Eucalyptus-era tools used SigV2, emulated by asking for
  // the 'ec2' auth capability. Both must work.
  for (const [label, capability] of [['SigV4 scoped to the host name', ''], ['SigV2, as older boto 2', 'ec2']] as const) {
    test.skipIf(!hasBoto2)(`boto 2 connect_euca (${label}) describes regions and instances with filters`, async () => {
      const script = `
import boto, sys, json
from boto.ec2.connection import EC2Connection
if sys.argv[4]:
    EC2Connection._required_auth_capability = lambda self: [sys.argv[4]]
def connect(secret):
    return boto.connect_euca(host='127.0.0.1', port=int(sys.argv[1]), path='/services/Eucalyptus', is_secure=False,
                             aws_access_key_id=sys.argv[2], aws_secret_access_key=secret)
c = connect(sys.argv[3])
regions = [r.name for r in c.get_all_regions()]
res = c.get_all_instances(instance_ids=['i-1a2b3c4d', 'i-5e6f7a8b'], filters={'tag:Name': ['web server', 'a&b+c']})
out = {'regions': regions, 'instances': [[i.id, i.state, i.tags.get('Name'), i.launch_time] for r in res for i in r.instances],
       'auth': type(c._auth_handler).__name__}
try:
    connect('wrong').get_all_regions()
except boto.exception.EC2ResponseError as e:
    out['error'] = [e.status, e.error_code]
print(json.dumps(out))
`;
      seen.length = 0;
      const { stdout } = await run(debianPython, ['-c', script, port(), KEY, SECRET, capability], { timeout: 60_000 });
      const out = JSON.parse(stdout) as { regions: string[]; instances: unknown[][]; error: [number, string]; auth: string };
      expect(out.auth).toBe(capability === 'ec2' ? 'QuerySignatureV2AuthHandler' : 'HmacAuthV4Handler');
      expect(out.regions).toEqual(['mallee-1']);
      expect(out.instances).toEqual([
        ['i-1a2b3c4d', 'running', 'web <0> & co', '2026-11-25T09:30:00.000Z'],
        ['i-5e6f7a8b', 'running', 'web <1> & co', '2026-11-25T09:30:00.000Z'],
      ]);
      expect(out.error).toEqual([403, 'SignatureDoesNotMatch']);
      expect(seen.find((s) => s.action === 'DescribeInstances')?.input).toEqual({
        InstanceId: ['i-1a2b3c4d', 'i-5e6f7a8b'], Filter: [{ Name: 'tag:Name', Value: ['web server', 'a&b+c'] }],
      });
    });
  }

  test.skipIf(!hasEuca)('euca2ools 3.4 (SigV4 for a made-up region) describes instances', async () => {
    const env = { ...process.env, EC2_URL: `${url}/services/compute`, EC2_ACCESS_KEY: KEY, EC2_SECRET_KEY: SECRET, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_DEFAULT_REGION: '', AWS_AUTH_REGION: '' };
    const { stdout } = await run(euca, ['euca-describe-instances', 'i-1a2b3c4d'], { env, timeout: 120_000 });
    expect(stdout).toMatch(/RESERVATION\s+r-0a1b2c3d/);
    expect(stdout).toMatch(/INSTANCE\s+i-1a2b3c4d\s+emi-12345678/);
    expect(seen.some((s) => s.action === 'DescribeInstances' && s.version === '2015-10-01')).toBe(true);
    const bad = await run(euca, ['euca-describe-regions'], { env: { ...env, EC2_SECRET_KEY: 'wrong' }, timeout: 120_000 }).catch((e: { stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toContain('SignatureDoesNotMatch');
  });

  test.skipIf(!hasAwsCli)('awscli (SigV4) describes regions and filtered instances', async () => {
    const env = { ...process.env, AWS_ACCESS_KEY_ID: KEY, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: 'mallee', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null' };
    const { stdout } = await run('aws', ['ec2', 'describe-instances', '--endpoint-url', url, '--instance-ids', 'i-1a2b3c4d', '--filters', 'Name=instance-state-name,Values=running,pending', '--output', 'json'], { env, timeout: 120_000 });
    const out = JSON.parse(stdout) as { Reservations: { Instances: { InstanceId: string; Tags: { Value: string }[] }[] }[] };
    expect(out.Reservations[0]!.Instances[0]!.InstanceId).toBe('i-1a2b3c4d');
    expect(out.Reservations[0]!.Instances[0]!.Tags[0]!.Value).toBe('web <0> & co');
    const bad = await run('aws', ['ec2', 'describe-regions', '--endpoint-url', url], { env: { ...env, AWS_SECRET_ACCESS_KEY: 'wrong' }, timeout: 120_000 }).catch((e: { stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toContain('SignatureDoesNotMatch');
  });

  test.skipIf(!hasBoto3)('boto3 (SigV4) describes regions', async () => {
    const script = `
import boto3, sys, json
c = boto3.client('ec2', endpoint_url=sys.argv[1], region_name='anything', aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])
print(json.dumps([r['RegionName'] for r in c.describe_regions(RegionNames=['mallee-1'])['Regions']]))
`;
    const { stdout } = await run('python3', ['-c', script, url, KEY, SECRET], { timeout: 60_000 });
    expect(JSON.parse(stdout)).toEqual(['mallee-1']);
    expect(seen.some((s) => s.action === 'DescribeRegions' && JSON.stringify(s.input).includes('mallee-1'))).toBe(true);
  });
});
