// The CLI's link to the clc: admin wire operations signed with <home>/keys/admin.key (sender "admin").
import { readFileSync } from 'node:fs';
import { ZodError } from 'zod';
import { WireClient, WireError, admin, readKeyFile, type Operation } from '@mallee/wire';
import type { Home } from './home.js';

/** A failure the user can act on: the message says what to do next. */
export class CliError extends Error {
  constructor(message: string, public readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export function clcUrl(home: Home): string {
  let url: string;
  try {
    url = readFileSync(home.urlFile('clc'), 'utf8').trim();
  } catch {
    throw new CliError(`no clc is running in ${home.dir} (no ${home.urlFile('clc')}): start the cloud with \`mallee up --home ${home.dir}\``);
  }
  return url;
}

export interface AdminLink {
  url: string;
  call<Req, Res>(op: Operation<Req, Res>, req: Req): Promise<Res>;
}

export function adminLink(home: Home, timeoutMs = 30_000): AdminLink {
  const url = clcUrl(home);
  const key = readKeyFile(home.adminKey);
  if (!key) throw new CliError(`${home.adminKey} is missing or unreadable: the clc writes it at its first start (run as the user owning ${home.dir}, or \`mallee up --home ${home.dir}\`)`);
  const client = new WireClient({ url, from: admin.ADMIN_SENDER, key, timeoutMs });
  return {
    url,
    call: async (op, req) => {
      try {
        return await client.call(op, req);
      } catch (err) {
        if (err instanceof WireError && err.code === 'ServiceUnavailable')
          throw new CliError(`the clc at ${url} does not answer: check \`mallee status --home ${home.dir}\` and ${home.logFile('clc')}, or restart with \`mallee up --home ${home.dir}\``);
        if (err instanceof WireError) throw new CliError(`${op.name} failed: ${err.code}: ${err.message}`);
        if (err instanceof ZodError) throw new CliError(`${op.name}: ${err.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ')}`, 2);
        throw err;
      }
    },
  };
}
