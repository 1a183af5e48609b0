// Operating a real all-in-one cloud with the `mallee` command: cloud properties (an admin changes a
// setting and the cloud follows it, seen with awscli).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, runTool, startCloud, type Cloud } from './helpers/cloud.js';

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
