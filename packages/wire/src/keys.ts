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

/**
 * A daemon's run/<svc>.pid or run/<svc>.url, written whole (a temp file renamed over it): `mallee up`, supervisors
 * and tests read them as soon as they exist, and a plain write let them read one empty (an "Invalid URL" in a unit
 * test). Daemons write the pid before the url, so a url that is there means its pid is too.
 */
export function writeRunFile(file: string, line: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, line + '\n', { mode: 0o644 });
  renameSync(tmp, file);
}
