import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { z } from 'zod';
import { defineEc2Action, Ec2Error, ec2Api, q, signV2, signV4, type Principal } from '../src/index.js';

const KEY = 'AKIDMALLEETEST00001';
const SECRET = 'mallee/secret+key/0123456789abcdefghijklm';
const principal: Principal = { accountId: '000000000001', accountName: 'test', userId: 'u-1', accessKeyId: KEY, isAdmin: false };

const echo = defineEc2Action(
  'EchoInstances',
  z.object({
    Name: z.string(),
    Count: q.int().optional(),
    InstanceId: q.list(z.string()),
    Filter: q.filters(),
  }),
  (input, ctx) => ({
    name: input.Name,
    count: input.Count,
    instancesSet: input.InstanceId.map((instanceId) => ({ instanceId })),
    filterSet: input.Filter.map((f) => ({ name: f.Name, valueSet: f.Value })),
    owner: ctx.principal.accountId,
    version: ctx.apiVersion,
    requestIdSeen: ctx.requestId,
  }),
);
const boom = defineEc2Action('Boom', z.object({}), () => {
  throw new Error('disk /secret/path exploded');
});
// Like the clc's list helper: a lone un-numbered value counts as a list of one.
const loneList = z.preprocess((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]), z.array(z.string().regex(/^i-[0-9a-f]{8}$/, 'Invalid id')));
const lone = defineEc2Action('Lone', z.object({ InstanceId: loneList }), (i) => ({ instancesSet: i.InstanceId }));
const strict = defineEc2Action('Strict', z.strictObject({ GroupName: z.string() }).refine((i) => i.GroupName !== 'default', { message: 'The default group cannot be deleted' }), () => ({ return: true }));
const notFound = defineEc2Action('Lookup', z.object({ InstanceId: z.string() }), (input) => {
  throw new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${input.InstanceId}' does not exist`);
});

