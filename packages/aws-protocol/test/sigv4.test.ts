import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { chunkSignature, deriveSigningKey, signV4, verifyChunkSignature, verifySigV4, type IncomingRequest, type Principal, type SignV4Input } from '../src/index.js';

const KEY = 'AKIDV4BEHAVIOUR0001';
const SECRET = 'v4/behaviour+secret';
const principal: Principal = { accountId: '3', accountName: 'v4', userId: 'u', accessKeyId: KEY, isAdmin: true };
const credentials = (id: string) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined);
const T0 = new Date('2026-03-01T10:00:00Z');
const minutes = (n: number) => new Date(T0.getTime() + n * 60_000);

const base: SignV4Input = {
  method: 'POST', path: '/', headers: { host: 'clc:8773', 'content-type': 'application/x-www-form-urlencoded' }, body: 'Action=DescribeRegions',
  accessKeyId: KEY, secretAccessKey: SECRET, region: 'whatever-euca2ools-says', service: 'ec2', date: T0,
};

function request(over: Partial<SignV4Input> = {}): IncomingRequest {
  const input = { ...base, ...over };
  const s = signV4(input);
  return { method: input.method, path: input.path, query: s.query, headers: s.headers, body: input.body };
}

const verify = (req: IncomingRequest, now = T0, extra: object = {}) => verifySigV4(req, { credentials, services: ['ec2'], now, ...extra });

