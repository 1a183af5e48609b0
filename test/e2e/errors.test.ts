// Bad requests get AWS error envelopes with AWS's codes and HTTP statuses, and the cloud keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEnv, runTool, startCloud, type Cloud } from './helpers/cloud.js';

let cloud: Cloud;
beforeAll(async () => {
  cloud = await startCloud();
});
afterAll(async () => {
  await cloud?.stop();
});

async function stillServing(): Promise<void> {
  const r = await cloud.client.call('DescribeRegions');
  expect(r.status).toBe(200);
}

function expectEnvelope(body: string, code: string): void {
  expect(body).toMatch(/<Response>\s*<Errors>\s*<Error>\s*<Code>/);
  expect(body).toContain(`<Code>${code}</Code>`);
  expect(body).toMatch(/<RequestI[Dd]>[^<]+<\/RequestI[Dd]>/);
  expect(body).not.toMatch(/\bat .+\.js:\d+/); // no stack trace
}

describe('AWS error envelopes from the EC2 API', () => {
  it('a wrong secret key is refused with SignatureDoesNotMatch or AuthFailure (HTTP 401/403)', async () => {
    const r = await cloud.client.withCredentials({ accessKeyId: cloud.env.AWS_ACCESS_KEY_ID!, secretAccessKey: 'not-the-secret' }).call('DescribeInstances');
    expect(['SignatureDoesNotMatch', 'AuthFailure']).toContain(r.code);
    expect([401, 403]).toContain(r.status);
    expectEnvelope(r.body, r.code!);
    await stillServing();
  });

  it('awscli with a wrong secret fails with AuthFailure or SignatureDoesNotMatch', async () => {
    const env = clientEnv({ ...cloud.env, AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
    const r = await runTool('aws', ['--endpoint-url', cloud.ec2Url, '--region', cloud.region, 'ec2', 'describe-instances'], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/AuthFailure|SignatureDoesNotMatch/);
    await stillServing();
  });

  it('an unknown access key is refused with AuthFailure (HTTP 401) or InvalidClientTokenId', async () => {
    const r = await cloud.client.withCredentials({ accessKeyId: 'AKIANOSUCHKEY0000000', secretAccessKey: 'x' }).call('DescribeInstances');
    expect(['AuthFailure', 'InvalidClientTokenId']).toContain(r.code);
    expect([401, 403]).toContain(r.status);
    await stillServing();
  });

  it('an unknown action is InvalidAction (HTTP 400)', async () => {
    const r = await cloud.client.call('FrobnicateInstances');
    expect(r.code).toBe('InvalidAction');
    expect(r.status).toBe(400);
    expectEnvelope(r.body, 'InvalidAction');
    await stillServing();
  });

  it('a malformed instance id is InvalidInstanceID.Malformed (HTTP 400)', async () => {
    const r = await cloud.client.call('DescribeInstances', { 'InstanceId.1': 'not-an-instance' });
    expect(r.code).toBe('InvalidInstanceID.Malformed');
    expect(r.status).toBe(400);
    expectEnvelope(r.body, 'InvalidInstanceID.Malformed');
    const t = await cloud.client.call('TerminateInstances', { 'InstanceId.1': 'i-xyz' });
    expect(t.code).toBe('InvalidInstanceID.Malformed');
    await stillServing();
  });

  it('an unknown but well-formed instance id is InvalidInstanceID.NotFound (HTTP 400)', async () => {
    const r = await cloud.client.call('DescribeInstances', { 'InstanceId.1': 'i-0123abcd' });
    expect(r.code).toBe('InvalidInstanceID.NotFound');
    expect(r.status).toBe(400);
    await stillServing();
  });

  it('a missing required parameter is MissingParameter (HTTP 400)', async () => {
    const r = await cloud.client.call('CreateKeyPair');
    expect(r.code).toBe('MissingParameter');
    expect(r.status).toBe(400);
    expectEnvelope(r.body, 'MissingParameter');
    const run = await cloud.client.call('RunInstances', { MinCount: 1, MaxCount: 1 });
    expect(run.code).toBe('MissingParameter');
    await stillServing();
  });
});
