// awscli v1 (SigV4) against a real all-in-one cloud: the instance life cycle as an AWS user runs it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, eventually, runTool, startCloud, type Cloud } from './helpers/cloud.js';
import { uploadTestBundle } from './helpers/images.js';

let cloud: Cloud;
beforeAll(async () => {
  cloud = await startCloud();
});
afterAll(async () => {
  await cloud?.stop();
});

async function aws(args: string[], opts: { endpoint?: boolean } = {}): Promise<Record<string, unknown>> {
  const endpoint = opts.endpoint === false ? [] : ['--endpoint-url', cloud.ec2Url];
  const r = await runTool('aws', [...endpoint, '--region', cloud.region, '--output', 'json', ...args], clientEnv(cloud.env));
  if (r.code !== 0) throw new Error(`aws ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${cloud.logs()}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
}

type Instance = { InstanceId: string; State: { Name: string } };
const instancesIn = (r: Record<string, unknown>) => ((r.Reservations ?? []) as { Instances: Instance[] }[]).flatMap((rv) => rv.Instances);

describe('awscli v1 drives an all-in-one cloud', () => {
  it('after sourcing eucarc, `aws ec2 describe-availability-zones` needs no --endpoint-url', async () => {
    const r = await aws(['ec2', 'describe-availability-zones'], { endpoint: false });
    expect((r.AvailabilityZones as { ZoneName: string }[]).length).toBeGreaterThan(0);
  });

  it('creates a key pair, a security group with a rule, registers an image, runs 3 instances, filters, tags, reads console output and terminates', async () => {
    const kp = await aws(['ec2', 'create-key-pair', '--key-name', 'cli-key']);
    expect(String(kp.KeyMaterial)).toMatch(/^-----BEGIN (RSA )?PRIVATE KEY-----/);
    const sg = await aws(['ec2', 'create-security-group', '--group-name', 'cli-web', '--description', 'web servers']);
    expect(String(sg.GroupId)).toMatch(/^sg-/);
    await aws(['ec2', 'authorize-security-group-ingress', '--group-name', 'cli-web', '--protocol', 'tcp', '--port', '22', '--cidr', '0.0.0.0/0']);
    const groups = await aws(['ec2', 'describe-security-groups', '--group-names', 'cli-web']);
    const perms = (groups.SecurityGroups as { IpPermissions: { FromPort?: number; IpRanges: { CidrIp: string }[] }[] }[])[0]!.IpPermissions;
    expect(perms.some((p) => p.FromPort === 22 && p.IpRanges.some((r) => r.CidrIp === '0.0.0.0/0'))).toBe(true);

    await uploadTestBundle(cloud, 'cli-bucket/test.img.manifest.xml');
    const image = String((await aws(['ec2', 'register-image', '--image-location', 'cli-bucket/test.img.manifest.xml', '--name', 'cli-image'])).ImageId);
    expect(image).toMatch(/^[ae]mi-/);

    const run = await aws(['ec2', 'run-instances', '--image-id', image, '--count', '3', '--instance-type', 'm1.small', '--key-name', 'cli-key', '--security-groups', 'cli-web']);
    const ids = (run.Instances as Instance[]).map((i) => i.InstanceId).sort();
    expect(ids).toHaveLength(3);
    for (const id of ids) expect(id).toMatch(/^i-[0-9a-f]{8,17}$/);

    await eventually('three running instances', async () => {
      const r = await aws(['ec2', 'describe-instances', '--filters', 'Name=instance-state-name,Values=running', `Name=instance-id,Values=${ids.join(',')}`]);
      return instancesIn(r).length === 3 ? true : undefined;
    }, 60_000);

    const byKey = await aws(['ec2', 'describe-instances', '--filters', 'Name=key-name,Values=cli-key', 'Name=instance-type,Values=m1.small', 'Name=group-name,Values=cli-web']);
    expect(instancesIn(byKey).map((i) => i.InstanceId).sort()).toEqual(ids);
    const byImage = await aws(['ec2', 'describe-instances', '--filters', `Name=image-id,Values=${image}`, `Name=availability-zone,Values=nosuch-zone`]);
    expect(instancesIn(byImage)).toEqual([]);

    await aws(['ec2', 'create-tags', '--resources', ids[0]!, '--tags', 'Key=role,Value=db']);
    const tagged = await aws(['ec2', 'describe-instances', '--filters', 'Name=tag:role,Values=db']);
    expect(instancesIn(tagged).map((i) => i.InstanceId)).toEqual([ids[0]]);

    const console = await aws(['ec2', 'get-console-output', '--instance-id', ids[1]!]);
    expect(console.InstanceId).toBe(ids[1]);

    const term = await aws(['ec2', 'terminate-instances', '--instance-ids', ...ids]);
    expect((term.TerminatingInstances as { InstanceId: string }[]).map((t) => t.InstanceId).sort()).toEqual(ids);
    await eventually('three terminated instances', async () => {
      const r = await aws(['ec2', 'describe-instances', '--instance-ids', ...ids]);
      return instancesIn(r).every((i) => i.State.Name === 'terminated') && instancesIn(r).length === 3 ? true : undefined;
    }, 60_000);
  });

  it('`aws s3` (endpoint S3_URL from eucarc) makes a bucket in Walrus, uploads, lists, downloads and removes', async () => {
    const s3 = async (args: string[]) => {
      const r = await runTool('aws', ['--endpoint-url', cloud.env.S3_URL!, '--region', cloud.region, 's3', ...args], clientEnv(cloud.env));
      if (r.code !== 0) throw new Error(`aws s3 ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return r.stdout;
    };
    const file = join(cloud.home, 'hello.txt');
    writeFileSync(file, 'hello from the all-in-one\n');
    await s3(['mb', 's3://aio-bucket']);
    await s3(['cp', file, 's3://aio-bucket/greetings/hello.txt']);
    expect(await s3(['ls', 's3://aio-bucket/greetings/'])).toMatch(/\s26 hello\.txt/);
    expect(await s3(['cp', 's3://aio-bucket/greetings/hello.txt', '-'])).toBe('hello from the all-in-one\n');
    await s3(['rb', 's3://aio-bucket', '--force']);
  });
});
