// The security suite: one account's resources against another account, as a table. Each row is a
// resource type that exists on the cloud (instances, key pairs, groups, images and their launch
// permissions, tags, volumes, snapshots and their create-volume permissions, addresses, buckets,
// objects with ACLs and policies); each check is a read, modify, delete or attach/associate by the
// other account with the exact AWS error code, and afterwards the owner's resource is as it was.
// Sharing (launch permission, createVolumePermission, ACL grant, bucket policy) lets exactly what it
// shares through. Then expired, replayed and altered signatures on SigV2, SigV4 (header and query),
// S3's SigV2 and the wire; S3 key traversal. A resource added later is one more row.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3SignV2, s3StringToSign, signV2, signV4 } from '@mallee/aws-protocol';
import { admin, encodeEnvelope, HDR, newNonce, sign, WIRE_PATH, WIRE_VERSION } from '@mallee/wire';
import { Ec2Client, instancesOf, items } from './helpers/ec2-client.js';
import { eventually, parseEucarc, startCloud, type Cloud } from './helpers/cloud.js';
import { registerTestImage } from './helpers/images.js';

interface Account { name: string; env: Record<string, string>; ec2: Ec2Client; id: string; creds: { accessKeyId: string; secretAccessKey: string } }

let cloud: Cloud;
let a: Account;
let b: Account;
let s3Url: string;
let zone: string;
/** What account A made, by name (filled by the rows' set-ups). */
const own: Record<string, string> = {};

async function account(name: string): Promise<Account> {
  await cloud.mallee(['account', 'create', name]);
  const out = join(cloud.home, `${name}-creds`);
  await cloud.mallee(['credentials', '--account', name, '--out', out]);
  const env = parseEucarc(join(out, 'eucarc'));
  const creds = { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! };
  const ec2 = new Ec2Client(env.EC2_URL!, creds, env.AWS_DEFAULT_REGION!);
  return { name, env, ec2, id: env.EC2_USER_ID ?? '', creds };
}

// ---- S3 with SigV4, raw ------------------------------------------------------------------------

