// Files root writes into a home another user owns (an installed host: /var/lib/mallee belongs to
// "mallee", the clc and Walrus run as it): handed to the home's owner, or those daemons could not read
// the cloud's private key, the keys the CLI installs or a restored database.
import { chownSync, existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Home } from './home.js';

/** The home's owner when we are root and it is someone else; otherwise nothing to do. */
export function homeOwner(home: Home): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0 || !existsSync(home.dir)) return undefined;
  const st = statSync(home.dir);
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

const CLI_FILES = ['eucarc', 'euca2ools.ini', 'aws-config', 'aws-credentials', 'test-image.json'];

function adopt(path: string, owner: { uid: number; gid: number }, recursive: boolean): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (st.isSymbolicLink()) return;
  if (st.uid === 0) chownSync(path, owner.uid, owner.gid);
  if (recursive && st.isDirectory()) for (const name of readdirSync(path)) adopt(join(path, name), owner, true);
}

/** After a command: root-owned files the CLI writes (keys/, credentials; with `all`, everything) go to the home's owner. */
export function adoptHomeFiles(home: Home, opts: { all?: boolean } = {}): void {
  const owner = homeOwner(home);
  if (!owner) return;
  if (opts.all) return adopt(home.dir, owner, true);
  adopt(home.keysDir, owner, true);
  for (const f of CLI_FILES) adopt(join(home.dir, f), owner, false);
}