let app: FastifyInstance;
beforeAll(async () => {
  app = Fastify({ logger: false });
  await app.register(ec2Api, {
    actions: [echo, boom, notFound, strict, lone],
    credentials: (id) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined),
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
});

const form = (params: Record<string, string>) => new URLSearchParams(params).toString().replace(/\+/g, '%20');

async function post(body: string, opts: { path?: string; secret?: string; date?: Date; key?: string; mutate?: (h: Record<string, string>) => void } = {}) {
  const headers = { host: 'localhost', 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' };
  const signed = signV4({
    method: 'POST', path: opts.path ?? '/', headers, body,
    accessKeyId: opts.key ?? KEY, secretAccessKey: opts.secret ?? SECRET, region: 'eucalyptus', service: 'ec2', date: opts.date,
  });
  opts.mutate?.(signed.headers);
  return app.inject({ method: 'POST', url: opts.path ?? '/', headers: signed.headers, payload: body });
}

const code = (xml: string) => /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];

describe('ec2Api plugin', () => {
  test('a SigV4-signed call reaches its handler and answers in the requested version namespace', async () => {
    const res = await post(form({ Action: 'EchoInstances', Version: '2014-10-01', Name: 'a&b', Count: '3', 'InstanceId.2': 'i-2', 'InstanceId.1': 'i-1', 'Filter.1.Name': 'tag:x', 'Filter.1.Value.1': 'v' }));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/xml/);
    const rid = res.headers['x-amzn-requestid'] as string;
    expect(rid).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body).toContain('<EchoInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2014-10-01/">');
    expect(res.body).toContain(`<requestId>${rid}</requestId>`);
    expect(res.body).toContain('<name>a&amp;b</name><count>3</count>');
    expect(res.body).toContain('<instancesSet><item><instanceId>i-1</instanceId></item><item><instanceId>i-2</instanceId></item></instancesSet>');
    expect(res.body).toContain('<filterSet><item><name>tag:x</name><valueSet><item>v</item></valueSet></item></filterSet>');
    expect(res.body).toContain(`<requestIdSeen>${rid}</requestIdSeen>`);
  });

  test('every Eucalyptus endpoint path serves the API, GET and POST', async () => {
    for (const path of ['/services/compute', '/services/compute/', '/services/Eucalyptus', '/services/Eucalyptus/']) {
      const res = await post(form({ Action: 'EchoInstances', Name: 'x' }), { path });
      expect(res.statusCode, path).toBe(200);
      expect(res.body).toContain('xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"');
    }
    const query = form({ Action: 'EchoInstances', Name: 'g' });
    const signed = signV4({ method: 'GET', path: '/services/compute', query, headers: { host: 'localhost' }, accessKeyId: KEY, secretAccessKey: SECRET, region: 'r', service: 'ec2' });
    const res = await app.inject({ method: 'GET', url: `/services/compute?${signed.query}`, headers: signed.headers });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('<name>g</name>');
  });

  test('a presigned GET URL is accepted', async () => {
    const query = form({ Action: 'EchoInstances', Name: 'p' });
    const signed = signV4({ method: 'GET', path: '/', query, headers: { host: 'localhost' }, accessKeyId: KEY, secretAccessKey: SECRET, region: 'r', service: 'ec2', presignExpires: 300 });
    const res = await app.inject({ method: 'GET', url: `/?${signed.query}`, headers: { host: 'localhost' } });
    expect(res.statusCode, res.body).toBe(200);
  });

  test('a SigV2 (boto 2 style) POST is accepted', async () => {
    const params: [string, string][] = [
      ['Action', 'EchoInstances'], ['Name', 'v2 name'], ['AWSAccessKeyId', KEY], ['SignatureVersion', '2'],
      ['SignatureMethod', 'HmacSHA256'], ['Timestamp', new Date().toISOString().replace(/\.\d+Z$/, 'Z')], ['Version', '2009-11-30'],
    ];
    const sig = signV2('POST', 'localhost:8773', '/services/Eucalyptus', params, SECRET);
    const res = await app.inject({ method: 'POST', url: '/services/Eucalyptus', headers: { host: 'localhost:8773', 'content-type': 'application/x-www-form-urlencoded' }, payload: form(Object.fromEntries([...params, ['Signature', sig]])) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).toContain('<name>v2 name</name>');
    expect(res.body).toContain('doc/2009-11-30/');
  });

  test('an unknown action is InvalidAction', async () => {
    const res = await post(form({ Action: 'DescribeUnicorns' }));
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('InvalidAction');
    expect(res.body).toContain('The action DescribeUnicorns is not valid for this web service.');
    expect(res.body).toMatch(/<RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/);
  });

  test('a missing Action is MissingAction', async () => {
    const res = await post(form({ Name: 'x' }));
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('MissingAction');
  });

  test('a missing required parameter is MissingParameter naming it', async () => {
    const res = await post(form({ Action: 'EchoInstances' }));
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('MissingParameter');
    expect(res.body).toContain('The request must contain the parameter Name');
  });

  test('a missing member of a list item names it Filter.N.Name style with the index the client sent', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x', 'Filter.3.Value.1': 'v' }));
    expect(code(res.body)).toBe('MissingParameter');
    expect(res.body).toContain('The request must contain the parameter Filter.3.Name');
  });

  test('a bad integer is InvalidParameterValue naming the parameter and value', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x', Count: 'abc' }));
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('InvalidParameterValue');
    expect(res.body).toContain('Value (abc) for parameter Count is invalid.');
  });

  test('a scalar where a list is expected is InvalidParameterValue', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x', InstanceId: 'i-1' }));
    expect(code(res.body)).toBe('InvalidParameterValue');
    expect(res.body).toContain('parameter InstanceId is invalid');
  });

  test('a strict action names an unknown parameter; a whole-request rule gives its own message', async () => {
    const unknown = await post(form({ Action: 'Strict', GroupName: 'g', Bogus: '1' }));
    expect(code(unknown.body)).toBe('UnknownParameter');
    expect(unknown.body).toContain('The parameter Bogus is not recognized');
    const rule = await post(form({ Action: 'Strict', GroupName: 'default' }));
    expect(rule.statusCode).toBe(400);
    expect(code(rule.body)).toBe('InvalidParameterCombination');
    expect(rule.body).toContain('The default group cannot be deleted');
  });

  test('a bad value in a lone-value list is InvalidParameterValue, not MissingParameter', async () => {
    const lone1 = await post(form({ Action: 'Lone', InstanceId: 'bogus' }));
    expect(code(lone1.body)).toBe('InvalidParameterValue');
    expect(lone1.body).toContain('Value (bogus) for parameter InstanceId.1 is invalid. Invalid id');
    const listed = await post(form({ Action: 'Lone', 'InstanceId.1': 'i-0000000a', 'InstanceId.4': 'nope' }));
    expect(listed.body).toContain('Value (nope) for parameter InstanceId.4 is invalid');
    const ok = await post(form({ Action: 'Lone', InstanceId: 'i-0000000a' }));
    expect(ok.body).toContain('<instancesSet><item>i-0000000a</item></instancesSet>');
  });

  test('unknown extra parameters are ignored', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x', 'Bogus.1.Thing': 'y', ClientToken: 'z' }));
    expect(res.statusCode).toBe(200);
  });

  test('a wrong secret is SignatureDoesNotMatch (403) and an unknown key AuthFailure (401)', async () => {
    const bad = await post(form({ Action: 'EchoInstances', Name: 'x' }), { secret: SECRET + 'x' });
    expect(bad.statusCode).toBe(403);
    expect(code(bad.body)).toBe('SignatureDoesNotMatch');
    const unknown = await post(form({ Action: 'EchoInstances', Name: 'x' }), { key: 'AKIDNOBODY' });
    expect(unknown.statusCode).toBe(401);
    expect(code(unknown.body)).toBe('AuthFailure');
    expect(unknown.body).toContain('AWS was not able to validate the provided access credentials');
  });

  test('a request signed 20 minutes ago is RequestExpired', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x' }), { date: new Date(Date.now() - 20 * 60_000) });
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('RequestExpired');
  });

  test('a malformed Authorization header is IncompleteSignature', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x' }), { mutate: (h) => { h['authorization'] = 'AWS4-HMAC-SHA256 Credential=foo'; } });
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('IncompleteSignature');
  });

  test('an unsigned request is MissingAuthenticationToken', async () => {
    const res = await app.inject({ method: 'GET', url: '/?Action=EchoInstances&Name=x' });
    expect(res.statusCode).toBe(403);
    expect(code(res.body)).toBe('MissingAuthenticationToken');
  });

  test('an unsupported API version is NoSuchVersion', async () => {
    const res = await post(form({ Action: 'EchoInstances', Name: 'x', Version: '2021-01-01' }));
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('NoSuchVersion');
  });

  test('garbage bodies get XML errors, never a 5xx', async () => {
    const bodies: (string | Buffer)[] = [
      '%%%', 'a=%zz', Buffer.from([0x41, 0x3d, 0xff, 0xfe]), 'A=1&A.1=2', 'a..b=1', '=&&&=', '\u0000\u0001', Buffer.from('Action=%C3%28'),
      'A.B.C.D.E.F.G.H.I=1', 'x=' + 'y'.repeat(100),
    ];
    for (const body of bodies) {
      const res = await app.inject({ method: 'POST', url: '/', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
      expect(res.statusCode, String(body)).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, String(body)).toBeLessThan(500);
      expect(res.body, String(body)).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><Response><Errors><Error><Code>\w+<\/Code>/);
    }
    const json = await app.inject({ method: 'POST', url: '/', headers: { 'content-type': 'application/json' }, payload: '{"Action":' });
    expect(json.statusCode).toBe(403);
    expect(code(json.body)).toBe('MissingAuthenticationToken');
  });

  test('a body over 1 MiB is refused with an XML error', async () => {
    const res = await app.inject({ method: 'POST', url: '/', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=' + 'b'.repeat(1024 * 1024 + 10) });
    expect(res.statusCode).toBe(413);
    expect(code(res.body)).toBe('RequestEntityTooLarge');
  });

  test('a handler that throws is a 500 InternalError without details', async () => {
    const res = await post(form({ Action: 'Boom' }));
    expect(res.statusCode).toBe(500);
    expect(code(res.body)).toBe('InternalError');
    expect(res.body).not.toContain('secret');
    expect(res.body).not.toContain('at ');
  });

  test('a handler Ec2Error reaches the client with its code', async () => {
    const res = await post(form({ Action: 'Lookup', InstanceId: 'i-deadbeef' }));
    expect(res.statusCode).toBe(400);
    expect(code(res.body)).toBe('InvalidInstanceID.NotFound');
  });
});

