// The S3 protocol pieces in @mallee/aws-protocol (src/s3): the aws-chunked decoder against AWS's
// published example, fed in every split; and S3 SigV2 against botocore's own HmacV1 signer.
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { AwsChunkedDecoder, S3Error, canonicalResource, deriveSigningKey, s3SignV2, s3StringToSign, verifyS3SigV2 } from '@mallee/aws-protocol';

// AWS's example (sigv4-streaming.html): 66560 bytes of 'a' in chunks of 65536 and 1024.
const seed = {
  signingKey: deriveSigningKey('wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', '20130524', 'us-east-1', 's3'),
  amzDate: '20130524T000000Z',
  scope: '20130524/us-east-1/s3/aws4_request',
  seedSignature: '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
};
const SIGS = ['ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648', '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497', 'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9'];

function example(sigs = SIGS, trailer = '\r\n'): Buffer {
  return Buffer.concat([
    Buffer.from(`10000;chunk-signature=${sigs[0]}\r\n`), Buffer.alloc(65536, 'a'), Buffer.from('\r\n'),
    Buffer.from(`400;chunk-signature=${sigs[1]}\r\n`), Buffer.alloc(1024, 'a'), Buffer.from('\r\n'),
    Buffer.from(`0;chunk-signature=${sigs[2]}\r\n`), Buffer.from(trailer),
  ]);
}