describe('SigV4 verification', () => {
  test('the region in the credential scope is whatever the client chose', async () => {
    const ok = await verify(request({ region: 'eucalyptus' }));
    expect(ok).toMatchObject({ form: 'header', region: 'eucalyptus', service: 'ec2', principal, payload: 'verified' });
  });

  test('a service outside the allowed list is refused', async () => {
    await expect(verify(request({ service: 's3' }))).rejects.toMatchObject({ code: 'SignatureDoesNotMatch', message: expect.stringContaining("'ec2'") });
    await expect(verifySigV4(request({ service: 'compute' }), { credentials, services: ['ec2', 'compute'], now: T0 })).resolves.toBeTruthy();
  });

  test('with allowHostLabelService, boto 2\'s scope (service = first label of the host name) is accepted, and only that', async () => {
    const req = request({ service: 'clc', headers: { ...base.headers, host: 'clc.cloud.example:8773' } });
    await expect(verify(req)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(verify(req, T0, { allowHostLabelService: true })).resolves.toMatchObject({ service: 'clc' });
    const other = request({ service: 'walrus', headers: { ...base.headers, host: 'clc.cloud.example:8773' } });
    await expect(verify(other, T0, { allowHostLabelService: true })).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
  });

  test('the clock may differ by up to 15 minutes either way, not more', async () => {
    const req = request();
    await expect(verify(req, minutes(14.9))).resolves.toBeTruthy();
    await expect(verify(req, minutes(-14.9))).resolves.toBeTruthy();
    await expect(verify(req, minutes(15.1))).rejects.toMatchObject({ code: 'RequestExpired', status: 400 });
    await expect(verify(req, minutes(-15.1))).rejects.toMatchObject({ code: 'RequestExpired' });
  });

  test("the scope's date must be the request date's day", async () => {
    const req = request();
    const h = req.headers as Record<string, string>;
    h['authorization'] = h['authorization']!.replace('/20260301/', '/20260302/');
    await expect(verify(req)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch', message: expect.stringContaining('Date in Credential scope') });
  });

  test('an unknown access key is AuthFailure 401 with the EC2 message', async () => {
    await expect(verify(request({ accessKeyId: 'AKIDUNKNOWN' }))).rejects.toMatchObject({
      code: 'AuthFailure', status: 401, message: 'AWS was not able to validate the provided access credentials',
    });
  });

  test('malformed Authorization headers are IncompleteSignature', async () => {
    const bad = [
      'AWS4-HMAC-SHA256',
      'AWS4-HMAC-SHA256 Credential=AKID/20260301/r/ec2/aws4_request, SignedHeaders=host;x-amz-date',
      'AWS4-HMAC-SHA256 Credential=AKID/20260301/r/ec2, SignedHeaders=host, Signature=00',
      'AWS4-HMAC-SHA256 Credential=AKID/20260301/r/ec2/aws5_request, SignedHeaders=host, Signature=00',
      'AWS4-HMAC-SHA256 Credential=AKID/20260301/r/ec2/aws4_request, SignedHeaders=x-amz-date, Signature=00',
      'AWS4-ECDSA-P256-SHA256 Credential=AKID/20260301/r/ec2/aws4_request, SignedHeaders=host, Signature=00',
      'AWS4-HMAC-SHA256 garbage',
    ];
    for (const authorization of bad) {
      const req = request();
      (req.headers as Record<string, string>)['authorization'] = authorization;
      await expect(verify(req), authorization).rejects.toMatchObject({ code: 'IncompleteSignature', status: 400 });
    }
  });

  test('a request without x-amz-date or Date is IncompleteSignature; a Date header alone works', async () => {
    const s = signV4({ ...base, headers: { ...base.headers, date: T0.toUTCString() }, signedHeaders: ['host', 'content-type', 'date'] });
    const headers = { ...s.headers };
    delete headers['x-amz-date'];
    await expect(verify({ method: 'POST', path: '/', query: '', headers, body: base.body })).resolves.toBeTruthy();
    delete headers['date'];
    headers['authorization'] = headers['authorization']!.replace('content-type;date;host', 'content-type;host');
    await expect(verify({ method: 'POST', path: '/', query: '', headers, body: base.body })).rejects.toMatchObject({ code: 'IncompleteSignature' });
  });

  test('x-amz-content-sha256 must match the body', async () => {
    const body = 'Action=RunInstances&ImageId=emi-1';
    const hash = createHash('sha256').update(body).digest('hex');
    const req = request({ body, headers: { ...base.headers, 'x-amz-content-sha256': hash } });
    await expect(verify(req)).resolves.toMatchObject({ payload: 'verified', payloadHash: hash });
    await expect(verify({ ...req, body: body.replace('emi-1', 'emi-2') })).rejects.toMatchObject({ code: 'XAmzContentSHA256Mismatch' });
    await expect(verify({ ...req, body: undefined })).resolves.toMatchObject({ payload: 'deferred' });
  });

  test('UNSIGNED-PAYLOAD is accepted and reported as unsigned', async () => {
    const req = request({ headers: { ...base.headers, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, payloadHash: 'UNSIGNED-PAYLOAD' });
    await expect(verify({ ...req, body: 'anything else' })).resolves.toMatchObject({ payload: 'unsigned', payloadHash: 'UNSIGNED-PAYLOAD' });
  });

  test('a streaming upload returns the seed signature and signing key for the chunk verifier', async () => {
    const mode = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD';
    const s = signV4({ ...base, method: 'PUT', path: '/bucket/key', headers: { host: 'walrus:8776', 'x-amz-content-sha256': mode, 'x-amz-decoded-content-length': '5' }, payloadHash: mode, service: 's3' });
    const ok = await verifySigV4({ method: 'PUT', path: '/bucket/key', query: '', headers: s.headers }, { credentials, services: ['s3'], doubleEncodePath: false, now: T0 });
    expect(ok.payload).toBe('streaming');
    expect(ok.streaming).toEqual({
      mode, seedSignature: s.signature, amzDate: '20260301T100000Z', scope: '20260301/whatever-euca2ools-says/s3/aws4_request',
      signingKey: deriveSigningKey(SECRET, '20260301', 'whatever-euca2ools-says', 's3'),
    });
  });

  test('presigned URLs are honoured until X-Amz-Expires, then RequestExpired', async () => {
    const req = request({ method: 'GET', body: undefined, headers: { host: 'clc:8773' }, query: 'Action=DescribeRegions', presignExpires: 3600 });
    await expect(verify(req, minutes(59))).resolves.toMatchObject({ form: 'query', payloadHash: 'UNSIGNED-PAYLOAD' });
    await expect(verify(req, minutes(61))).rejects.toMatchObject({ code: 'RequestExpired' });
    await expect(verify({ ...req, query: req.query.replace('Action=DescribeRegions', 'Action=TerminateInstances') })).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
  });

  test('a presigned URL with an out-of-range X-Amz-Expires is refused', async () => {
    for (const e of [0, 604801]) {
      const req = request({ method: 'GET', body: undefined, headers: { host: 'clc:8773' }, query: 'Action=DescribeRegions', presignExpires: e });
      await expect(verify(req)).rejects.toMatchObject({ code: 'IncompleteSignature' });
    }
  });

  test('EC2 paths are double-encoded, S3 paths are signed as sent', async () => {
    const path = '/bucket/a%20b%2Bc';
    const ec2 = request({ path });
    await expect(verify(ec2)).resolves.toBeTruthy();
    await expect(verifySigV4(ec2, { credentials, services: ['ec2'], doubleEncodePath: false, now: T0 })).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    const s3 = request({ path, doubleEncodePath: false, service: 's3' });
    await expect(verifySigV4(s3, { credentials, services: ['s3'], doubleEncodePath: false, now: T0 })).resolves.toBeTruthy();
  });

  test('a request with no signature at all is MissingAuthenticationToken', async () => {
    await expect(verify({ method: 'GET', path: '/', query: 'Action=DescribeRegions', headers: { host: 'clc' } })).rejects.toMatchObject({ code: 'MissingAuthenticationToken', status: 403 });
  });
});

describe('S3 streaming uploads (AWS published example, 66560 bytes of "a" in 64 KiB + 1 KiB chunks)', () => {
  const awsKey = 'AKIAIOSFODNN7EXAMPLE';
  const awsSecret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  const seedSignature = '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9';
  const request: IncomingRequest = {
    method: 'PUT', path: '/examplebucket/chunkObject.txt', query: '',
    headers: {
      host: 's3.amazonaws.com', 'x-amz-date': '20130524T000000Z', 'x-amz-storage-class': 'REDUCED_REDUNDANCY',
      'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'content-encoding': 'aws-chunked',
      'x-amz-decoded-content-length': '66560', 'content-length': '66824',
      authorization: `AWS4-HMAC-SHA256 Credential=${awsKey}/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=${seedSignature}`,
    },
  };
  const opts = { credentials: (id: string) => (id === awsKey ? { secretAccessKey: awsSecret, principal } : undefined), services: ['s3'], doubleEncodePath: false, now: new Date('2013-05-24T00:05:00Z') };

  test('the seed request verifies and the chunk chain reproduces the published chunk signatures', async () => {
    const ok = await verifySigV4(request, opts);
    expect(ok.payload).toBe('streaming');
    const seed = ok.streaming!;
    expect(seed.seedSignature).toBe(seedSignature);
    const sig1 = chunkSignature(seed, seed.seedSignature, Buffer.alloc(65536, 'a'));
    expect(sig1).toBe('ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648');
    const sig2 = chunkSignature(seed, sig1, Buffer.alloc(1024, 'a'));
    expect(sig2).toBe('0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497');
    expect(verifyChunkSignature(seed, sig2, Buffer.alloc(0), 'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9')).toBe(true);
    expect(verifyChunkSignature(seed, sig2, Buffer.from('b'), 'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9')).toBe(false);
  });

  test('the seed request fails once a signed header changes', async () => {
    const tampered = { ...request, headers: { ...request.headers, 'x-amz-storage-class': 'STANDARD' } };
    await expect(verifySigV4(tampered, opts)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
  });
});