async function s3(who: Account | undefined, method: string, path: string, opts: { query?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; code?: string }> {
  const host = new URL(s3Url).host;
  const body = opts.body ?? '';
  let headers: Record<string, string> = { host, ...opts.headers };
  let query = opts.query ?? '';
  if (who) {
    headers['x-amz-content-sha256'] = createHash('sha256').update(body).digest('hex');
    const s = signV4({ method, path, query, headers, body, accessKeyId: who.creds.accessKeyId, secretAccessKey: who.creds.secretAccessKey, region: cloud.region, service: 's3', doubleEncodePath: false, payloadHash: headers['x-amz-content-sha256'] });
    headers = s.headers;
    query = s.query;
  }
  const res = await fetch(`${s3Url}${path}${query ? `?${query}` : ''}`, { method, headers, ...(method === 'GET' || method === 'HEAD' ? {} : { body }) });
  const text = await res.text();
  const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
  return { status: res.status, body: text, ...(code ? { code } : {}) };
}

// ---- the matrix --------------------------------------------------------------------------------

/** A check by the other account: what it sends, and the code (or success) it must get. */
interface Check {
  what: string;
  run: () => Promise<{ status: number; code?: string; body?: string }>;
  /** The exact AWS error code, or 'ok' when the check is that sharing lets it through. */
  expect: string;
  /** S3's DeleteObjects answers 200 and names the error per key. */
  perKey?: boolean;
}

interface Row {
  resource: string;
  /** Account A makes the resource (ids into `own`). */
  setup: () => Promise<void>;
  /** Reads, modifications, deletions and attachments by account B. */
  denied: () => Check[];
  /** Proof the resource is as A left it. */
  intact: () => Promise<void>;
  /** Optional: A shares it with B; B can then do exactly these, and still not the rest. */
  shared?: { share: () => Promise<void>; allowed: () => Check[]; stillDenied: () => Check[] };
}

const ec2 = (who: () => Account, action: string, params: () => Record<string, string | number>) => () => who().ec2.call(action, params());
const B = () => b;

const rows: Row[] = [
  {
    resource: 'key pair',
    setup: async () => void (await a.ec2.ok('CreateKeyPair', { KeyName: 'sec-key' })),
    denied: () => [
      { what: 'DescribeKeyPairs by name', run: ec2(B, 'DescribeKeyPairs', () => ({ 'KeyName.1': 'sec-key' })), expect: 'InvalidKeyPair.NotFound' },
      { what: 'RunInstances with it', run: ec2(B, 'RunInstances', () => ({ ImageId: own.publicImage!, MinCount: 1, MaxCount: 1, KeyName: 'sec-key' })), expect: 'InvalidKeyPair.NotFound' },
      // EC2's DeleteKeyPair succeeds for a name the caller does not have; it deletes nothing of A's (checked by intact).
      { what: 'DeleteKeyPair', run: ec2(B, 'DeleteKeyPair', () => ({ KeyName: 'sec-key' })), expect: 'ok' },
    ],
    intact: async () => expect(items((await a.ec2.ok('DescribeKeyPairs', { 'KeyName.1': 'sec-key' })).keySet)).toHaveLength(1),
  },
  {
    resource: 'security group',
    setup: async () => void (own.group = String((await a.ec2.ok('CreateSecurityGroup', { GroupName: 'sec-group', GroupDescription: 'A' })).groupId)),
    denied: () => [
      { what: 'DescribeSecurityGroups by id', run: ec2(B, 'DescribeSecurityGroups', () => ({ 'GroupId.1': own.group! })), expect: 'InvalidGroup.NotFound' },
      { what: 'AuthorizeSecurityGroupIngress', run: ec2(B, 'AuthorizeSecurityGroupIngress', () => ({ GroupId: own.group!, IpProtocol: 'tcp', FromPort: 22, ToPort: 22, CidrIp: '0.0.0.0/0' })), expect: 'InvalidGroup.NotFound' },
      { what: 'RevokeSecurityGroupIngress', run: ec2(B, 'RevokeSecurityGroupIngress', () => ({ GroupId: own.group!, IpProtocol: 'tcp', FromPort: 80, ToPort: 80, CidrIp: '0.0.0.0/0' })), expect: 'InvalidGroup.NotFound' },
      { what: 'DeleteSecurityGroup', run: ec2(B, 'DeleteSecurityGroup', () => ({ GroupId: own.group! })), expect: 'InvalidGroup.NotFound' },
      { what: 'RunInstances into it', run: ec2(B, 'RunInstances', () => ({ ImageId: own.publicImage!, MinCount: 1, MaxCount: 1, 'SecurityGroupId.1': own.group! })), expect: 'InvalidGroup.NotFound' },
    ],
    intact: async () => {
      const g = items((await a.ec2.ok('DescribeSecurityGroups', { 'GroupId.1': own.group! })).securityGroupInfo)[0]!;
      expect(items(g.ipPermissions)).toHaveLength(0);
    },
  },
  {
    resource: 'image (private)',
    setup: async () => {
      own.image = await registerTestImage(cloud, 'sec-a-images/private.manifest.xml', 'sec-private', { env: a.env, client: a.ec2 });
    },
    denied: () => [
      { what: 'DescribeImages by id', run: ec2(B, 'DescribeImages', () => ({ 'ImageId.1': own.image! })), expect: 'InvalidAMIID.NotFound' },
      { what: 'RunInstances from it', run: ec2(B, 'RunInstances', () => ({ ImageId: own.image!, MinCount: 1, MaxCount: 1 })), expect: 'InvalidAMIID.NotFound' },
      { what: 'ModifyImageAttribute (make it public)', run: ec2(B, 'ModifyImageAttribute', () => ({ ImageId: own.image!, 'LaunchPermission.Add.1.Group': 'all' })), expect: 'InvalidAMIID.NotFound' },
      { what: 'DescribeImageAttribute', run: ec2(B, 'DescribeImageAttribute', () => ({ ImageId: own.image!, Attribute: 'launchPermission' })), expect: 'InvalidAMIID.NotFound' },
      { what: 'DeregisterImage', run: ec2(B, 'DeregisterImage', () => ({ ImageId: own.image! })), expect: 'InvalidAMIID.NotFound' },
    ],
    intact: async () => {
      const img = items((await a.ec2.ok('DescribeImages', { 'ImageId.1': own.image! })).imagesSet)[0]!;
      expect(img.isPublic).toBe('false');
      expect(img.imageState).toBe('available');
    },
    shared: {
      share: async () => void (await a.ec2.ok('ModifyImageAttribute', { ImageId: own.image!, 'LaunchPermission.Add.1.UserId': b.id })),
      allowed: () => [
        { what: 'DescribeImages by id', run: ec2(B, 'DescribeImages', () => ({ 'ImageId.1': own.image! })), expect: 'ok' },
        { what: 'RunInstances from it', run: ec2(B, 'RunInstances', () => ({ ImageId: own.image!, MinCount: 1, MaxCount: 1 })), expect: 'ok' },
      ],
      stillDenied: () => [
        { what: 'ModifyImageAttribute', run: ec2(B, 'ModifyImageAttribute', () => ({ ImageId: own.image!, 'LaunchPermission.Add.1.Group': 'all' })), expect: 'AuthFailure' },
        { what: 'DeregisterImage', run: ec2(B, 'DeregisterImage', () => ({ ImageId: own.image! })), expect: 'AuthFailure' },
      ],
    },
  },
  {
    resource: 'instance',
    setup: async () => {
      const run = await a.ec2.ok('RunInstances', { ImageId: own.publicImage!, MinCount: 1, MaxCount: 1, KeyName: 'sec-key', 'SecurityGroup.1': 'sec-group' });
      own.instance = String(items(run.instancesSet)[0]!.instanceId);
      await eventually('A instance running', async () => (instancesOf(await a.ec2.ok('DescribeInstances', { 'InstanceId.1': own.instance! }))[0]?.state === 'running' ? true : undefined), 90_000);
    },
    denied: () => [
      { what: 'DescribeInstances by id', run: ec2(B, 'DescribeInstances', () => ({ 'InstanceId.1': own.instance! })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'DescribeInstanceAttribute', run: ec2(B, 'DescribeInstanceAttribute', () => ({ InstanceId: own.instance!, Attribute: 'instanceType' })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'GetConsoleOutput', run: ec2(B, 'GetConsoleOutput', () => ({ InstanceId: own.instance! })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'RebootInstances', run: ec2(B, 'RebootInstances', () => ({ 'InstanceId.1': own.instance! })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'StopInstances', run: ec2(B, 'StopInstances', () => ({ 'InstanceId.1': own.instance! })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'TerminateInstances', run: ec2(B, 'TerminateInstances', () => ({ 'InstanceId.1': own.instance! })), expect: 'InvalidInstanceID.NotFound' },
    ],
    intact: async () => expect(instancesOf(await a.ec2.ok('DescribeInstances', { 'InstanceId.1': own.instance! }))[0]?.state).toBe('running'),
  },
  {
    resource: 'tag',
    setup: async () => void (await a.ec2.ok('CreateTags', { 'ResourceId.1': own.instance!, 'Tag.1.Key': 'owner', 'Tag.1.Value': 'a' })),
    denied: () => [
      { what: 'CreateTags on A instance', run: ec2(B, 'CreateTags', () => ({ 'ResourceId.1': own.instance!, 'Tag.1.Key': 'owner', 'Tag.1.Value': 'b' })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'DeleteTags on A instance', run: ec2(B, 'DeleteTags', () => ({ 'ResourceId.1': own.instance!, 'Tag.1.Key': 'owner' })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'CreateTags on A image', run: ec2(B, 'CreateTags', () => ({ 'ResourceId.1': own.publicImage!, 'Tag.1.Key': 'x', 'Tag.1.Value': 'b' })), expect: 'InvalidAMIID.NotFound' },
    ],
    intact: async () => {
      const tags = items((await a.ec2.ok('DescribeTags', { 'Filter.1.Name': 'resource-id', 'Filter.1.Value.1': own.instance! })).tagSet);
      expect(tags.map((t) => `${t.key}=${t.value}`)).toEqual(['owner=a']);
      expect(items((await b.ec2.ok('DescribeTags')).tagSet).map((t) => t.resourceId)).not.toContain(own.instance);
    },
  },
  {
    resource: 'volume',
    setup: async () => {
      own.volume = String((await a.ec2.ok('CreateVolume', { Size: 1, AvailabilityZone: zone })).volumeId);
      await eventually('volume available', async () => (items((await a.ec2.ok('DescribeVolumes', { 'VolumeId.1': own.volume! })).volumeSet)[0]?.status === 'available' ? true : undefined), 90_000);
      const run = await b.ec2.ok('RunInstances', { ImageId: own.publicImage!, MinCount: 1, MaxCount: 1 });
      own.bInstance = String(items(run.instancesSet)[0]!.instanceId);
      own.bVolume = String((await b.ec2.ok('CreateVolume', { Size: 1, AvailabilityZone: zone })).volumeId);
      await eventually('B instance running and volume available', async () =>
        instancesOf(await b.ec2.ok('DescribeInstances', { 'InstanceId.1': own.bInstance! }))[0]?.state === 'running' && items((await b.ec2.ok('DescribeVolumes', { 'VolumeId.1': own.bVolume! })).volumeSet)[0]?.status === 'available' ? true : undefined, 90_000);
    },
    denied: () => [
      { what: 'DescribeVolumes by id', run: ec2(B, 'DescribeVolumes', () => ({ 'VolumeId.1': own.volume! })), expect: 'InvalidVolume.NotFound' },
      { what: 'AttachVolume (A volume to B instance)', run: ec2(B, 'AttachVolume', () => ({ VolumeId: own.volume!, InstanceId: own.bInstance!, Device: '/dev/sdf' })), expect: 'InvalidVolume.NotFound' },
      { what: 'AttachVolume (B volume to A instance)', run: ec2(B, 'AttachVolume', () => ({ VolumeId: own.bVolume!, InstanceId: own.instance!, Device: '/dev/sdf' })), expect: 'InvalidInstanceID.NotFound' },
      { what: 'DetachVolume', run: ec2(B, 'DetachVolume', () => ({ VolumeId: own.volume! })), expect: 'InvalidVolume.NotFound' },
      { what: 'CreateSnapshot of it', run: ec2(B, 'CreateSnapshot', () => ({ VolumeId: own.volume! })), expect: 'InvalidVolume.NotFound' },
      { what: 'DeleteVolume', run: ec2(B, 'DeleteVolume', () => ({ VolumeId: own.volume! })), expect: 'InvalidVolume.NotFound' },
    ],
    intact: async () => expect(items((await a.ec2.ok('DescribeVolumes', { 'VolumeId.1': own.volume! })).volumeSet)[0]?.status).toBe('available'),
  },
  {
    resource: 'snapshot',
    setup: async () => {
      own.snapshot = String((await a.ec2.ok('CreateSnapshot', { VolumeId: own.volume! })).snapshotId);
      await eventually('snapshot completed', async () => (items((await a.ec2.ok('DescribeSnapshots', { 'SnapshotId.1': own.snapshot! })).snapshotSet)[0]?.status === 'completed' ? true : undefined), 120_000);
    },
    denied: () => [
      { what: 'DescribeSnapshots by id', run: ec2(B, 'DescribeSnapshots', () => ({ 'SnapshotId.1': own.snapshot! })), expect: 'InvalidSnapshot.NotFound' },
      { what: 'CreateVolume from it', run: ec2(B, 'CreateVolume', () => ({ SnapshotId: own.snapshot!, AvailabilityZone: zone })), expect: 'InvalidSnapshot.NotFound' },
      { what: 'ModifySnapshotAttribute', run: ec2(B, 'ModifySnapshotAttribute', () => ({ SnapshotId: own.snapshot!, Attribute: 'createVolumePermission', OperationType: 'add', 'UserId.1': b.id })), expect: 'InvalidSnapshot.NotFound' },
      { what: 'DeleteSnapshot', run: ec2(B, 'DeleteSnapshot', () => ({ SnapshotId: own.snapshot! })), expect: 'InvalidSnapshot.NotFound' },
    ],
    intact: async () => expect(items((await a.ec2.ok('DescribeSnapshots', { 'SnapshotId.1': own.snapshot! })).snapshotSet)[0]?.status).toBe('completed'),
    shared: {
      share: async () => void (await a.ec2.ok('ModifySnapshotAttribute', { SnapshotId: own.snapshot!, Attribute: 'createVolumePermission', OperationType: 'add', 'UserId.1': b.id })),
      allowed: () => [
        { what: 'DescribeSnapshots by id', run: ec2(B, 'DescribeSnapshots', () => ({ 'SnapshotId.1': own.snapshot! })), expect: 'ok' },
        { what: 'CreateVolume from it', run: ec2(B, 'CreateVolume', () => ({ SnapshotId: own.snapshot!, AvailabilityZone: zone })), expect: 'ok' },
      ],
      stillDenied: () => [
        // Shared for creating volumes only: to anything else the snapshot is as absent as before.
        { what: 'DeleteSnapshot', run: ec2(B, 'DeleteSnapshot', () => ({ SnapshotId: own.snapshot! })), expect: 'InvalidSnapshot.NotFound' },
        { what: 'ModifySnapshotAttribute', run: ec2(B, 'ModifySnapshotAttribute', () => ({ SnapshotId: own.snapshot!, Attribute: 'createVolumePermission', OperationType: 'add', 'Group.1': 'all' })), expect: 'InvalidSnapshot.NotFound' },
      ],
    },
  },
  {
    resource: 'address',
    setup: async () => {
      own.address = String((await a.ec2.ok('AllocateAddress')).publicIp);
      await a.ec2.ok('AssociateAddress', { PublicIp: own.address!, InstanceId: own.instance! });
    },
    denied: () => [
      { what: 'DescribeAddresses by ip', run: ec2(B, 'DescribeAddresses', () => ({ 'PublicIp.1': own.address! })), expect: 'InvalidAddress.NotFound' },
      { what: 'AssociateAddress to B instance', run: ec2(B, 'AssociateAddress', () => ({ PublicIp: own.address!, InstanceId: own.bInstance! })), expect: 'InvalidAddress.NotFound' },
      { what: 'DisassociateAddress', run: ec2(B, 'DisassociateAddress', () => ({ PublicIp: own.address! })), expect: 'InvalidAddress.NotFound' },
      { what: 'ReleaseAddress', run: ec2(B, 'ReleaseAddress', () => ({ PublicIp: own.address! })), expect: 'InvalidAddress.NotFound' },
    ],
    intact: async () => expect(items((await a.ec2.ok('DescribeAddresses', { 'PublicIp.1': own.address! })).addressesSet)[0]?.instanceId).toBe(own.instance),
  },
  {
    resource: 'bucket',
    setup: async () => {
      expect((await s3(a, 'PUT', '/sec-a-bucket')).status).toBe(200);
      expect((await s3(a, 'PUT', '/sec-a-bucket/secret.txt', { body: 'A only' })).status).toBe(200);
    },
    denied: () => [
      { what: 'ListObjects', run: () => s3(b, 'GET', '/sec-a-bucket'), expect: 'AccessDenied' },
      { what: 'ListObjectsV2', run: () => s3(b, 'GET', '/sec-a-bucket', { query: 'list-type=2' }), expect: 'AccessDenied' },
      { what: 'PutObject into it', run: () => s3(b, 'PUT', '/sec-a-bucket/from-b', { body: 'b' }), expect: 'AccessDenied' },
      { what: 'GetBucketAcl', run: () => s3(b, 'GET', '/sec-a-bucket', { query: 'acl' }), expect: 'AccessDenied' },
      { what: 'PutBucketAcl (public-read-write)', run: () => s3(b, 'PUT', '/sec-a-bucket', { query: 'acl', headers: { 'x-amz-acl': 'public-read-write' } }), expect: 'AccessDenied' },
      { what: 'GetBucketPolicy', run: () => s3(b, 'GET', '/sec-a-bucket', { query: 'policy' }), expect: 'AccessDenied' },
      { what: 'PutBucketPolicy', run: () => s3(b, 'PUT', '/sec-a-bucket', { query: 'policy', body: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: 's3:*', Resource: 'arn:aws:s3:::sec-a-bucket/*' }] }) }), expect: 'AccessDenied' },
      { what: 'PutBucketVersioning', run: () => s3(b, 'PUT', '/sec-a-bucket', { query: 'versioning', body: '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>' }), expect: 'AccessDenied' },
      { what: 'DeleteBucket', run: () => s3(b, 'DELETE', '/sec-a-bucket'), expect: 'AccessDenied' },
      { what: 'CreateBucket with the same name', run: () => s3(b, 'PUT', '/sec-a-bucket'), expect: 'BucketAlreadyExists' },
      { what: 'anonymous ListObjects', run: () => s3(undefined, 'GET', '/sec-a-bucket'), expect: 'AccessDenied' },
    ],
    intact: async () => {
      const list = await s3(a, 'GET', '/sec-a-bucket');
      expect(list.status).toBe(200);
      expect(list.body).toContain('<Key>secret.txt</Key>');
      expect(list.body).not.toContain('from-b');
      expect((await s3(a, 'GET', '/sec-a-bucket', { query: 'policy' })).code).toBe('NoSuchBucketPolicy');
    },
    shared: {
      share: async () => {
        const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: [b.id] }, Action: ['s3:ListBucket'], Resource: ['arn:aws:s3:::sec-a-bucket'] }] };
        expect((await s3(a, 'PUT', '/sec-a-bucket', { query: 'policy', body: JSON.stringify(policy) })).status).toBe(204);
      },
      allowed: () => [{ what: 'ListObjects', run: () => s3(b, 'GET', '/sec-a-bucket'), expect: 'ok' }],
      stillDenied: () => [
        { what: 'PutObject', run: () => s3(b, 'PUT', '/sec-a-bucket/from-b', { body: 'b' }), expect: 'AccessDenied' },
        { what: 'GetObject', run: () => s3(b, 'GET', '/sec-a-bucket/secret.txt'), expect: 'AccessDenied' },
        { what: 'DeleteBucketPolicy', run: () => s3(b, 'DELETE', '/sec-a-bucket', { query: 'policy' }), expect: 'AccessDenied' },
      ],
    },
  },
  {
    resource: 'object',
    setup: async () => void expect((await s3(a, 'PUT', '/sec-a-bucket/doc.txt', { body: 'the document' })).status).toBe(200),
    denied: () => [
      { what: 'GetObject', run: () => s3(b, 'GET', '/sec-a-bucket/doc.txt'), expect: 'AccessDenied' },
      { what: 'PutObject over it', run: () => s3(b, 'PUT', '/sec-a-bucket/doc.txt', { body: 'overwritten' }), expect: 'AccessDenied' },
      { what: 'CopyObject out of it', run: () => s3(b, 'PUT', '/sec-b-bucket/stolen', { headers: { 'x-amz-copy-source': '/sec-a-bucket/doc.txt' } }), expect: 'AccessDenied' },
      { what: 'GetObjectAcl', run: () => s3(b, 'GET', '/sec-a-bucket/doc.txt', { query: 'acl' }), expect: 'AccessDenied' },
      { what: 'PutObjectAcl (public-read)', run: () => s3(b, 'PUT', '/sec-a-bucket/doc.txt', { query: 'acl', headers: { 'x-amz-acl': 'public-read' } }), expect: 'AccessDenied' },
      { what: 'DeleteObject', run: () => s3(b, 'DELETE', '/sec-a-bucket/doc.txt'), expect: 'AccessDenied' },
      { what: 'DeleteObjects', run: () => s3(b, 'POST', '/sec-a-bucket', { query: 'delete', body: '<Delete><Object><Key>doc.txt</Key></Object></Delete>', headers: { 'content-md5': createHash('md5').update('<Delete><Object><Key>doc.txt</Key></Object></Delete>').digest('base64') } }), expect: 'AccessDenied', perKey: true },
      { what: 'anonymous GetObject', run: () => s3(undefined, 'GET', '/sec-a-bucket/doc.txt'), expect: 'AccessDenied' },
    ],
    intact: async () => expect((await s3(a, 'GET', '/sec-a-bucket/doc.txt')).body).toBe('the document'),
    shared: {
      share: async () => void expect((await s3(a, 'PUT', '/sec-a-bucket/doc.txt', { query: 'acl', headers: { 'x-amz-grant-read': `id="${b.id}"` } })).status).toBe(200),
      allowed: () => [{ what: 'GetObject', run: () => s3(b, 'GET', '/sec-a-bucket/doc.txt'), expect: 'ok' }],
      stillDenied: () => [
        { what: 'PutObject over it', run: () => s3(b, 'PUT', '/sec-a-bucket/doc.txt', { body: 'overwritten' }), expect: 'AccessDenied' },
        { what: 'DeleteObject', run: () => s3(b, 'DELETE', '/sec-a-bucket/doc.txt'), expect: 'AccessDenied' },
        { what: 'PutObjectAcl', run: () => s3(b, 'PUT', '/sec-a-bucket/doc.txt', { query: 'acl', headers: { 'x-amz-acl': 'public-read-write' } }), expect: 'AccessDenied' },
        { what: 'anonymous GetObject', run: () => s3(undefined, 'GET', '/sec-a-bucket/doc.txt'), expect: 'AccessDenied' },
      ],
    },
  },
];