async function decode(wire: Buffer, pieceSize: number, opts: Partial<ConstructorParameters<typeof AwsChunkedDecoder>[0]> = {}): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < wire.length; i += pieceSize) pieces.push(wire.subarray(i, i + pieceSize));
  const out: Buffer[] = [];
  const decoder = new AwsChunkedDecoder({ mode: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', seed, decodedLength: 66560, ...opts });
  await pipeline(Readable.from(pieces), decoder, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

describe('aws-chunked decoding', () => {
  it.each([1, 7, 100, 4096, 65536 + 90, 1 << 20])('decodes AWS\'s signed example fed in pieces of %i bytes', async (size) => {
    const data = await decode(example(), size);
    expect(data.equals(Buffer.alloc(66560, 'a'))).toBe(true);
  });

  it('refuses a wrong chunk signature, a wrong final signature, and altered data', async () => {
    await expect(decode(example([SIGS[1]!, SIGS[1]!, SIGS[2]!]), 999)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(decode(example([SIGS[0]!, SIGS[1]!, SIGS[0]!]), 999)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    const altered = example();
    altered[200] = 0x62;
    await expect(decode(altered, 999)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
  });

  it('refuses truncated bodies, wrong decoded lengths, oversized chunks and garbage', async () => {
    const wire = example();
    await expect(decode(wire.subarray(0, 60_000), 4096)).rejects.toMatchObject({ code: 'IncompleteBody' });
    await expect(decode(wire, 4096, { decodedLength: 66561 })).rejects.toMatchObject({ code: 'IncompleteBody' });
    await expect(decode(Buffer.from('zz;chunk-signature=00\r\n'), 10)).rejects.toBeInstanceOf(S3Error);
    const long = Buffer.concat([Buffer.from(`10000;chunk-signature=${SIGS[0]}\r\n`), Buffer.alloc(65537, 'a'), Buffer.from('\r\n')]);
    await expect(decode(long, 4096)).rejects.toMatchObject({ code: 'InvalidRequest' });
    await expect(decode(Buffer.from('1;nothing\r\na\r\n'), 10)).rejects.toMatchObject({ code: 'IncompleteSignature' });
  });

  it('reads the unsigned-trailer form and its checksum trailer', async () => {
    const wire = Buffer.from('5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n');
    const decoder = new AwsChunkedDecoder({ mode: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', decodedLength: 11 });
    const out: Buffer[] = [];
    await pipeline(Readable.from([wire]), decoder, async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) out.push(c);
    });
    expect(Buffer.concat(out).toString()).toBe('hello world');
    expect(decoder.trailers.get('x-amz-checksum-crc32')).toBe('DUoRhQ==');
  });
});

describe('S3 SigV2', () => {
  it('signs exactly as botocore\'s HmacV1Auth (amz headers, sub-resources, encoded keys)', () => {
    const script = `
import json, sys
from urllib.parse import urlsplit
from botocore.auth import HmacV1Auth
from botocore.credentials import Credentials
from botocore.awsrequest import AWSRequest
req = AWSRequest(method='PUT', url='http://127.0.0.1:8776/bucket/dir/a%20b%2Bc.txt?uploadId=xyz&partNumber=3&unsigned=1',
  headers={'Content-Type': 'text/plain', 'Content-MD5': 'CY9rzUYh03PK3k6DJie09g==', 'X-Amz-Meta-Colour': ' blue ', 'x-amz-acl': 'private', 'Date': 'Tue, 27 Mar 2007 21:15:45 +0000'})
auth = HmacV1Auth(Credentials('AKID', 'secret/key+1'))
sts = auth.canonical_string('PUT', urlsplit(req.url), req.headers, auth_path='/bucket/dir/a%20b%2Bc.txt')
print(json.dumps({'sts': sts, 'sig': auth.get_signature('PUT', urlsplit(req.url), req.headers, auth_path='/bucket/dir/a%20b%2Bc.txt')}))
`;
    const want = JSON.parse(execFileSync('python3', ['-c', script], { encoding: 'utf8' })) as { sts: string; sig: string };
    const headers = { 'content-type': 'text/plain', 'content-md5': 'CY9rzUYh03PK3k6DJie09g==', 'x-amz-meta-colour': ' blue ', 'x-amz-acl': 'private', date: want.sts.split('\n')[3]! };
    const sts = s3StringToSign('PUT', headers, headers.date, '/bucket/dir/a%20b%2Bc.txt', 'uploadId=xyz&partNumber=3&unsigned=1');
    expect(sts).toBe(want.sts);
    expect(s3SignV2(sts, 'secret/key+1')).toBe(want.sig);
  });

  it('sorts sub-resources and keeps value-less ones bare', () => {
    expect(canonicalResource('/b/k', 'versionId=2&acl&foo=bar')).toBe('/b/k?acl&versionId=2');
  });

  it('verifies header and presigned forms, refusing expired and altered requests', async () => {
    const credentials = (id: string) => (id === 'AKID' ? { secretAccessKey: 'sekrit', principal: { accountId: '1', accountName: 'a', userId: '1', accessKeyId: id, isAdmin: false } } : undefined);
    const now = new Date('2026-01-01T00:00:00Z');
    const date = now.toUTCString();
    const sig = s3SignV2(s3StringToSign('GET', { date }, date, '/b/k', ''), 'sekrit');
    await expect(verifyS3SigV2({ method: 'GET', headers: { date, authorization: `AWS AKID:${sig}` }, query: '', resources: ['/b/k'] }, { credentials, now })).resolves.toMatchObject({ form: 'header' });
    await expect(verifyS3SigV2({ method: 'GET', headers: { date, authorization: `AWS AKID:${sig}` }, query: '', resources: ['/b/other'] }, { credentials, now })).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(verifyS3SigV2({ method: 'GET', headers: { date, authorization: `AWS NOPE:${sig}` }, query: '', resources: ['/b/k'] }, { credentials, now })).rejects.toMatchObject({ code: 'InvalidAccessKeyId' });
    await expect(verifyS3SigV2({ method: 'GET', headers: { date, authorization: `AWS AKID:${sig}` }, query: '', resources: ['/b/k'] }, { credentials, now: new Date(now.getTime() + 3600_000) })).rejects.toMatchObject({ code: 'RequestTimeTooSkewed' });
    const expires = String(now.getTime() / 1000 + 60);
    const qsig = encodeURIComponent(s3SignV2(s3StringToSign('GET', {}, expires, '/b/k', ''), 'sekrit'));
    const query = `AWSAccessKeyId=AKID&Expires=${expires}&Signature=${qsig}`;
    await expect(verifyS3SigV2({ method: 'GET', headers: {}, query, resources: ['/b/k'] }, { credentials, now })).resolves.toMatchObject({ form: 'query' });
    await expect(verifyS3SigV2({ method: 'GET', headers: {}, query, resources: ['/b/k'] }, { credentials, now: new Date(now.getTime() + 61_000) })).rejects.toMatchObject({ code: 'AccessDenied' });
  });
});
