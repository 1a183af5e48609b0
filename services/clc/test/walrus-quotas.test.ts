// Walrus's quotas are cloud properties: `walrus.storagemaxbucketsperaccount` and
// `walrus.storagemaxbucketsizeinmb` set on the clc (ModifyPropertyValue, what `mallee property` sends)
// reach the running Walrus (its cached property reader, 10 s), which then refuses with TooManyBuckets /
// QuotaExceeded; reset, the mallee.conf defaults apply again.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { signV4, UNSIGNED_PAYLOAD } from '@mallee/aws-protocol';
import { admin } from '@mallee/wire';
import { eventually, startFakeCloud, type Ec2, type TestCloud } from './harness.js';

let cloud: TestCloud;
let alice: { ec2: Ec2; accountId: string; accountName: string };
beforeAll(async () => {
  cloud = await startFakeCloud();
  alice = await cloud.account('quota-alice');
});
afterAll(async () => {
  await cloud?.stop();
});

async function s3(method: string, path: string, body = ''): Promise<{ status: number; code?: string }> {
  const u = new URL(cloud.walrusUrl);
  const signed = signV4({ method, path, headers: { host: u.host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD }, accessKeyId: alice.ec2.accessKeyId, secretAccessKey: alice.ec2.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: UNSIGNED_PAYLOAD });
  const res = await fetch(new URL(path, cloud.walrusUrl), { method, headers: signed.headers, ...(method === 'PUT' ? { body } : {}) });
  const text = await res.text();
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  return { status: res.status, ...(code ? { code } : {}) };
}

it('bucket count and bucket size quotas follow the walrus.* properties while Walrus runs', async () => {
  await cloud.admin(admin.ModifyPropertyValue, { name: 'walrus.storagemaxbucketsperaccount', value: '2' });
  expect((await s3('PUT', '/quota-one')).status).toBe(200);
  // The property reaches Walrus within its cache time: then a third bucket is one too many.
  let n = 0;
  const refused = await eventually('TooManyBuckets', async () => {
    const r = await s3('PUT', `/quota-more-${n++}`);
    return r.code === 'TooManyBuckets' ? r : undefined;
  }, 30_000);
  expect(refused.status).toBe(400);

  await cloud.admin(admin.ModifyPropertyValue, { name: 'walrus.storagemaxbucketsperaccount', reset: true });
  await cloud.admin(admin.ModifyPropertyValue, { name: 'walrus.storagemaxbucketsizeinmb', value: '1' });
  const big = 'x'.repeat(1024 * 1024 + 1);
  let k = 0;
  const over = await eventually('QuotaExceeded', async () => {
    const r = await s3('PUT', `/quota-one/big-${k++}`, big);
    return r.code === 'QuotaExceeded' ? r : undefined;
  }, 30_000);
  expect(over.status).toBe(403);
  await cloud.admin(admin.ModifyPropertyValue, { name: 'walrus.storagemaxbucketsizeinmb', reset: true });
  await eventually('the default (unlimited) again', async () => ((await s3('PUT', `/quota-one/big-${k++}`, big)).status === 200 ? true : undefined), 30_000);
}, 120_000);