describe('ec2Api inside a larger app', () => {
  test('its body parser and error handler stay inside the plugin: sibling JSON routes still parse JSON', async () => {
    const host = Fastify({ logger: false });
    host.post('/wire', async (req) => ({ got: req.body }));
    await host.register(ec2Api, { actions: [echo], credentials: () => undefined });
    const res = await host.inject({ method: 'POST', url: '/wire', headers: { 'content-type': 'application/json' }, payload: '{"a":1}' });
    expect(res.json()).toEqual({ got: { a: 1 } });
    const ec2 = await host.inject({ method: 'POST', url: '/services/compute', headers: { 'content-type': 'application/json' }, payload: '{"a":' });
    expect(code(ec2.body)).toBe('MissingAuthenticationToken');
    await host.close();
  });

  test('an app that ignores trailing slashes can still register it', async () => {
    const host = Fastify({ logger: false, routerOptions: { ignoreTrailingSlash: true } });
    await host.register(ec2Api, { actions: [echo], credentials: () => undefined });
    await host.ready();
    const res = await host.inject({ method: 'GET', url: '/services/compute/?Action=EchoInstances' });
    expect(code(res.body)).toBe('MissingAuthenticationToken');
    await host.close();
  });

  test('two actions with one name are refused at registration', async () => {
    const host = Fastify({ logger: false });
    await expect(host.register(ec2Api, { actions: [echo, echo], credentials: () => undefined }).ready()).rejects.toThrow(/defined twice/);
    await host.close();
  });
});

