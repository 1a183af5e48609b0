// botocore's own signers (SigV4Auth, SigV4QueryAuth, S3SigV4Auth, S3SigV4QueryAuth, SigV2Auth) sign
// requests in a python3 subprocess; the verifiers must accept them and reject any tampered copy.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';
import { parseFormEncoded, splitUrl, verifySigV2, verifySigV4, type IncomingRequest, type Principal } from '../src/index.js';

const KEY = 'AKIDBOTOCORE0000001';
const SECRET = 'Bq8/+kEyS3cr3t=with/odd+chars0000000000';
const principal: Principal = { accountId: '2', accountName: 'boto', userId: 'u', accessKeyId: KEY, isAdmin: false };
const credentials = (id: string) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined);
const wrongSecret = (id: string) => (id === KEY ? { secretAccessKey: SECRET.slice(0, -1) + 'X', principal } : undefined);

const FORM = { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' };
const EC2_PARAMS = {
  Action: 'DescribeInstances', Version: '2016-11-15', 'Filter.1.Name': 'tag:Name', 'Filter.1.Value.1': 'web server #1 & co/ü+ñ',
  'Filter.2.Name': 'instance-state-name', 'Filter.2.Value.1': 'running', 'InstanceId.1': 'i-1a2b3c4d', 'UserData': 'IyEvYmluL3NoCmVjaG8gaGk=',
};

type Spec = Record<string, unknown> & { signer: string; label: string };
const specs: Spec[] = [
  { label: 'SigV4Auth POST form (awscli/boto3 EC2)', signer: 'v4', method: 'POST', url: 'http://127.0.0.1:8773/', headers: FORM, params: EC2_PARAMS, region: 'us-east-1', service: 'ec2' },
  { label: 'SigV4Auth POST at /services/compute for a made-up region', signer: 'v4', method: 'POST', url: 'http://clc.example:8773/services/compute', headers: FORM, params: EC2_PARAMS, region: 'mallee-made-up', service: 'ec2' },
  { label: 'SigV4Auth GET with the query in the URL', signer: 'v4', method: 'GET', url: 'http://127.0.0.1:8773/services/Eucalyptus?Action=DescribeRegions&Version=2016-11-15&RegionName.1=a%20b', region: 'eucalyptus', service: 'ec2' },
  { label: 'SigV4Auth with a session token', signer: 'v4', method: 'POST', url: 'http://127.0.0.1:8773/', headers: FORM, params: { Action: 'DescribeRegions' }, region: 'us-east-1', service: 'ec2', token: 'FQoDYXdzEXAMPLETOKEN//+=' },
  { label: 'SigV4QueryAuth POST (form moved into the query)', signer: 'v4query', method: 'POST', url: 'http://127.0.0.1:8773/', headers: FORM, params: EC2_PARAMS, region: 'us-east-1', service: 'ec2', expires: 600 },
  { label: 'SigV4QueryAuth GET', signer: 'v4query', method: 'GET', url: 'http://127.0.0.1:8773/services/compute?Action=DescribeRegions&Version=2016-11-15', region: 'r1', service: 'ec2', expires: 60 },
  { label: 'S3SigV4Auth PUT of a key with spaces and UTF-8', signer: 's3v4', method: 'PUT', url: 'http://127.0.0.1:8776/bucket/dir%20a/%C3%BC%2Bx.txt', body: 'hello object\n', region: 'us-east-1', service: 's3' },
  { label: 'S3SigV4QueryAuth GET (presigned URL)', signer: 's3v4query', method: 'GET', url: 'http://127.0.0.1:8776/bucket/a%20b.txt', region: 'us-east-1', service: 's3', expires: 900 },
  { label: 'SigV2Auth POST form (boto 2 style)', signer: 'v2', method: 'POST', url: 'http://127.0.0.1:8773/services/Eucalyptus', headers: FORM, params: EC2_PARAMS },
  { label: 'SigV2Auth GET', signer: 'v2', method: 'GET', url: 'http://127.0.0.1:8773/', params: { Action: 'DescribeRegions', Version: '2014-10-01', 'Filter.1.Value.1': '~*\'()!' } },
];

interface Signed { method: string; url: string; headers: Record<string, string>; body: string }
let signed: Signed[] = [];

function pythonSign(list: Spec[]): Signed[] {
  const script = fileURLToPath(new URL('./fixtures/botocore_sign.py', import.meta.url));
  const input = JSON.stringify({ requests: list.map((s) => ({ access: KEY, secret: SECRET, ...s })) });
  const run = spawnSync('python3', [script], { input, encoding: 'utf8', timeout: 60_000 });
  if (run.status !== 0) throw new Error(`botocore signer failed: ${run.stderr || run.error?.message}`);
  return JSON.parse(run.stdout) as Signed[];
}

function toIncoming(s: Signed): IncomingRequest & { host: string } {
  const m = /^https?:\/\/([^/]+)(.*)$/.exec(s.url)!;
  const host = m[1]!;
  const { path, query } = splitUrl(m[2] === '' ? '/' : m[2]!);
  return { method: s.method, path, query, headers: { host, ...s.headers }, body: s.body, host };
}

beforeAll(() => {
  signed = pythonSign(specs);
});

async function verify(spec: Spec, req: IncomingRequest & { host: string }, creds = credentials) {
  if (spec.signer === 'v2') {
    const params = [...parseFormEncoded(req.query), ...parseFormEncoded(req.body as string)];
    return verifySigV2({ method: req.method, host: req.host, path: req.path, params }, { credentials: creds });
  }
  const s3 = spec.signer.startsWith('s3');
  return verifySigV4(req, { credentials: creds, services: [s3 ? 's3' : 'ec2'], doubleEncodePath: !s3 });
}

describe('requests signed by botocore', () => {
  specs.forEach((spec, i) => {
    test(`${spec.label}: accepted`, async () => {
      const ok = await verify(spec, toIncoming(signed[i]!));
      expect(ok.principal).toEqual(principal);
    });

    test(`${spec.label}: rejected with the wrong secret`, async () => {
      await expect(verify(spec, toIncoming(signed[i]!), wrongSecret)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    });

    test(`${spec.label}: rejected after one byte of the body or a parameter changes`, async () => {
      const req = toIncoming(signed[i]!);
      if (typeof req.body === 'string' && req.body.length > 0) req.body = 'B' + req.body.slice(1);
      else req.query += '&x=1';
      await expect(verify(spec, req)).rejects.toMatchObject({ code: expect.stringMatching(/^(SignatureDoesNotMatch|XAmzContentSHA256Mismatch)$/) });
    });

    test(`${spec.label}: rejected after a signed header changes`, async () => {
      const req = toIncoming(signed[i]!);
      req.host = req.host.replace(/:\d+$/, ':9999');
      req.headers = { ...req.headers, host: req.host };
      await expect(verify(spec, req)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    });

    test(`${spec.label}: rejected after its date changes`, async () => {
      const req = toIncoming(signed[i]!);
      if (spec.signer === 'v2') {
        req.body = (req.body as string).replace(/(Timestamp=\d{4}-\d\d-\d\dT\d\d%3A\d\d%3A)(\d)/, (_, a: string, d: string) => a + String((+d + 1) % 6));
        req.query = req.query.replace(/(Timestamp=\d{4}-\d\d-\d\dT\d\d%3A\d\d%3A)(\d)/, (_, a: string, d: string) => a + String((+d + 1) % 6));
      } else if (spec.signer.includes('query')) {
        req.query = req.query.replace(/(X-Amz-Date=\d{8}T\d{4})(\d)/, (_, a: string, d: string) => a + String((+d + 1) % 6));
      } else {
        const h = req.headers as Record<string, string>;
        h['X-Amz-Date'] = h['X-Amz-Date']!.replace(/(\d)Z$/, (_, d: string) => String((+d + 1) % 10) + 'Z');
      }
      await expect(verify(spec, req)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    });
  });

  test('a request botocore signed at the suite date is RequestExpired today', async () => {
    const [old] = pythonSign([{ ...specs[0]!, date: '20150830T123600Z' }]);
    await expect(verify(specs[0]!, toIncoming(old!))).rejects.toMatchObject({ code: 'RequestExpired' });
  });
});
