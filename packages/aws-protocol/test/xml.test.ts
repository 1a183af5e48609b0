import { XMLParser } from 'fast-xml-parser';
import { describe, expect, test } from 'vitest';
import { ec2ErrorXml, ec2ResponseXml, Ec2Error, errors, resolveApiVersion } from '../src/index.js';

describe('EC2 response XML', () => {
  test('wraps the result in {Action}Response with the version namespace and requestId first', () => {
    const xml = ec2ResponseXml('DescribeRegions', '2014-10-01', 'req-1', { regionInfo: [{ regionName: 'eucalyptus', regionEndpoint: 'http://h:8773/' }] });
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2014-10-01/"><requestId>req-1</requestId>' +
        '<regionInfo><item><regionName>eucalyptus</regionName><regionEndpoint>http://h:8773/</regionEndpoint></item></regionInfo></DescribeRegionsResponse>',
    );
  });

  test('scalars: booleans, numbers, Dates with milliseconds, lists of scalars, nested objects; undefined and null omitted', () => {
    const xml = ec2ResponseXml('X', '2016-11-15', 'r', {
      return: true, off: false, count: 0, launchTime: new Date(Date.UTC(2026, 10, 25, 9, 30, 1, 7)),
      groups: ['a', 'b'], placement: { availabilityZone: 'zone-a', tenancy: undefined }, gone: undefined, nil: null, empty: [],
    });
    expect(xml).toContain('<return>true</return><off>false</off><count>0</count><launchTime>2026-11-25T09:30:01.007Z</launchTime>');
    expect(xml).toContain('<groups><item>a</item><item>b</item></groups>');
    expect(xml).toContain('<placement><availabilityZone>zone-a</availabilityZone></placement>');
    expect(xml).toContain('<empty></empty>');
    expect(xml).not.toContain('gone');
    expect(xml).not.toContain('nil');
    expect(xml).not.toContain('tenancy');
  });

  test('text is escaped and round-trips through an XML parser, control characters included', () => {
    const nasty = `<script>&"quotes"'apos'</script> \u0001\u0000 ok 🙂`;
    const xml = ec2ResponseXml('GetConsoleOutput', '2016-11-15', 'r', { output: nasty });
    expect(xml).not.toContain('<script>');
    const parsed = new XMLParser({ processEntities: true, htmlEntities: false }).parse(xml) as { GetConsoleOutputResponse: { output: string } };
    expect(parsed.GetConsoleOutputResponse.output).toBe(`<script>&"quotes"'apos'</script> \uFFFD\uFFFD ok 🙂`);
  });

  test('a result key that is not an XML name is a programming error, not broken XML', () => {
    expect(() => ec2ResponseXml('X', '2016-11-15', 'r', { 'bad key': 1 })).toThrow(/Invalid XML element name/);
  });

  test('the error envelope has Code, Message and RequestID', () => {
    expect(ec2ErrorXml('InvalidInstanceID.NotFound', "The instance ID 'i-<x>' does not exist", 'rid')).toBe(
      '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code>' +
        "<Message>The instance ID &apos;i-&lt;x&gt;&apos; does not exist</Message></Error></Errors><RequestID>rid</RequestID></Response>",
    );
  });
});

describe('API versions', () => {
  test('missing means 2016-11-15; the supported range is accepted as given', () => {
    expect(resolveApiVersion(undefined)).toBe('2016-11-15');
    expect(resolveApiVersion('')).toBe('2016-11-15');
    for (const v of ['2009-11-30', '2012-12-01', '2014-10-01', '2015-10-01', '2016-11-15']) expect(resolveApiVersion(v)).toBe(v);
  });

  test('versions outside 2009-11-30 … 2016-11-15 are NoSuchVersion', () => {
    for (const v of ['2009-04-04', '2016-11-16', '2020-01-01', 'latest', '2015-13-45', '<x>']) {
      expect(() => resolveApiVersion(v), v).toThrow(expect.objectContaining({ code: 'NoSuchVersion', status: 400 }));
    }
  });
});

describe('error statuses', () => {
  test('the codes clients switch on carry the HTTP status AWS uses', () => {
    const cases: [string, number][] = [
      ['AuthFailure', 401], ['SignatureDoesNotMatch', 403], ['MissingAuthenticationToken', 403], ['IncompleteSignature', 400],
      ['RequestExpired', 400], ['InvalidAction', 400], ['MissingAction', 400], ['MissingParameter', 400], ['InvalidParameterValue', 400],
      ['NoSuchVersion', 400], ['InternalError', 500], ['InvalidInstanceID.NotFound', 400],
    ];
    for (const [code, status] of cases) expect(new Ec2Error(code, 'm').status, code).toBe(status);
    expect(errors.missing('ImageId').message).toBe('The request must contain the parameter ImageId');
  });
});
