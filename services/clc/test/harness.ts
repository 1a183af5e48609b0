// A whole small cloud in-process for the clc's tests: a real nc (simulated hypervisor) and cc, and
// the clc, each on port 0 with a temp home, registered over the admin wire ops as `mallee up` does;
// plus a SigV4 EC2 client per account.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { loadConfig, type ConfigKey } from '@mallee/config';
import { signV4 } from '@mallee/aws-protocol';
import { WireClient, admin, readKeyFile, writeKeyFile, type Operation } from '@mallee/wire';
import { startDaemon as startNc, nodeKeyFile } from '@mallee/nc';
import { startDaemon as startCc, cloudKeyFile } from '@mallee/cc';
import { adminKeyFile, startDaemon as startClc, type RunningDaemon } from '../src/index.js';
import { FakeCc } from './fake-cc.js';
import { startBundler, type Bundler } from './images-harness.js';

type Overrides = Partial<Record<ConfigKey, string | number>>;

export const testConfig = (overrides: Overrides = {}) =>
  loadConfig({ env: {}, overrides: { HYPERVISOR: 'simulated', LOG_LEVEL: 'silent', BIND_ADDRESS: '127.0.0.1', SIM_BOOT_DELAY: 50, POLL_INTERVAL: 3600, ...overrides } });

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => name === 'item' });

export interface Ec2Reply { status: number; body: string; xml: Record<string, unknown>; code?: string }

export class Ec2 {
  constructor(readonly url: string, readonly accessKeyId: string, readonly secretAccessKey: string, readonly version = '2016-11-15') {}

  withVersion(version: string): Ec2 {
    return new Ec2(this.url, this.accessKeyId, this.secretAccessKey, version);
  }

