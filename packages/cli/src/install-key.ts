// Placing a key the clc issued into the home of the component that reads it (`register-cluster --cc-home`,
// `register-nodes --nc-home`, `register-walrus --walrus-home`, `register-sc --sc-home`): what an operator
// would otherwise copy by hand from the printed line. The file is 0600 in keys/ (0700), and when root
// writes into a home another user owns (Walrus runs as the mallee user) it is handed to that owner.
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { writeKeyFile } from '@mallee/wire';
import { homeAt, type Home } from './home.js';
import { adoptHomeFiles } from './ownership.js';

export function componentHome(dir: string): Home {
  return homeAt(resolve(dir));
}

/** Write the key as `file` of the component's home (keys/…, mode 0600), owned by the home's owner. */
export function installKey(home: Home, file: string, key: string): void {
  mkdirSync(home.keysDir, { recursive: true, mode: 0o700 });
  writeKeyFile(file, key);
  adoptHomeFiles(home);
}

/** Walrus decrypts image bundles with the cloud's key pair: a Walrus home other than the clc's gets a copy. */
export function copyCloudKeyPair(from: Home, to: Home): string[] {
  if (resolve(from.dir) === resolve(to.dir)) return [];
  const copied: string[] = [];
  mkdirSync(to.keysDir, { recursive: true, mode: 0o700 });
  for (const [src, dst] of [[from.cloudPrivateKey, to.cloudPrivateKey], [from.cloudCert, to.cloudCert]] as const) {
    if (!existsSync(src)) continue;
    copyFileSync(src, dst);
    chmodSync(dst, 0o600);
    copied.push(dst);
  }
  adoptHomeFiles(to);
  return copied;
}
