// Starting and stopping Walrus: walrus.sqlite, the object store (with crash recovery), the S3
// endpoint, run files. Used by main.ts, the all-in-one launcher and the tests (in-process, port 0).
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { CredentialLookup } from '@mallee/aws-protocol';
import { clcUrlOf, type MalleeConfig } from '@mallee/config';
import { openDaemonDatabase } from '@mallee/store';
import { clcPropertyReader, walrusProperties } from '@mallee/properties';
import { readKeyFile, walrus, writeRunFile } from '@mallee/wire';
import { cachedLookup, clcLookup } from './credentials.js';
import { DecryptedImageCache } from './images/decrypt.js';
import { clcCertificates, imageLinkHandlers, manifestVerifier, type CertificateSource } from './images/link.js';
import { buildServer } from './server.js';
import { configuredBlobs } from './store/backend.js';
import { FsObjectStore, walrusDataRoot } from './store/fs-store.js';
import { migrations } from './store/migrations.js';
import type { Quotas } from './store/types.js';

export interface StartOptions {
  home: string;
  config: MalleeConfig;
  /** Overrides WALRUS_PORT (0 = any free port; the real one is in the returned url and run/walrus.url). */
  port?: number;
  logger?: Logger;
  /** Who signed a request; default: ask the clc (LookupAccessKey) at clcUrl with keys/walrus.key. */
  credentials?: CredentialLookup;
  /** Default http://<BIND_ADDRESS>:<CLC_PORT>. */
  clcUrl?: string;
  /** Extra host names for virtual-host addressing (bucket.<domain>); localhost and this host's name always count. */
  virtualHostDomains?: string[];
  maxObjectSize?: number;
  /** The cloud's private key (PEM) for GetDecryptedImage; default <home>/keys/cloud-pk.pem, read per build. */
  cloudKeyFile?: string;
  /** Who may sign an account's manifests; default: ask the clc (GetCertificates) with keys/walrus.key. */
  certificates?: CertificateSource;
  /** Fixed quotas instead of the walrus.* cloud properties (tests). */
  quotas?: Quotas;
  /** A fixed bound (bytes) on the decrypted-image cache instead of walrus.storagemaxcachesizeinmb (tests). */
  imageCacheBytes?: number;
}

export interface RunningDaemon {
  url: string;
  store: FsObjectStore;
  close(): Promise<void>;
}

export function walrusKeyFile(home: string): string {
  return join(home, 'keys', 'walrus.key');
}

export async function startDaemon(opts: StartOptions): Promise<RunningDaemon> {
  const { home, config } = opts;
  const log = opts.logger ?? pino({ name: 'walrus', level: config.LOG_LEVEL });
  const runDir = join(home, 'run');
  mkdirSync(runDir, { recursive: true });

  const db = openDaemonDatabase(config.DB_URL, join(home, 'walrus.sqlite'), 'walrus', { migrations });
  const clcUrl = opts.clcUrl ?? clcUrlOf(config);
  const keyFile = walrusKeyFile(home);
  const linkKey = () => {
    const k = readKeyFile(keyFile);
    if (k === undefined) throw new Error(`no ${keyFile}: register this Walrus with the clc (mallee register-walrus URL) and install the key it prints`);
    return k;
  };
  // Quotas are cloud properties (walrus.storagemax…, `mallee property`), read from the clc and cached;
  // until the clc answers, this host's mallee.conf WALRUS_MAX_* settings (the properties' defaults).
  const properties = clcPropertyReader({ clcUrl, from: walrus.WALRUS_SENDER, key: linkKey, prefix: 'walrus.', config, ttlMs: 10_000 });
  const MiB = 1024 * 1024;
  const quotas = opts.quotas ?? (() => {
    void properties.get(walrusProperties.maxBucketsPerAccount); // refreshes in the background once the cached set is stale
    return {
      maxBucketsPerAccount: properties.peek(walrusProperties.maxBucketsPerAccount),
      maxBucketBytes: properties.peek(walrusProperties.maxBucketSizeMb) * MiB,
      maxAccountBytes: properties.peek(walrusProperties.maxAccountSizeMb) * MiB,
    };
  });
  const blobs = await configuredBlobs(config, home, log).catch((err: unknown) => {
    db.close();
    throw err;
  });
  const store = new FsObjectStore({ root: walrusDataRoot(home), db, quotas, ...(blobs ? { blobs } : {}) });
  const recovered = store.recover();
  if (recovered.tempFiles + recovered.orphanBlobs > 0) log.info(recovered, 'removed leftovers of interrupted writes');

  const credentials = opts.credentials ?? cachedLookup(clcLookup({ clcUrl, key: linkKey }));

  const cloudKeyFile = opts.cloudKeyFile ?? join(home, 'keys', 'cloud-pk.pem');
  const cloudCertFile = join(dirname(cloudKeyFile), 'cloud-cert.pem');
  const readIfThere = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : undefined);
  const images = new DecryptedImageCache({
    store,
    dir: join(walrusDataRoot(home), 'images'),
    cloudKey: () => readIfThere(cloudKeyFile),
    verify: manifestVerifier(opts.certificates ?? clcCertificates({ clcUrl, key: linkKey }), () => readIfThere(cloudCertFile)),
    maxBytes: () => {
      if (opts.imageCacheBytes !== undefined) return opts.imageCacheBytes;
      void properties.get(walrusProperties.maxCacheSizeMb); // refreshes in the background once stale
      return properties.peek(walrusProperties.maxCacheSizeMb) * MiB;
    },
    log: log.child({ component: 'images' }),
  });
  const app = buildServer({
    logger: log,
    store,
    credentials,
    region: config.REGION,
    images,
    wire: { keyFor: (from) => (from === walrus.CLC_SENDER ? readKeyFile(keyFile) : undefined), handlers: imageLinkHandlers({ store, images }) },
    virtualHostDomains: [...new Set(['localhost', hostname(), ...(opts.virtualHostDomains ?? [])])],
    ...(opts.maxObjectSize !== undefined ? { maxObjectSize: opts.maxObjectSize } : {}),
  });
  let url: string;
  try {
    url = await app.listen({ port: opts.port ?? config.WALRUS_PORT, host: config.BIND_ADDRESS });
  } catch (err) {
    await app.close();
    db.close();
    throw err;
  }
  writeRunFile(join(runDir, 'walrus.pid'), String(process.pid));
  writeRunFile(join(runDir, 'walrus.url'), url);
  log.info({ url, home }, 'walrus listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    store,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        blobs?.close();
        db.close();
        rmSync(join(runDir, 'walrus.url'), { force: true });
        rmSync(join(runDir, 'walrus.pid'), { force: true });
      })()),
  };
}