  async call(action: string, params: Record<string, string | number> = {}): Promise<Ec2Reply> {
    const form = new URLSearchParams({ Action: action, Version: this.version, ...Object.fromEntries(Object.entries(params).map(([k, v]) => [k, String(v)])) });
    const body = form.toString();
    const u = new URL(this.url);
    const signed = signV4({
      method: 'POST', path: '/', headers: { host: u.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body,
      accessKeyId: this.accessKeyId, secretAccessKey: this.secretAccessKey, region: 'mallee', service: 'ec2',
    });
    const res = await fetch(new URL('/', this.url), { method: 'POST', headers: signed.headers, body });
    const text = await res.text();
    const doc = parser.parse(text) as Record<string, Record<string, unknown>>;
    const root = Object.values(doc).find((v) => typeof v === 'object') ?? {};
    const code = (root as { Errors?: { Error?: { Code?: string } } }).Errors?.Error?.Code;
    return { status: res.status, body: text, xml: root, ...(code ? { code } : {}) };
  }

  async ok(action: string, params: Record<string, string | number> = {}): Promise<Record<string, unknown>> {
    const r = await this.call(action, params);
    if (r.status !== 200) throw new Error(`${action} → ${r.status} ${r.code ?? ''}: ${r.body.slice(0, 400)}`);
    return r.xml;
  }
}

type Item = Record<string, unknown>;
export const items = (v: unknown): Item[] => ((v as { item?: Item[] } | undefined)?.item ?? []) as Item[];

export function instancesOf(xml: Record<string, unknown>): { id: string; state: string; reservationId: string; item: Item }[] {
  return items(xml.reservationSet).flatMap((r) => items(r.instancesSet).map((i) => ({
    id: String(i.instanceId), state: String((i.instanceState as Item).name), reservationId: String(r.reservationId), item: i,
  })));
}

export interface TestCloud {
  clcHome: string;
  url: string;
  clc: RunningDaemon;
  /** The admin account's client. */
  ec2: Ec2;
  admin<Req, Res>(op: Operation<Req, Res>, req: Req): Promise<Res>;
  /** A new account and its client. */
  account(name: string): Promise<{ ec2: Ec2; accountId: string; accountName: string }>;
  /** The cloud's Walrus (in-process, registered). */
  walrusUrl: string;
  /** Bundles a small image as `who` (default: the admin account), uploads it to Walrus and registers it; returns its id. */
  registerImage(name: string, who?: { ec2: Ec2; accountId: string; accountName: string }, opts?: Parameters<Bundler['register']>[2]): Promise<string>;
  bundler: Bundler;
  /** Poll the nc from the cc, then the cc from the clc. */
  poll(): Promise<void>;
  /** Stop the clc and start it again on the same home (nothing else restarts). */
  restartClc(opts?: { beforeStart?: () => void | Promise<void> }): Promise<void>;
  /** Stop the cc and start it again on the same home and port (its nodes keep running). */
  restartCc(): Promise<void>;
  stopCluster(): Promise<void>;
  stop(): Promise<void>;
}

export interface CloudOptions { cluster?: boolean; clc?: Overrides; cc?: Overrides; nc?: Overrides; clcOptions?: { imageUrlTtl?: number } }

export async function startTestCloud(opts: CloudOptions = {}): Promise<TestCloud> {
  const dirs: string[] = [];
  const temp = (p: string) => {
    const d = mkdtempSync(join(tmpdir(), p));
    dirs.push(d);
    return d;
  };
  const clcHome = temp('mallee-clc-');
  const clcConfig = testConfig(opts.clc);
  let clc = await startClc({ home: clcHome, config: clcConfig, port: 0, ...opts.clcOptions });
  const port = Number(new URL(clc.url).port);
  const adminClient = () => new WireClient({ url: clc.url, from: admin.ADMIN_SENDER, key: readKeyFile(adminKeyFile(clcHome))! });
  const adminCall = <Req, Res>(op: Operation<Req, Res>, req: Req) => adminClient().call(op, req);

  let nc: { close(): Promise<void> } | undefined;
  let ccd: { url: string; close(): Promise<void>; pollNow(): Promise<void> } | undefined;
  const ccHome = temp('mallee-cc-');
  if (opts.cluster ?? true) {
    const ncHome = temp('mallee-nc-');
    nc = await startNc({ home: ncHome, config: testConfig({ SIM_CORES: 4, SIM_MEM: 4096, SIM_DISK: 100, ...opts.nc }), port: 0, monitorIntervalMs: 100 });
    ccd = await startCc({ home: ccHome, config: testConfig(opts.cc), port: 0 });
    const { key } = await adminCall(admin.RegisterCluster, { name: 'zone-a', url: ccd.url });
    writeKeyFile(cloudKeyFile(ccHome), key);
    const node = await adminCall(admin.RegisterNodeAdmin, { cluster: 'zone-a', node: 'node1', url: (nc as unknown as { url: string }).url });
    writeKeyFile(nodeKeyFile(ncHome), node.key);
    await ccd.pollNow();
    await clc.pollNow();
  }
  const creds = await adminCall(admin.GetCredentials, { accountName: 'eucalyptus' });
  const bundler = await startBundler({ clcHome, url: clc.url, admin: adminCall }, testConfig());
  const adminEc2 = new Ec2(clc.url, creds.accessKeyId, creds.secretAccessKey);
  const cloud: TestCloud = {
    clcHome,
    get url() {
      return clc.url;
    },
    get clc() {
      return clc;
    },
    ec2: adminEc2,
    admin: adminCall,
    async account(name) {
      const c = await adminCall(admin.CreateAccount, { name });
      return { ec2: new Ec2(clc.url, c.accessKeyId, c.secretAccessKey), accountId: c.accountId, accountName: name };
    },
    walrusUrl: bundler.walrusUrl,
    bundler,
    registerImage: (name, who, o) => bundler.register(who ?? { ec2: adminEc2, accountId: creds.accountId, accountName: 'eucalyptus' }, name, o),
    async poll() {
      await ccd?.pollNow();
      await clc.pollNow();
    },
    async restartClc(o = {}) {
      await clc.close();
      await o.beforeStart?.();
      clc = await startClc({ home: clcHome, config: clcConfig, port, ...opts.clcOptions });
    },
    async restartCc() {
      const port = Number(new URL(ccd!.url).port);
      await ccd!.close();
      ccd = await startCc({ home: ccHome, config: testConfig(opts.cc), port });
    },
    async stopCluster() {
      await ccd?.close();
      await nc?.close();
      ccd = undefined;
      nc = undefined;
    },
    async stop() {
      await bundler.close();
      await clc.close();
      await ccd?.close();
      await nc?.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
  return cloud;
}

/** Poll until check() returns a value, or fail after timeoutMs. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** A clc whose one zone ("zone-a") is served by a FakeCc the test controls. */
export async function startFakeCloud(opts: Pick<CloudOptions, 'clc' | 'clcOptions'> = {}): Promise<TestCloud & { cc: FakeCc }> {
  const cloud = await startTestCloud({ cluster: false, ...opts });
  const fake = new FakeCc();
  await fake.start();
  const { key } = await cloud.admin(admin.RegisterCluster, { name: 'zone-a', url: fake.url });
  fake.key = key;
  await cloud.poll();
  const stop = cloud.stop;
  return Object.assign(cloud, {
    cc: fake,
    stop: async () => {
      await stop();
      await fake.stop();
    },
  });
}
