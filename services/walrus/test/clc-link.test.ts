// Credentials over the wire: a stand-in clc serving LookupAccessKey through the real wire plugin (the
// clc's own services/clc/src/walrus-link.ts wraps the same handler); awscli signs against Walrus, which
// asks the "clc" and caches answers.
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { signV4 } from '@mallee/aws-protocol';
import { generateKey, handler, walrus, wire, writeKeyFile } from '@mallee/wire';
import { startDaemon, walrusKeyFile, type RunningDaemon } from '../src/index.js';
import { ACCOUNTS, aws, awsFails, tempDir, testConfig } from './harness.js';

let clc: FastifyInstance;
let daemon: RunningDaemon;
let home: string;
const lookups: string[] = [];

beforeAll(async () => {
  home = tempDir('mallee-walrus-link-');
  const key = generateKey();
  writeKeyFile(walrusKeyFile(home), key);
  const accounts = new Map(Object.values(ACCOUNTS).map((a) => [a.accessKeyId, a]));
  clc = Fastify();
  await clc.register(wire, {
    keyFor: (from) => (from === walrus.WALRUS_SENDER ? key : undefined),
    handlers: [
      handler(
        walrus.LookupAccessKey,
        ({ accessKeyId }) => {
          lookups.push(accessKeyId);
          const a = accounts.get(accessKeyId);
          return a ? { credential: { secretAccessKey: a.secretAccessKey, accountId: a.accountId, accountName: a.accountName, isAdmin: false } } : {};
        },
        (from) => from === walrus.WALRUS_SENDER,
      ),
    ],
  });
  const clcUrl = await clc.listen({ port: 0, host: '127.0.0.1' });
  daemon = await startDaemon({ home, config: testConfig(), port: 0, clcUrl });
});
afterAll(async () => {
  await daemon?.close();
  await clc?.close();
  rmSync(home, { recursive: true, force: true });
});

it('awscli is authenticated by the clc over the wire, with one lookup per key for a burst of requests', async () => {
  const w = { url: daemon.url, home, daemon, close: async () => undefined };
  await aws(w, 'alice', ['s3', 'mb', 's3://linked']);
  await aws(w, 'alice', ['s3', 'ls', 's3://linked']);
  await aws(w, 'alice', ['s3', 'ls']);
  expect(lookups.filter((k) => k === ACCOUNTS.alice!.accessKeyId)).toHaveLength(1);
  expect(await awsFails(w, 'bob', ['s3', 'ls', 's3://linked'])).toContain('AccessDenied');
  // A key the clc does not know is refused as S3 does.
  const a = ACCOUNTS.alice!;
  const s = signV4({ method: 'GET', path: '/', headers: { host: new URL(daemon.url).host }, accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false });
  const r = await fetch(new URL('/', daemon.url), { headers: s.headers });
  expect(r.status).toBe(403);
  expect(await r.text()).toContain('<Code>InvalidAccessKeyId</Code>');
  expect(lookups).toContain('AKIAUNKNOWN000000000');
});

it('a clc that cannot be reached is ServiceUnavailable, not a crash', async () => {
  const h = tempDir('mallee-walrus-noclc-');
  writeKeyFile(walrusKeyFile(h), generateKey());
  const d = await startDaemon({ home: h, config: testConfig(), port: 0, clcUrl: 'http://127.0.0.1:9' });
  try {
    const err = await awsFails({ url: d.url, home: h, daemon: d, close: async () => undefined }, 'alice', ['s3', 'ls', '--cli-read-timeout', '5']);
    expect(err).toContain('ServiceUnavailable');
    expect((await fetch(new URL('/_mallee/healthz', d.url))).status).toBe(200);
  } finally {
    await d.close();
    rmSync(h, { recursive: true, force: true });
  }
});

it('the key file is where the daemon looks for it', () => {
  expect(walrusKeyFile(home)).toBe(join(home, 'keys', 'walrus.key'));
});
