// kill -9 of a real walrus process during 20 parallel uploads: after restart every acknowledged object
// reads back byte-exact, nothing partial is listed, and no temp file or unreferenced blob remains.
// Runs the built daemon (services/walrus/dist), rebuilding it when the sources are newer.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { signV4 } from '@mallee/aws-protocol';
import { ACCOUNTS, credentialTable, tempDir } from './harness.js';

const repo = join(import.meta.dirname, '../../..');
const walrusMain = join(repo, 'services/walrus/dist/src/main.js');

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p, ext));
    else if (e.name.endsWith(ext)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

// Made in beforeAll: a run that filters this file's test out (the scale-out suite's -t) runs neither hook.
let home = '';
const children = new Set<ChildProcess>();
beforeAll(() => {
  home = tempDir('mallee-walrus-crash-');
});
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
});

async function spawnWalrus(): Promise<{ child: ChildProcess; url: string }> {
  const urlFile = join(home, 'run', 'walrus.url');
  rmSync(urlFile, { force: true });
  const child = spawn(process.execPath, [walrusMain, '--home', home, '--port', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MALLEE_WALRUS_CREDENTIALS: join(home, 'creds.json'), MALLEE_LOG_LEVEL: 'warn', MALLEE_BIND_ADDRESS: '127.0.0.1' },
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  for (let i = 0; i < 200; i++) {
    if (existsSync(urlFile)) return { child, url: readFileSync(urlFile, 'utf8').trim() };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('walrus did not start');
}

/** PUT signed as alice, streaming the body in small writes so the upload is spread over time. */
function put(url: string, path: string, body: Buffer): Promise<number> {
  const u = new URL(url);
  const a = ACCOUNTS.alice!;
  const s = signV4({ method: 'PUT', path, headers: { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: 'PUT', path, headers: { ...s.headers, 'content-length': String(body.length) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    let off = 0;
    const step = 128 * 1024;
    const pump = () => {
      if (off >= body.length) return void req.end();
      const piece = body.subarray(off, off + step);
      off += step;
      if (req.write(piece)) setTimeout(pump, 2);
      else req.once('drain', () => setTimeout(pump, 2));
    };
    pump();
  });
}

async function get(url: string, path: string): Promise<{ status: number; body: Buffer; text: string }> {
  const u = new URL(url);
  const a = ACCOUNTS.alice!;
  const s = signV4({ method: 'GET', path: path.split('?')[0]!, query: path.split('?')[1] ?? '', headers: { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false, payloadHash: 'UNSIGNED-PAYLOAD' });
  const res = await fetch(new URL(path, url), { headers: s.headers });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body, text: body.toString('utf8') };
}

it('kill -9 during 20 parallel uploads loses no acknowledged object and shows nothing partial', async () => {
  if (!existsSync(walrusMain) || newestMtime(join(repo, 'services/walrus/dist/src'), '.js') < newestMtime(join(repo, 'services/walrus/src'), '.ts')) {
    execFileSync('npx', ['tsc', '-b', 'services/walrus'], { cwd: repo, stdio: 'pipe' });
  }
  writeFileSync(join(home, 'creds.json'), JSON.stringify(credentialTable));
  let { child, url } = await spawnWalrus();
  const a = ACCOUNTS.alice!;
  const mk = signV4({ method: 'PUT', path: '/crash', headers: { host: new URL(url).host }, accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, region: 'mallee', service: 's3', doubleEncodePath: false });
  expect((await fetch(new URL('/crash', url), { method: 'PUT', headers: mk.headers })).status).toBe(200);

  const objects = Array.from({ length: 20 }, (_, i) => ({ key: `obj-${String(i).padStart(2, '0')}`, data: randomBytes((i % 5 + 1) * 1024 * 1024 + i * 977) }));
  const acknowledged = new Set<string>();
  const killedAfter = 8;
  let killed = false;
  const exited = new Promise((r) => child.once('exit', r));
  await Promise.all(
    objects.map(async (o) => {
      try {
        const status = await put(url, `/crash/${o.key}`, o.data);
        if (status === 200) acknowledged.add(o.key);
        if (acknowledged.size >= killedAfter && !killed) {
          killed = true;
          child.kill('SIGKILL');
        }
      } catch {
        // connection reset by the kill: not acknowledged
      }
    }),
  );
  if (!killed) child.kill('SIGKILL');
  await exited;
  // The kill must have interrupted uploads, or this test proves nothing.
  expect(acknowledged.size).toBeGreaterThanOrEqual(killedAfter);
  expect(acknowledged.size).toBeLessThan(objects.length);

  ({ child, url } = await spawnWalrus());
  for (const key of acknowledged) {
    const r = await get(url, `/crash/${key}`);
    expect(r.status, key).toBe(200);
    expect(createHash('sha256').update(r.body).digest('hex'), key).toBe(createHash('sha256').update(objects.find((o) => o.key === key)!.data).digest('hex'));
  }
  const list = await get(url, '/crash?list-type=2');
  const listed = [...list.text.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1]!);
  for (const key of acknowledged) expect(listed).toContain(key);
  for (const key of listed) {
    // Unacknowledged uploads that committed just before the kill may be listed, but only whole.
    const r = await get(url, `/crash/${key}`);
    expect(r.body.equals(objects.find((o) => o.key === key)!.data), key).toBe(true);
  }
  expect(readdirSync(join(home, 'walrus', 'tmp'))).toEqual([]);
  const blobs = readdirSync(join(home, 'walrus', 'data')).flatMap((d) => readdirSync(join(home, 'walrus', 'data', d)));
  expect(blobs.length).toBe(listed.length);
  child.kill('SIGTERM');
}, 120_000);