// Not a row here: the metadata service answering only the caller's own instance needs real guests on a
// MANAGED network (169.254.169.254 is reached from inside a guest). It is proven in test/e2e/network.test.ts
// ("a guest reads its own instance-id …": two groups' guests each get only their own id, key and user data;
// "security: the metadata service answers only an instance itself …": the internet, the front end and an
// address no instance has on a guest network get an error, never anyone's data), with the cc's checks
// (live instance, its own network's gateway) unit-tested in services/cc/test/network-manager.test.ts.

async function runCheck(c: Check, context: string): Promise<void> {
  const r = await c.run();
  if (c.expect === 'ok') expect(r.status, `${context}: ${c.what} should be allowed: ${r.body?.slice(0, 300)}`).toBeLessThan(300);
  else {
    expect({ what: c.what, code: r.code }, `${context}: ${r.body?.slice(0, 300)}`).toEqual({ what: c.what, code: c.expect });
    if (c.perKey) expect([r.status, r.body]).toEqual([200, expect.stringMatching(/<Error><Key>[^<]+<\/Key><Code>/)]);
    else {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
  }
}

beforeAll(async () => {
  cloud = await startCloud({ conf: { VNET_MODE: 'MANAGED', VNET_PUBLICIPS: '198.51.100.20-198.51.100.22', VNET_PRIVINTERFACE: 'mallee-none0' } });
  s3Url = cloud.env.S3_URL!;
  a = await account('sec-a');
  b = await account('sec-b');
  expect(a.id).toMatch(/^\d{12}$/);
  expect(b.id).not.toBe(a.id);
  zone = String(items((await a.ec2.ok('DescribeAvailabilityZones')).availabilityZoneInfo)[0]!.zoneName);
  // A public image both can launch (the cloud admin's), so the rows test A's own resources.
  own.publicImage = await registerTestImage(cloud, 'sec-public/img.manifest.xml', 'sec-public');
  await cloud.client.ok('ModifyImageAttribute', { ImageId: own.publicImage, 'LaunchPermission.Add.1.Group': 'all' });
  expect((await s3(b, 'PUT', '/sec-b-bucket')).status).toBe(200);
  for (const row of rows) await row.setup();
}, 600_000);
afterAll(async () => {
  await cloud?.stop();
});

describe.each(rows.map((r) => [r.resource, r] as const))('cross-account: %s', (_name, row) => {
  it('every read, modify, delete and attach by another account is refused with the AWS code, and the resource is intact', async () => {
    for (const c of row.denied()) await runCheck(c, `${row.resource} (not shared)`);
    await row.intact();
  });
  if (row.shared) {
    it('shared, the other account can do exactly what was shared and still nothing else', async () => {
      await row.shared!.share();
      for (const c of row.shared!.allowed()) await runCheck(c, `${row.resource} (shared)`);
      for (const c of row.shared!.stillDenied()) await runCheck(c, `${row.resource} (shared)`);
    });
  }
});

// ---- signatures --------------------------------------------------------------------------------

describe('signatures: expired, replayed and altered', () => {
  const body = 'Action=DescribeRegions&Version=2016-11-15';
  const host = () => new URL(cloud.ec2Url).host;
  const ec2Path = () => new URL(cloud.ec2Url).pathname;
  const post = async (headers: Record<string, string>, data: string) => {
    const res = await fetch(cloud.ec2Url, { method: 'POST', headers, body: data });
    const text = await res.text();
    return { status: res.status, code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1], body: text };
  };
  const v4 = (data: string, date?: Date) => signV4({ method: 'POST', path: ec2Path(), headers: { host: host(), 'content-type': 'application/x-www-form-urlencoded' }, body: data, accessKeyId: a.creds.accessKeyId, secretAccessKey: a.creds.secretAccessKey, region: cloud.region, service: 'ec2', ...(date ? { date } : {}) });

  it('SigV4 header: a fresh request is served; expired (20 min) is RequestExpired; an altered body is SignatureDoesNotMatch', async () => {
    expect((await post(v4(body).headers, body)).status).toBe(200);
    const old = await post(v4(body, new Date(Date.now() - 20 * 60_000)).headers, body);
    expect([old.status, old.code]).toEqual([400, 'RequestExpired']);
    const altered = await post(v4(body).headers, body.replace('DescribeRegions', 'DescribeInstances'));
    expect([altered.status, altered.code]).toEqual([403, 'SignatureDoesNotMatch']);
  });

  it('SigV4 presigned query: served while valid; replayed after X-Amz-Expires is refused; an altered parameter is SignatureDoesNotMatch', async () => {
    const s = signV4({ method: 'GET', path: ec2Path(), query: 'Action=DescribeRegions&Version=2016-11-15', headers: { host: host() }, accessKeyId: a.creds.accessKeyId, secretAccessKey: a.creds.secretAccessKey, region: cloud.region, service: 'ec2', presignExpires: 1 });
    const get = async (q: string) => {
      const res = await fetch(`${cloud.ec2Url}?${q}`);
      const text = await res.text();
      return { status: res.status, code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1] };
    };
    expect((await get(s.query)).status).toBe(200);
    expect(await get(s.query.replace('DescribeRegions', 'DescribeInstances'))).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
    await new Promise((r) => setTimeout(r, 2500));
    expect(await get(s.query)).toEqual({ status: 400, code: 'RequestExpired' });
  });

  it('SigV2: expired Timestamp is RequestExpired, past Expires refused, an altered parameter is SignatureDoesNotMatch', async () => {
    const signed = (extra: [string, string][]) => {
      const pairs: [string, string][] = [['Action', 'DescribeRegions'], ['Version', '2016-11-15'], ['AWSAccessKeyId', a.creds.accessKeyId], ['SignatureMethod', 'HmacSHA256'], ['SignatureVersion', '2'], ...extra];
      pairs.push(['Signature', signV2('POST', host(), ec2Path(), pairs, a.creds.secretAccessKey)]);
      return pairs;
    };
    const form = (pairs: [string, string][]) => pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    const h = { host: host(), 'content-type': 'application/x-www-form-urlencoded' };
    expect((await post(h, form(signed([['Timestamp', new Date().toISOString()]])))).status).toBe(200);
    expect((await post(h, form(signed([['Timestamp', new Date(Date.now() - 20 * 60_000).toISOString()]])))).code).toBe('RequestExpired');
    expect((await post(h, form(signed([['Expires', new Date(Date.now() - 1000).toISOString()]])))).code).toBe('RequestExpired');
    const p = signed([['Timestamp', new Date().toISOString()]]);
    p[0] = ['Action', 'DescribeInstances'];
    expect(await post(h, form(p)).then((r) => [r.status, r.code])).toEqual([403, 'SignatureDoesNotMatch']);
  });

  it('S3: SigV4 header expired is RequestTimeTooSkewed, presigned past expiry AccessDenied, SigV2 query past Expires AccessDenied, altered SignatureDoesNotMatch', async () => {
    const hostS3 = new URL(s3Url).host;
    const path = '/sec-a-bucket/secret.txt';
    const fetchS3 = async (url: string, headers: Record<string, string> = {}) => {
      const res = await fetch(url, { headers });
      const text = await res.text();
      return { status: res.status, code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1] };
    };
    const oldHeader = signV4({ method: 'GET', path, headers: { host: hostS3, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: a.creds.accessKeyId, secretAccessKey: a.creds.secretAccessKey, region: cloud.region, service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD', date: new Date(Date.now() - 20 * 60_000) });
    expect(await fetchS3(`${s3Url}${path}`, oldHeader.headers)).toEqual({ status: 403, code: 'RequestTimeTooSkewed' });
    const pre = signV4({ method: 'GET', path, headers: { host: hostS3 }, accessKeyId: a.creds.accessKeyId, secretAccessKey: a.creds.secretAccessKey, region: cloud.region, service: 's3', doubleEncodePath: false, presignExpires: 1 });
    expect((await fetchS3(`${s3Url}${path}?${pre.query}`)).status).toBe(200);
    expect(await fetchS3(`${s3Url}${path.replace('secret', 'doc')}?${pre.query}`)).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
    const expires = String(Math.floor(Date.now() / 1000) + 1);
    const sig = s3SignV2(s3StringToSign('GET', {}, expires, path, ''), a.creds.secretAccessKey);
    const v2url = `${s3Url}${path}?AWSAccessKeyId=${encodeURIComponent(a.creds.accessKeyId)}&Expires=${expires}&Signature=${encodeURIComponent(sig)}`;
    expect((await fetchS3(v2url)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2500));
    expect(await fetchS3(`${s3Url}${path}?${pre.query}`)).toEqual({ status: 403, code: 'AccessDenied' });
    expect(await fetchS3(v2url)).toEqual({ status: 403, code: 'AccessDenied' });
  });

  it('wire: a replayed, stale, altered or wrongly keyed admin message is refused; the genuine one is served', async () => {
    const key = readFileSync(join(cloud.home, 'keys', 'admin.key'), 'utf8').trim();
    const clcUrl = new URL(cloud.ec2Url).origin;
    const msg = (over: { ts?: number; body?: string; key?: string; nonce?: string } = {}) => {
      const body = encodeEnvelope(admin.DescribeAccounts.name, {}, { Version: String(WIRE_VERSION) });
      const ts = String(over.ts ?? Date.now());
      const nonce = over.nonce ?? newNonce();
      return { headers: { 'content-type': 'application/xml', [HDR.from]: admin.ADMIN_SENDER, [HDR.timestamp]: ts, [HDR.nonce]: nonce, [HDR.version]: String(WIRE_VERSION), [HDR.signature]: sign(over.key ?? key, ts, nonce, WIRE_PATH, body) }, body: over.body ?? body };
    };
    const send = async (m: { headers: Record<string, string>; body: string }) => {
      const res = await fetch(new URL(WIRE_PATH, clcUrl), { method: 'POST', headers: m.headers, body: m.body });
      const text = await res.text();
      return { status: res.status, code: /<code>([^<]+)<\/code>/.exec(text)?.[1] };
    };
    const genuine = msg();
    expect((await send(genuine)).status).toBe(200);
    expect(await send(genuine)).toEqual({ status: 403, code: 'StaleRequest' });
    expect(await send(msg({ ts: Date.now() - 10 * 60_000 }))).toEqual({ status: 403, code: 'StaleRequest' });
    const altered = msg();
    expect(await send({ ...altered, body: altered.body.replace('DescribeAccounts', 'DescribeServices') })).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
    expect(await send(msg({ key: 'not-the-admin-key' }))).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
  });
});

describe('S3 key traversal', () => {
  it('dot segments and encoded slashes never reach another bucket or outside the store', async () => {
    const raw = async (who: Account, path: string, method = 'GET') => {
      const hostS3 = new URL(s3Url).host;
      const s = signV4({ method, path, headers: { host: hostS3, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: who.creds.accessKeyId, secretAccessKey: who.creds.secretAccessKey, region: cloud.region, service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
      const { request } = await import('node:http');
      const u = new URL(s3Url);
      return new Promise<{ status: number; code?: string; body: string }>((resolve, reject) => {
        const r = request({ host: u.hostname, port: u.port, method, path, headers: { ...s.headers, 'content-length': method === 'PUT' ? '1' : '0' }, agent: false }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, ...(/<Code>([^<]+)</.exec(text) ? { code: /<Code>([^<]+)</.exec(text)![1]! } : {}) }));
        });
        r.on('error', reject);
        r.end(method === 'PUT' ? 'x' : undefined);
      });
    };
    // B reads A's object through its own bucket's path: the key is "../sec-a-bucket/secret.txt", which is refused.
    for (const path of ['/sec-b-bucket/../sec-a-bucket/secret.txt', '/sec-b-bucket/..%2Fsec-a-bucket%2Fsecret.txt', '/sec-b-bucket/%2E%2E/sec-a-bucket/secret.txt', '/sec-b-bucket/a/../../sec-a-bucket/secret.txt']) {
      const r = await raw(b, path);
      expect(r.body, path).not.toContain('A only');
      // Looked up as a key of B's own bucket (and refused, or not found there): never A's bucket.
      expect(['400 InvalidArgument', '404 NoSuchKey'], `${path}: ${r.body}`).toContain(`${r.status} ${r.code}`);
      if (r.code === 'NoSuchKey') expect(r.body).toContain('<Resource>/sec-b-bucket/');
      const put = await raw(b, path, 'PUT');
      expect([put.status, put.code], `PUT ${path}`).toEqual([400, 'InvalidArgument']);
    }
    // Keys are names, never paths: a key that looks like a path into the store's files is just a key.
    const key = '/sec-b-bucket/etc%2Fpasswd';
    expect((await raw(b, key, 'PUT')).status).toBe(200);
    expect((await raw(b, key)).body).toBe('x');
    expect((await s3(a, 'GET', '/sec-a-bucket/secret.txt')).body).toBe('A only');
  });
});
