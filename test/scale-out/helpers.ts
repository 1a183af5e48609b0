// What the scale-out suites and bench/scale-out.ts share: a fresh PostgreSQL database per cloud, and a
// second clc process on a cloud's database (its own home and port, the first clc's keys).
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgDatabase } from '@mallee/store';
import { eventually, freePortBase, type Cloud } from '../e2e/helpers/cloud.js';

const repo = new URL('../..', import.meta.url).pathname;

/** Creates database `name` on the server of `serverUrl` and answers its URL. */
export function freshDatabase(serverUrl: string, name: string): string {
  const admin = new PgDatabase({ url: serverUrl, schema: 'public' });
  admin.exec(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).exec(`CREATE DATABASE ${name}`);
  admin.close();
  return serverUrl.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
}

export function dropDatabase(serverUrl: string, name: string): void {
  const admin = new PgDatabase({ url: serverUrl, schema: 'public' });
  admin.exec(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  admin.close();
}

export interface SecondClc {
  url: string;
  stop(): void;
}

/** Starts another clc process of `cloud` on `dbUrl`; env adds mallee.conf keys (MALLEE_<KEY>). */
export async function startSecondClc(cloud: Cloud, dbUrl: string, env: Record<string, string> = {}): Promise<SecondClc> {
  const home = mkdtempSync(join(tmpdir(), 'mallee-clc2-'));
  cpSync(join(cloud.home, 'keys'), join(home, 'keys'), { recursive: true });
  const port = (await freePortBase()) + 1;
  const child: ChildProcess = spawn(process.execPath, [join(repo, 'services/clc/dist/src/main.js'), '--home', home, '--conf', join(cloud.home, 'mallee.conf')], {
    env: { ...process.env, ...env, MALLEE_DB_URL: dbUrl, MALLEE_CLC_PORT: String(port), MALLEE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const urlFile = join(home, 'run', 'clc.url');
  const url = await eventually('the second clc listening', async () => {
    if (child.exitCode !== null) throw new Error(`the second clc exited: ${stderr}`);
    return existsSync(urlFile) ? readFileSync(urlFile, 'utf8').trim() : undefined;
  }, 60_000);
  return {
    url,
    stop: () => {
      child.kill('SIGTERM');
      rmSync(home, { recursive: true, force: true });
    },
  };
}
