import { describe, expect, test } from 'vitest';
import { DEFAULT_QUERY_LIMITS, nestParams, originalIndex, parseFormEncoded } from '../src/index.js';

const nest = (s: string) => nestParams(parseFormEncoded(s));

describe('form decoding', () => {
  test('plus is a space, percent escapes are UTF-8, repeated keys are kept in order', () => {
    expect(parseFormEncoded('a=1+2&b=%C3%BC%2B&a=3&flag&=x&&')).toEqual([['a', '1 2'], ['b', 'ü+'], ['a', '3'], ['flag', '']]);
  });

  test('a body given as bytes decodes the same as a string', () => {
    expect(parseFormEncoded(Buffer.from('Name=caf%C3%A9&x=%E2%82%AC'))).toEqual([['Name', 'café'], ['x', '€']]);
  });

  test('broken percent escapes and invalid UTF-8 are MalformedQueryString', () => {
    for (const bad of ['a=%', 'a=%4', 'a=%zz', 'a=%C3%28', 'a=%FF']) {
      expect(() => parseFormEncoded(bad), bad).toThrow(expect.objectContaining({ code: 'MalformedQueryString' }));
    }
    expect(() => parseFormEncoded(Buffer.from([0x61, 0x3d, 0xc3]))).toThrow(expect.objectContaining({ code: 'MalformedQueryString' }));
  });

  test('more than the parameter limit is refused', () => {
    const many = Array.from({ length: DEFAULT_QUERY_LIMITS.maxParams + 1 }, (_, i) => `p${i}=1`).join('&');
    expect(() => parseFormEncoded(many)).toThrow(expect.objectContaining({ code: 'MalformedQueryString' }));
    expect(parseFormEncoded(Array.from({ length: 10_000 }, (_, i) => `p${i}=1`).join('&'))).toHaveLength(10_000);
  });

  test('a body over 1 MiB is refused', () => {
    expect(() => parseFormEncoded('a=' + 'x'.repeat(1024 * 1024))).toThrow(expect.objectContaining({ code: 'RequestEntityTooLarge', status: 413 }));
  });
});

describe('nesting dotted parameters', () => {
  test('Filter.N.Name / Filter.N.Value.M become a list of structures with value lists', () => {
    expect(nest('Filter.1.Name=instance-state-name&Filter.1.Value.1=running&Filter.1.Value.2=pending&Filter.2.Name=tag%3ARole&Filter.2.Value.1=web')).toEqual({
      Filter: [
        { Name: 'instance-state-name', Value: ['running', 'pending'] },
        { Name: 'tag:Role', Value: ['web'] },
      ],
    });
  });

  test('list order follows the index, not the arrival order, and sparse indices compact', () => {
    const p = nest('InstanceId.10=i-10&InstanceId.3=i-3&InstanceId.1=i-1');
    expect(p).toEqual({ InstanceId: ['i-1', 'i-3', 'i-10'] });
    expect(originalIndex(p['InstanceId'] as unknown[], 1)).toBe('3');
    expect(originalIndex(p['InstanceId'] as unknown[], 2)).toBe('10');
  });

  test('deep structures: BlockDeviceMapping and IpPermissions', () => {
    expect(nest('BlockDeviceMapping.1.DeviceName=%2Fdev%2Fsdb&BlockDeviceMapping.1.Ebs.VolumeSize=10&BlockDeviceMapping.1.Ebs.DeleteOnTermination=true&BlockDeviceMapping.2.VirtualName=ephemeral0')).toEqual({
      BlockDeviceMapping: [{ DeviceName: '/dev/sdb', Ebs: { VolumeSize: '10', DeleteOnTermination: 'true' } }, { VirtualName: 'ephemeral0' }],
    });
    expect(nest('IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0&IpPermissions.1.Groups.1.GroupName=web')).toEqual({
      IpPermissions: [{ IpProtocol: 'tcp', FromPort: '22', IpRanges: [{ CidrIp: '0.0.0.0/0' }], Groups: [{ GroupName: 'web' }] }],
    });
  });

  test('keys that are not all positive integers stay a structure', () => {
    expect(nest('A.0=x&A.1=y')).toEqual({ A: { '0': 'x', '1': 'y' } });
    expect(nest('A.1=x&A.b=y')).toEqual({ A: { '1': 'x', b: 'y' } });
  });

  test('a key used as both a value and a structure is InvalidParameterValue, in either order', () => {
    expect(() => nest('A=1&A.1=2')).toThrow(expect.objectContaining({ code: 'InvalidParameterValue', message: expect.stringContaining('A') }));
    expect(() => nest('A.1=2&A=1')).toThrow(expect.objectContaining({ code: 'InvalidParameterValue' }));
    expect(() => nest('A.1.B=2&A.1=1')).toThrow(expect.objectContaining({ code: 'InvalidParameterValue' }));
  });

  test('the same key twice is fine with one value and an error with two', () => {
    expect(nest('Action=X&Action=X')).toEqual({ Action: 'X' });
    expect(() => nest('Action=X&Action=Y')).toThrow(expect.objectContaining({ code: 'InvalidParameterValue' }));
  });

  test('empty segments and nesting deeper than 8 levels are refused', () => {
    expect(() => nest('A..B=1')).toThrow(expect.objectContaining({ code: 'MalformedQueryString' }));
    expect(() => nest('.A=1')).toThrow(expect.objectContaining({ code: 'MalformedQueryString' }));
    expect(nest('A.B.C.D.E.F.G.H=1')).toBeTruthy();
    expect(() => nest('A.B.C.D.E.F.G.H.I=1')).toThrow(expect.objectContaining({ code: 'InvalidParameterValue' }));
  });

  test('__proto__ and constructor are plain parameter names', () => {
    const p = nest('__proto__.polluted=yes&constructor.prototype.x=1');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(p)).toBe(Object.prototype);
    expect(Object.hasOwn(p, '__proto__')).toBe(true);
  });
});
