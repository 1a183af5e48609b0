// This module's actions behind the real ec2Api plugin, driven by boto3 (SigV4) and boto 2 (as
// euca2ools-era scripts use it): request shapes and response element names must be what they parse.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ec2Api } from '@mallee/aws-protocol';
import { resourceActionsFor } from '../../src/resources/index.js';
import { ACCOUNT_A, ACCOUNT_B, manifestNamesOnly, openCloud, principalOf, type Cloud } from './harness.js';

const run = promisify(execFile);
const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000 }).status === 0;
const hasBoto3 = has('python3', ['-c', 'import boto3']);
const debianPython = '/usr/bin/python3';
const hasBoto2 = existsSync(debianPython) && has(debianPython, ['-c', 'import boto']);
const euca = fileURLToPath(new URL('../../../../../shared/tools/euca', import.meta.url));
const hasEuca = existsSync(euca) && existsSync(debianPython) && has(debianPython, ['-c', 'import requests, lxml, six, yaml']);

const KEYS = { AKIDALICE0000000001: ACCOUNT_A, AKIDBOB000000000002: ACCOUNT_B } as Record<string, string>;
const SECRET = 'resources/Secret+Key/000000000000000000';

let cloud: Cloud;
let app: FastifyInstance;
let url = '';
beforeAll(async () => {
  cloud = openCloud();
  app = Fastify({ logger: false });
  await app.register(ec2Api, {
    actions: resourceActionsFor(cloud.db, manifestNamesOnly),
    credentials: (id) => (KEYS[id] ? { secretAccessKey: SECRET, principal: { ...principalOf(KEYS[id]), accessKeyId: id } } : undefined),
  });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await app.close();
  cloud.close();
});

