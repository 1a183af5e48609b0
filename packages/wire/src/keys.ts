// Component keys live as files (mode 0600) in the owning daemon's home, like Eucalyptus's keys dir.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';

export function generateKey(): string {
  return randomBytes(32).toString('hex');
}

export function writeKeyFile(file: string, key: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, key + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

export function readKeyFile(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  const k = readFileSync(file, 'utf8').trim();
  return k === '' ? undefined : k;
}
