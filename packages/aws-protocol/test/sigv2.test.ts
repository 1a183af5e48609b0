import { describe, expect, test } from 'vitest';
import { signV2, verifySigV2, type Principal, type QueryPair } from '../src/index.js';

const KEY = 'AKIDV2BEHAVIOUR0001';
const SECRET = 'v2/secret+key=';
const principal: Principal = { accountId: '4', accountName: 'v2', userId: 'u', accessKeyId: KEY, isAdmin: false };
const credentials = (id: string) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined);
const T0 = new Date('2026-03-01T10:00:00Z');

function params(extra: Record<string, string>, method: 'HmacSHA1' | 'HmacSHA256' = 'HmacSHA256', host = 'clc.example:8773', path = '/services/Eucalyptus'): QueryPair[] {
  const p: QueryPair[] = Object.entries({ Action: 'DescribeImages', 'Owner.1': 'self', AWSAccessKeyId: KEY, SignatureVersion: '2', SignatureMethod: method, Version: '2010-08-31', ...extra });
  return [...p, ['Signature', signV2('GET', host, path, p, SECRET, method)]];
}

const verify = (p: QueryPair[], host = 'clc.example:8773', now = T0, path = '/services/Eucalyptus') => verifySigV2({ method: 'GET', host, path, params: p }, { credentials, now });

describe('SigV2 verification', () => {
  test('HmacSHA256 and HmacSHA1 signatures over host:port are accepted', async () => {
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z' }))).resolves.toMatchObject({ signatureMethod: 'HmacSHA256', principal });
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00.123Z' }, 'HmacSHA1'))).resolves.toMatchObject({ signatureMethod: 'HmacSHA1' });
  });

  test('the host is compared in lower case, and a default port may be left out of the signature', async () => {
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z' }), 'CLC.Example:8773')).resolves.toBeTruthy();
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z' }, 'HmacSHA256', 'clc.example'), 'clc.example:80')).resolves.toBeTruthy();
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z' }), 'clc.example:8774')).rejects.toMatchObject({ code: 'SignatureDoesNotMatch', status: 403 });
  });

  test('changing any parameter, the path or the secret breaks the signature', async () => {
    const p = params({ Timestamp: '2026-03-01T10:00:00Z' });
    await expect(verify(p.map(([k, v]) => [k, k === 'Owner.1' ? 'amazon' : v] as const))).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(verify([...p, ['ExecutableBy.1', 'all']])).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(verify(p, 'clc.example:8773', T0, '/services/compute')).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    await expect(verifySigV2({ method: 'GET', host: 'clc.example:8773', path: '/services/Eucalyptus', params: p }, { credentials: (id) => (id === KEY ? { secretAccessKey: 'other', principal } : undefined), now: T0 }))
      .rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
  });

  test('a Timestamp more than 15 minutes off is RequestExpired; Expires is honoured', async () => {
    await expect(verify(params({ Timestamp: '2026-03-01T09:44:00Z' }))).rejects.toMatchObject({ code: 'RequestExpired' });
    await expect(verify(params({ Timestamp: '2026-03-01T10:16:00Z' }))).rejects.toMatchObject({ code: 'RequestExpired' });
    await expect(verify(params({ Expires: '2026-03-01T10:05:00Z' }))).resolves.toBeTruthy();
    await expect(verify(params({ Expires: '2026-03-01T09:59:00Z' }))).rejects.toMatchObject({ code: 'RequestExpired' });
  });

  test('missing or contradictory parameters get precise errors', async () => {
    await expect(verify(params({}))).rejects.toMatchObject({ code: 'MissingParameter', message: 'The request must contain the parameter Timestamp' });
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z', Expires: '2026-03-01T10:05:00Z' }))).rejects.toMatchObject({ code: 'InvalidParameterCombination' });
    await expect(verify(params({ Timestamp: 'yesterday' }))).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z', SignatureMethod: 'HmacMD5' }))).rejects.toMatchObject({ code: 'InvalidParameterValue' });
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z' }).filter(([k]) => k !== 'Signature'))).rejects.toMatchObject({ code: 'MissingParameter' });
    await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z', AWSAccessKeyId: 'AKIDNOBODY' }))).rejects.toMatchObject({ code: 'AuthFailure', status: 401 });
  });

  test('SignatureVersion 0 and 1 are refused with a clear message', async () => {
    for (const v of ['0', '1']) {
      await expect(verify(params({ Timestamp: '2026-03-01T10:00:00Z', SignatureVersion: v }))).rejects.toMatchObject({
        code: 'InvalidParameterValue', message: expect.stringContaining(`Value (${v}) for parameter SignatureVersion is invalid`),
      });
    }
  });
});