async function python(exe: string, script: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(exe, ['-c', script, url, SECRET], { timeout: 60_000, env: { ...process.env, AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null' } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('real clients', () => {
  test.skipIf(!hasBoto3)('boto3 drives key pairs, groups, images and tags, and reads EC2 error codes', async () => {
    const out = await python('python3', `
import boto3, json, sys, base64, botocore
def ec2(key):
    return boto3.client('ec2', endpoint_url=sys.argv[1], region_name='mallee', aws_access_key_id=key, aws_secret_access_key=sys.argv[2])
a, b = ec2('AKIDALICE0000000001'), ec2('AKIDBOB000000000002')
def code(f):
    try:
        f(); return 'no error'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code']
o = {}
k = a.create_key_pair(KeyName='boto3-key')
o['material'] = k['KeyMaterial'].splitlines()[0]
o['fp_len'] = len(k['KeyFingerprint'].split(':'))
o['keys'] = [x['KeyName'] for x in a.describe_key_pairs(Filters=[{'Name': 'key-name', 'Values': ['boto3-*']}])['KeyPairs']]
o['key_missing'] = code(lambda: a.describe_key_pairs(KeyNames=['nope']))
g = a.create_security_group(GroupName='web', Description='web tier')
a.authorize_security_group_ingress(GroupId=g['GroupId'], IpPermissions=[
    {'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '10.0.0.0/8'}]},
    {'IpProtocol': 'icmp', 'FromPort': -1, 'ToPort': -1, 'UserIdGroupPairs': [{'GroupName': 'default'}]}])
o['dup'] = code(lambda: a.authorize_security_group_ingress(GroupName='web', IpProtocol='tcp', FromPort=22, ToPort=22, CidrIp='10.0.0.0/8'))
sg = a.describe_security_groups(GroupNames=['web'])['SecurityGroups'][0]
o['perms'] = [[p['IpProtocol'], p.get('FromPort'), p.get('ToPort'), [r['CidrIp'] for r in p['IpRanges']], [x['GroupName'] for x in p['UserIdGroupPairs']]] for p in sg['IpPermissions']]
o['b_sees'] = code(lambda: b.describe_security_groups(GroupIds=[g['GroupId']]))
a.revoke_security_group_ingress(GroupName='web', IpPermissions=[{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '10.0.0.0/8'}]}])
o['after_revoke'] = len(a.describe_security_groups(GroupIds=[g['GroupId']])['SecurityGroups'][0]['IpPermissions'])
img = a.register_image(ImageLocation='bucket/ubuntu.img.manifest.xml', Name='ubuntu', Architecture='x86_64')['ImageId']
o['img'] = img[:4]
o['b_images'] = len(b.describe_images()['Images'])
a.modify_image_attribute(ImageId=img, LaunchPermission={'Add': [{'UserId': '${ACCOUNT_B}'}]})
bi = b.describe_images(ExecutableUsers=['self'])['Images']
o['b_images_after'] = [[i['ImageId'] == img, i['ImageType'], i['Public'], i['State'], i['OwnerId']] for i in bi]
o['perm'] = a.describe_image_attribute(ImageId=img, Attribute='launchPermission')['LaunchPermissions']
a.create_tags(Resources=[img, g['GroupId']], Tags=[{'Key': 'Name', 'Value': 'x'}])
o['tags'] = sorted(t['ResourceType'] for t in a.describe_tags(Filters=[{'Name': 'key', 'Values': ['Name']}])['Tags'])
o['img_tags'] = a.describe_images(ImageIds=[img])['Images'][0]['Tags']
o['b_tag'] = code(lambda: b.create_tags(Resources=[g['GroupId']], Tags=[{'Key': 'k', 'Value': 'v'}]))
o['malformed'] = code(lambda: a.describe_images(ImageIds=['ami-bad']))
pub = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test'
o['import'] = a.import_key_pair(KeyName='ed', PublicKeyMaterial=pub.encode())['KeyName']
o['bad_key'] = code(lambda: a.import_key_pair(KeyName='bad', PublicKeyMaterial=b'garbage'))
a.deregister_image(ImageId=img)
o['deleted'] = a.delete_security_group(GroupName='web')['ResponseMetadata']['HTTPStatusCode']
print(json.dumps(o))
`);
    expect(out).toEqual({
      material: '-----BEGIN RSA PRIVATE KEY-----', fp_len: 20, keys: ['boto3-key'], key_missing: 'InvalidKeyPair.NotFound',
      dup: 'InvalidPermission.Duplicate',
      perms: [['tcp', 22, 22, ['10.0.0.0/8'], []], ['icmp', -1, -1, [], ['default']]],
      b_sees: 'InvalidGroup.NotFound', after_revoke: 1,
      img: 'emi-', b_images: 0, b_images_after: [[true, 'machine', false, 'available', ACCOUNT_A]],
      perm: [{ UserId: ACCOUNT_B }],
      tags: ['image', 'security-group'], img_tags: [{ Key: 'Name', Value: 'x' }], b_tag: 'InvalidGroup.NotFound',
      malformed: 'InvalidAMIID.Malformed', import: 'ed', bad_key: 'InvalidKey.Format', deleted: 200,
    });
  }, 60_000);

  test.skipIf(!hasBoto2)('boto 2 uses the flat group-rule form, registers and shares images', async () => {
    const out = await python(debianPython, `
import boto, json, sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
def connect(key):
    return boto.connect_euca(host=u.hostname, port=u.port, path='/services/Eucalyptus', is_secure=False,
                             aws_access_key_id=key, aws_secret_access_key=sys.argv[2])
c = connect('AKIDALICE0000000001')
o = {}
kp = c.create_key_pair('boto2-key')
o['fp'] = len(kp.fingerprint.split(':'))
o['keys'] = [k.name for k in c.get_all_key_pairs() if k.name.startswith('boto2')]
g = c.create_security_group('boto2', 'boto 2 group')
c.authorize_security_group(group_name='boto2', ip_protocol='tcp', from_port=80, to_port=80, cidr_ip='0.0.0.0/0')
c.authorize_security_group(group_name='boto2', src_security_group_name='default', src_security_group_owner_id='${ACCOUNT_A}')
grp = c.get_all_security_groups(groupnames=['boto2'])[0]
o['rules'] = sorted('%s:%s-%s:%s' % (r.ip_protocol, r.from_port, r.to_port, ','.join(str(x.cidr_ip or x.name) for x in r.grants)) for r in grp.rules)
c.revoke_security_group(group_name='boto2', ip_protocol='tcp', from_port=80, to_port=80, cidr_ip='0.0.0.0/0')
o['after'] = len(c.get_all_security_groups(groupnames=['boto2'])[0].rules)
kid = c.register_image(image_location='kernels/vmlinuz-2.6.manifest.xml')
mid = c.register_image(name='boto2-image', image_location='images/boto2.img.manifest.xml', kernel_id=kid)
img = c.get_image(mid)
o['img'] = [img.id[:4], img.type, img.kernel_id == kid, img.state, img.architecture, img.name]
c.modify_image_attribute(mid, attribute='launchPermission', operation='add', groups=['all'])
o['public'] = connect('AKIDBOB000000000002').get_image(mid).is_public
o['attr'] = c.get_image_attribute(mid, 'launchPermission').attrs
c.deregister_image(mid)
o['gone'] = [i.id for i in c.get_all_images(owners=['self'])] == [kid]
print(json.dumps(o))
`);
    expect(out).toEqual({
      fp: 20, keys: ['boto2-key'],
      rules: ['icmp:-1--1:default', 'tcp:0-65535:default', 'tcp:80-80:0.0.0.0/0', 'udp:0-65535:default'],
      after: 3,
      img: ['emi-', 'machine', true, 'available', 'x86_64', 'boto2-image'],
      public: true, attr: { groups: ['all'] }, gone: true,
    });
  }, 60_000);

  test.skipIf(!hasEuca)('euca2ools 3.4 manages key pairs, groups, images and tags', async () => {
    const env = { ...process.env, EC2_URL: `${url}/services/compute`, EC2_ACCESS_KEY: 'AKIDALICE0000000001', EC2_SECRET_KEY: SECRET, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_DEFAULT_REGION: '', AWS_AUTH_REGION: '' };
    const e = async (...args: string[]) => (await run(euca, args, { env, timeout: 120_000 })).stdout;
    expect(await e('euca-create-keypair', 'euca-key')).toMatch(/^KEYPAIR\s+euca-key\s+([0-9a-f]{2}:){19}[0-9a-f]{2}\n-----BEGIN RSA PRIVATE KEY-----/);
    expect(await e('euca-describe-keypairs', 'euca-key')).toMatch(/^KEYPAIR\s+euca-key\s/);
    expect(await e('euca-create-group', '-d', 'euca group', 'euca-group')).toMatch(/^GROUP\s+sg-[0-9a-f]{8}\s+euca-group\s+euca group/);
    await e('euca-authorize', '-P', 'tcp', '-p', '22', '-s', '10.0.0.0/8', 'euca-group');
    await e('euca-authorize', '-P', 'icmp', '-t', '-1:-1', '-o', 'default', '-u', ACCOUNT_A, 'euca-group');
    const groups = await e('euca-describe-groups', 'euca-group');
    expect(groups).toMatch(/PERMISSION\s+\S+\s+euca-group\s+ALLOWS\s+tcp\s+22\s+22\s+FROM\s+CIDR\s+10\.0\.0\.0\/8/);
    expect(groups).toMatch(/PERMISSION\s+\S+\s+euca-group\s+ALLOWS\s+icmp\s+-1\s+-1\s+FROM\s+USER\s+\d+\s+NAME\s+default/);
    await e('euca-revoke', '-P', 'tcp', '-p', '22', '-s', '10.0.0.0/8', 'euca-group');
    expect(await e('euca-describe-groups', 'euca-group')).not.toMatch(/tcp/);
    const eki = (await e('euca-register', '-n', 'euca-kernel', 'kernels/vmlinuz-euca.manifest.xml')).trim().split(/\s+/)[1]!;
    expect(eki).toMatch(/^eki-/);
    const emi = (await e('euca-register', '-n', 'euca-image', '-a', 'x86_64', '--kernel', eki, 'images/euca.img.manifest.xml')).trim().split(/\s+/)[1]!;
    expect(emi).toMatch(/^emi-/);
    expect(await e('euca-describe-images', emi)).toMatch(new RegExp(`^IMAGE\\s+${emi}\\s+images/euca\\.img\\.manifest\\.xml\\s+${ACCOUNT_A}\\s+available\\s+private\\s+x86_64\\s+machine\\s+${eki}`));
    await e('euca-modify-image-attribute', '-l', '-a', ACCOUNT_B, emi);
    expect(await e('euca-describe-image-attribute', '-l', emi)).toMatch(new RegExp(`launchPermission\\s+${emi}\\s+userId\\s+${ACCOUNT_B}`));
    await e('euca-create-tags', emi, '--tag', 'Name=euca');
    expect(await e('euca-describe-tags', '--filter', 'resource-type=image')).toMatch(new RegExp(`TAG\\s+image\\s+${emi}\\s+Name\\s+euca`));
    await e('euca-deregister', emi);
    await e('euca-delete-group', 'euca-group');
    await e('euca-delete-keypair', 'euca-key');
    expect(await e('euca-describe-keypairs')).not.toMatch(/euca-key/);
  }, 180_000);
});
