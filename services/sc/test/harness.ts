// An SC for tests: in-process, on port 0, with an in-process Walrus (static credentials for the
// block-storage account) and the host's real tgtd. Its wire client signs as the clc would.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type MalleeConfig } from '@mallee/config';
import { generateKey, WireClient, writeKeyFile } from '@mallee/wire';
import { startDaemon as startWalrus, staticCredentials, type RunningDaemon as Walrus } from '@mallee/walrus';
import { blockStorageFile, scKeyFile, startDaemon, tgt, type RunningDaemon } from '../src/index.js';

export const BLOCKSTORAGE = { accessKeyId: 'AKIABLOCKSTORAGE0001', secretAccessKey: 'blockstorage/secret+key000000000000000', accountId: '000000000002', accountName: 'blockstorage' };

/** tgtd answers here (test/run-all.sh starts it with deploy/lib.sh ensure_tgt). */
export function tgtHere(): boolean {
  try {
    execFileSync('tgtadm', ['--lld', 'iscsi', '--mode', 'target', '--op', 'show'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface TestSc {
  home: string;
  walrus: Walrus;
  sc: RunningDaemon;
  client: WireClient;
  key: string;
  config: MalleeConfig;
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** `home`: the SC's home (a given, empty directory, e.g. a small tmpfs; its Walrus then lives elsewhere). */
export async function startTestSc(conf: Record<string, string | number> = {}, opts: { home?: string } = {}): Promise<TestSc> {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'mallee-sc-'));
  const walrusHome = opts.home ? mkdtempSync(join(tmpdir(), 'mallee-sc-walrus-')) : join(home, 'walrus');
  const config = loadConfig({ env: {}, overrides: { LOG_LEVEL: 'silent', BIND_ADDRESS: '127.0.0.1', MALLEE_HOME: home, ...conf } });
  const walrus = await startWalrus({ home: walrusHome, config, port: 0, credentials: staticCredentials({ [BLOCKSTORAGE.accessKeyId]: BLOCKSTORAGE }) });
  const key = generateKey();
  writeKeyFile(scKeyFile(home), key);
  writeFileSync(blockStorageFile(home), JSON.stringify({ walrusUrl: walrus.url, bucket: 'mallee-snapshots', accessKeyId: BLOCKSTORAGE.accessKeyId, secretAccessKey: BLOCKSTORAGE.secretAccessKey }));
  const t: TestSc = {
    home, walrus, key, config,
    sc: await startDaemon({ home, config, port: 0 }),
    client: undefined as unknown as WireClient,
    restart: async () => {
      await t.sc.close();
      t.sc = await startDaemon({ home, config, port: 0 });
      t.client = new WireClient({ url: t.sc.url, from: 'clc', key });
    },
    close: async () => {
      // Leave nothing in the shared tgtd: every target and account with this SC's prefix goes.
      const prefix = t.sc.prefix;
      await t.sc.close();
      for (const target of await tgt.targets()) if (target.iqn.includes(`:${prefix}.`)) await tgt.deleteTarget(target.tid);
      for (const a of await tgt.accounts()) if (a.startsWith(`${prefix}.`)) await tgt.deleteAccount(a);
      await walrus.close();
      rmSync(walrusHome, { recursive: true, force: true });
      if (!opts.home) rmSync(home, { recursive: true, force: true });
    },
  };
  t.client = new WireClient({ url: t.sc.url, from: 'clc', key });
  return t;
}
