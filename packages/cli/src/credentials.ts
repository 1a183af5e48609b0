// What each client reads to reach the cloud: eucarc (euca2ools, awscli, boto 2/3 via env), a euca2ools
// region/user config, and an AWS CLI profile (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { admin } from '@mallee/wire';

export interface CloudEndpoints {
  ec2Url: string;
  s3Url: string;
  region: string;
  /** Path of the cloud certificate (EUCALYPTUS_CERT, euca2ools `certificate`). */
  certFile: string;
  /** The user's X.509 certificate and private key (EC2_CERT / EC2_PRIVATE_KEY): bundles are signed with them. */
  userCertFile?: string;
  userKeyFile?: string;
}

type Credentials = admin.AccountCredentials;

const sh = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;

export function renderEucarc(c: Credentials, e: CloudEndpoints, dir: string): string {
  const vars: [string, string][] = [
    ['EC2_URL', e.ec2Url],
    ['S3_URL', e.s3Url],
    ['EC2_ACCESS_KEY', c.accessKeyId],
    ['EC2_SECRET_KEY', c.secretAccessKey],
    ['AWS_ACCESS_KEY_ID', c.accessKeyId],
    ['AWS_SECRET_ACCESS_KEY', c.secretAccessKey],
    ['AWS_DEFAULT_REGION', e.region],
    // euca2ools signs SigV4 for this region name.
    ['AWS_AUTH_REGION', e.region],
    // awscli v1 and boto3 (botocore >= 1.31) pick these endpoints up without --endpoint-url.
    ['AWS_ENDPOINT_URL_EC2', e.ec2Url],
    ['AWS_ENDPOINT_URL_S3', e.s3Url],
    ['EUCALYPTUS_CERT', e.certFile],
    ['EC2_USER_ID', c.accountId],
    ...(e.userCertFile ? [['EC2_CERT', e.userCertFile] as [string, string]] : []),
    ...(e.userKeyFile ? [['EC2_PRIVATE_KEY', e.userKeyFile] as [string, string]] : []),
  ];
  return [
    `# Mallee credentials for account ${c.accountName} (user ${c.userName}); use with: source ${join(dir, 'eucarc')}`,
    ...vars.map(([k, v]) => `export ${k}=${sh(v)}`),
    `# euca2ools can read its own config instead: EUCA_CONFIG_PATH=${join(dir, 'euca2ools.ini')}`,
    '',
  ].join('\n');
}

/** euca2ools 3.4 / requestbuilder: [global] default-region, [region NAME] urls + user, [user NAME] keys. */
export function renderEucaIni(c: Credentials, e: CloudEndpoints): string {
  const user = `${c.accountName}-${c.userName}`;
  return [
    `; euca2ools configuration for Mallee region ${e.region}, account ${c.accountName}`,
    '[global]',
    `default-region = ${e.region}`,
    '',
    `[region ${e.region}]`,
    `ec2-url = ${e.ec2Url}`,
    `s3-url = ${e.s3Url}`,
    `certificate = ${e.certFile}`,
    `user = ${user}`,
    '',
    `[user ${user}]`,
    `account-id = ${c.accountId}`,
    `key-id = ${c.accessKeyId}`,
    `secret-key = ${c.secretAccessKey}`,
    ...(e.userCertFile ? [`certificate = ${e.userCertFile}`] : []),
    ...(e.userKeyFile ? [`private-key = ${e.userKeyFile}`] : []),
    '',
  ].join('\n');
}

export function renderAwsConfig(e: CloudEndpoints): string {
  return [
    '[default]',
    `region = ${e.region}`,
    'output = json',
    'services = mallee',
    '',
    '[services mallee]',
    'ec2 =',
    `  endpoint_url = ${e.ec2Url}`,
    's3 =',
    `  endpoint_url = ${e.s3Url}`,
    '',
  ].join('\n');
}

export function renderAwsCredentials(c: Credentials): string {
  return ['[default]', `aws_access_key_id = ${c.accessKeyId}`, `aws_secret_access_key = ${c.secretAccessKey}`, ''].join('\n');
}

export interface WrittenCredentials {
  eucarc: string;
  eucaIni: string;
  awsConfig: string;
  awsCredentials: string;
}

export function writeCredentials(dir: string, c: Credentials, e: CloudEndpoints): WrittenCredentials {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out = {
    eucarc: join(dir, 'eucarc'),
    eucaIni: join(dir, 'euca2ools.ini'),
    awsConfig: join(dir, 'aws-config'),
    awsCredentials: join(dir, 'aws-credentials'),
  };
  writeFileSync(out.eucarc, renderEucarc(c, e, dir), { mode: 0o600 });
  writeFileSync(out.eucaIni, renderEucaIni(c, e), { mode: 0o600 });
  writeFileSync(out.awsConfig, renderAwsConfig(e), { mode: 0o600 });
  writeFileSync(out.awsCredentials, renderAwsCredentials(c), { mode: 0o600 });
  return out;
}