describe('ec2Api logging and limits', () => {
  test('an internal error is logged with its stack and request id; the handler log carries the request id', async () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
    const logged = defineEc2Action('Logged', z.object({}), (_i, ctx) => { ctx.log.info('inside handler'); return {}; });
    const host = Fastify({ logger: { level: 'info', stream } });
    await host.register(ec2Api, { actions: [boom, logged], credentials: (id) => (id === KEY ? { secretAccessKey: SECRET, principal } : undefined) });
    for (const action of ['Boom', 'Logged']) {
      const body = form({ Action: action });
      const s = signV4({ method: 'POST', path: '/', headers: { host: 'localhost', 'content-type': 'application/x-www-form-urlencoded' }, body, accessKeyId: KEY, secretAccessKey: SECRET, region: 'r', service: 'ec2' });
      await host.inject({ method: 'POST', url: '/', headers: s.headers, payload: body });
    }
    await host.close();
    const internal = lines.find((l) => l['msg'] === 'internal error while serving an EC2 request') as { err?: { stack?: string }; level: number } | undefined;
    expect(internal?.level).toBe(50);
    expect(internal?.err?.stack).toContain('disk /secret/path exploded');
    const inside = lines.find((l) => l['msg'] === 'inside handler');
    expect(inside).toMatchObject({ action: 'Logged', accountId: principal.accountId, requestId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  test('10,000 parameters, some nested 8 deep, are served in under two seconds', async () => {
    const pairs: Record<string, string> = { Action: 'EchoInstances', Name: 'big' };
    for (let i = 1; i <= 8_000; i++) pairs[`InstanceId.${i}`] = `i-${i.toString(16).padStart(8, '0')}`;
    for (let i = 1; i <= 990; i++) {
      pairs[`Filter.${i}.Value.1`] = 'v';
      pairs[`Filter.${i}.Name`] = `n${i}`;
    }
    for (let i = 1; i <= 5; i++) pairs[`Deep.${i}.B.C.D.E.F.G`] = 'x';
    const t = performance.now();
    const res = await post(form(pairs));
    const ms = performance.now() - t;
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect(res.body.match(/<instanceId>/g)).toHaveLength(8_000);
    expect(ms).toBeLessThan(2_000);
  });

  test('one more parameter than 10,000 is refused', async () => {
    const pairs: Record<string, string> = { Action: 'EchoInstances', Name: 'big' };
    for (let i = 1; i <= 9_999; i++) pairs[`InstanceId.${i}`] = 'i';
    const res = await post(form(pairs));
    expect(res.statusCode).toBe(404);
    expect(code(res.body)).toBe('MalformedQueryString');
  });
});
