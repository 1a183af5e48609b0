// The NC's image cache: an image is downloaded once (then served from the cache), checked against the
// SHA-256 and size the launch carries, and the cache stays within NC_CACHE_SIZE by evicting the least
// recently used images no guest or launch holds. A plain HTTP server stands in for Walrus here (the
// cache's own rules are under test; test/e2e/images.test.ts downloads from the real Walrus).
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageCache, ImageNotFoundError } from '../src/hypervisors/image-cache.js';

const MiB = 1024 * 1024;
const images = new Map<string, Buffer>();
const requests: string[] = [];
let server: Server;
let base: string;
let dir: string;
let inUse = new Set<string>();

beforeAll(async () => {
  for (const id of ['emi-aaaaaaaa', 'emi-bbbbbbbb', 'emi-cccccccc']) images.set(id, randomBytes(MiB));
  server = createServer((req, res) => {
    const id = (req.url ?? '').slice(1).split('?')[0]!;
    requests.push(id);
    const body = images.get(id);
    if (!body) {
      res.writeHead(403).end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => {
  server.close();
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mallee-nc-cache-'));
  requests.length = 0;
  inUse = new Set();
});

const source = (id: string, over: { sha256?: string; bytes?: number } = {}) => ({
  url: `${base}/${id}?X-Amz-Signature=x`,
  sha256: over.sha256 ?? createHash('sha256').update(images.get(id) ?? '').digest('hex'),
  bytes: over.bytes ?? images.get(id)?.length ?? 0,
});
const cacheOf = (maxMiB: number) => new ImageCache({ dir: join(dir, 'cache'), imagesDir: join(dir, 'images'), maxBytes: maxMiB * MiB, inUse: async () => inUse, log: pino({ level: 'silent' }) });
const cached = () => readdirSync(join(dir, 'cache')).filter((f) => !f.startsWith('.')).sort();

describe('image cache', () => {
  it('downloads an image once, verified, and serves the cached file afterwards', async () => {
    const cache = cacheOf(100);
    const path = await cache.get('emi-aaaaaaaa', { source: source('emi-aaaaaaaa') });
    cache.release('emi-aaaaaaaa');
    expect(readFileSync(path).equals(images.get('emi-aaaaaaaa')!)).toBe(true);
    await cache.get('emi-aaaaaaaa', { source: source('emi-aaaaaaaa') });
    cache.release('emi-aaaaaaaa');
    expect(requests).toEqual(['emi-aaaaaaaa']);
    expect(await cache.stats()).toMatchObject({ downloads: 1, hits: 1, entries: 1, bytes: MiB });
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an image that is not the registered one, or a URL Walrus refuses, keeping nothing', async () => {
    const cache = cacheOf(100);
    await expect(cache.get('emi-aaaaaaaa', { source: source('emi-aaaaaaaa', { sha256: '0'.repeat(64) }) })).rejects.toThrow(/not the registered image/);
    await expect(cache.get('emi-dddddddd', { source: { url: `${base}/emi-dddddddd`, sha256: '0'.repeat(64), bytes: 1 } })).rejects.toThrow(/AccessDenied Request has expired/);
    expect(cached()).toEqual([]);
    await expect(cache.get('emi-eeeeeeee')).rejects.toBeInstanceOf(ImageNotFoundError);
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps within NC_CACHE_SIZE by evicting the least recently used image nothing uses', async () => {
    const cache = cacheOf(2);
    for (const id of ['emi-aaaaaaaa', 'emi-bbbbbbbb']) {
      await cache.get(id, { source: source(id) });
      cache.release(id);
      await new Promise((r) => setTimeout(r, 20));
    }
    // a is used again: b is now the least recently used.
    await cache.get('emi-aaaaaaaa', { source: source('emi-aaaaaaaa') });
    cache.release('emi-aaaaaaaa');
    await cache.get('emi-cccccccc', { source: source('emi-cccccccc') });
    cache.release('emi-cccccccc');
    expect(cached()).toEqual(['emi-aaaaaaaa', 'emi-cccccccc']);
    expect((await cache.stats()).evictions).toBe(1);
    rmSync(dir, { recursive: true, force: true });
  });

  it('never evicts an image a guest uses or a launch holds, even over the bound', async () => {
    const cache = cacheOf(1);
    await cache.get('emi-aaaaaaaa', { source: source('emi-aaaaaaaa') }); // held by a launch (not released)
    inUse = new Set(['emi-bbbbbbbb']);
    mkdirSync(join(dir, 'images'), { recursive: true });
    writeFileSync(join(dir, 'images', 'emi-bbbbbbbb'), images.get('emi-bbbbbbbb')!);
    await cache.get('emi-bbbbbbbb');
    cache.release('emi-bbbbbbbb');
    await cache.get('emi-cccccccc', { source: source('emi-cccccccc') });
    cache.release('emi-cccccccc');
    expect(cached()).toEqual(['emi-aaaaaaaa', 'emi-bbbbbbbb', 'emi-cccccccc']);
    // Once released and unused, the next fill makes room.
    cache.release('emi-aaaaaaaa');
    inUse = new Set();
    rmSync(join(dir, 'cache', 'emi-cccccccc'));
    await cache.get('emi-cccccccc', { source: source('emi-cccccccc') });
    expect(cached()).toEqual(['emi-cccccccc']);
    expect(existsSync(join(dir, 'cache', 'emi-aaaaaaaa'))).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});
