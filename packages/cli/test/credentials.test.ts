// The credential files mallee writes are read back by the real tools: bash, euca2ools' config reader, botocore.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeCredentials, type CloudEndpoints } from '../src/credentials.js';

const dir = mkdtempSync(join(tmpdir(), 'mallee-creds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const creds = { accountId: '123456789012', accountName: 'tenant-b', userName: 'admin', accessKeyId: 'AKIAEXAMPLE0000001', secretAccessKey: "s3cr/t+'quote\"$HOME" };
const endpoints: CloudEndpoints = { ec2Url: 'http://127.0.0.1:18773/services/compute', s3Url: 'http://127.0.0.1:18773/services/Walrus', region: 'mallee', certFile: '/var/lib/mallee/keys/cloud-cert.pem',
  userCertFile: '/var/lib/mallee/euca2-admin-cert.pem', userKeyFile: '/var/lib/mallee/euca2-admin-pk.pem' };
const files = writeCredentials(dir, creds, endpoints);
const eucaTools = new URL('../../../../shared/tools/euca2ools', import.meta.url).pathname;

describe('credential files', () => {
  it('eucarc sourced by bash exports every variable clients read, secrets intact', () => {
    const out = execFileSync('bash', ['-c', `source ${files.eucarc} && env -0`], { env: { PATH: process.env.PATH } }).toString();
    const env = Object.fromEntries(out.split('\0').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(env).toMatchObject({
      EC2_URL: endpoints.ec2Url,
      S3_URL: endpoints.s3Url,
      EC2_ACCESS_KEY: creds.accessKeyId,
      EC2_SECRET_KEY: creds.secretAccessKey,
      AWS_ACCESS_KEY_ID: creds.accessKeyId,
      AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
      AWS_DEFAULT_REGION: 'mallee',
      AWS_AUTH_REGION: 'mallee',
      EUCALYPTUS_CERT: endpoints.certFile,
      EC2_USER_ID: creds.accountId,
      EC2_CERT: endpoints.userCertFile,
      EC2_PRIVATE_KEY: endpoints.userKeyFile,
    });
    expect(statSync(files.eucarc).mode & 0o777).toBe(0o600);
  });

  it("euca2ools' own config reader finds the region's URLs and the user's keys in euca2ools.ini", () => {
    const py = [
      'import sys; sys.path.insert(0, sys.argv[1])',
      'from requestbuilder.config import ConfigData, ConfigView',
      'data = ConfigData([sys.argv[2]])',
      'v = ConfigView(data, region=data.lookup_global("default-region"))',
      'v.user = v.get_region_option("user")',
      'print(v.region, v.get_region_option("ec2-url"), v.get_user_option("key-id"), v.get_user_option("secret-key"), v.get_user_option("account-id"), v.get_user_option("certificate"), v.get_user_option("private-key"))',
    ].join('\n');
    const out = execFileSync('/usr/bin/python3', ['-c', py, eucaTools, files.eucaIni]).toString().trim();
    expect(out).toBe(`mallee ${endpoints.ec2Url} ${creds.accessKeyId} ${creds.secretAccessKey} ${creds.accountId} ${endpoints.userCertFile} ${endpoints.userKeyFile}`);
  });

  it('botocore reads the AWS profile: region, keys and the ec2 endpoint', () => {
    const py = 'import boto3; s = boto3.Session(); c = s.get_credentials(); print(s.region_name, c.access_key, c.secret_key, s.client("ec2").meta.endpoint_url)';
    const out = execFileSync('python3', ['-c', py], {
      env: { PATH: process.env.PATH, HOME: dir, AWS_CONFIG_FILE: files.awsConfig, AWS_SHARED_CREDENTIALS_FILE: files.awsCredentials },
    }).toString().trim();
    expect(out).toBe(`mallee ${creds.accessKeyId} ${creds.secretAccessKey} ${endpoints.ec2Url}`);
  });
});
