// `mallee backup` / `mallee restore`: the cloud's own state out of a home and back into one. Databases
// are copied with SQLite's online backup API while the daemons run (each copy is one consistent
// snapshot of its database), with the keys and mallee.conf; `--objects` adds the Walrus blobs the
// snapshot refers to. A manifest lists every file with its SHA-256; restore checks them, refuses to
// write under running daemons, and moves anything it would replace aside instead of deleting it.
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { openDatabase, snapshotDatabaseFile } from '@mallee/store';
import { BUILD_WIRE_VERSION } from '@mallee/wire';
import { blobRelativePath, referencedBlobIds } from '@mallee/walrus/backup';
import type { Command } from 'commander';
import { CliError } from './admin.js';
import { formatBytes, progress, type Progress } from './progress.js';
import { serviceState } from './daemons.js';
import { SERVICES, type Home, type Service } from './home.js';
import type { CommandKit } from './property.js';

export const BACKUP_FORMAT = 1;
/** Every daemon database a home may hold (the sc's once it exists). */
const DATABASES = ['clc', 'walrus', 'sc', 'cc', 'nc'] as const;

export interface ManifestFile {
  path: string;
  bytes: number;
  sha256: string;
  /** For databases: the daemon and the schema (newest migration) it was at. */
  service?: string;
  schemaVersion?: number;
}

export interface BackupManifest {
  format: number;
  createdAt: string;
  host: string;
  sourceHome: string;
  wireVersion: number;
  objects: boolean;
  files: ManifestFile[];
  /** Blobs the Walrus snapshot refers to that were deleted before they could be copied. */
  missingObjects?: number;
}

type Say = (line: string) => void;

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function timestamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function defaultBackupDir(): string {
  return resolve(`mallee-backup-${timestamp()}`);
}

/** Back up a home (daemons may be running) into outDir, which must not exist or be empty. */
export async function backupHome(home: Home, outDir: string, opts: { objects?: boolean; say?: Say } = {}): Promise<BackupManifest> {
  const say = opts.say ?? (() => {});
  if (!existsSync(join(home.dir, 'clc.sqlite')) && !DATABASES.some((d) => existsSync(join(home.dir, `${d}.sqlite`)))) {
    throw new CliError(`${home.dir} holds no Mallee databases: is it the right --home?`);
  }
  if (existsSync(outDir) && readdirSync(outDir).length) throw new CliError(`${outDir} exists and is not empty: give a new --out directory`);
  const work = `${outDir}.partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const files: ManifestFile[] = [];
  const add = (rel: string, extra: Partial<ManifestFile> = {}) => {
    const abs = join(work, rel);
    files.push({ path: rel, bytes: statSync(abs).size, sha256: sha256(abs), ...extra });
  };

  let walrusCopy: string | undefined;
  for (const svc of DATABASES) {
    const source = join(home.dir, `${svc}.sqlite`);
    if (!existsSync(source)) continue;
    const rel = `${svc}.sqlite`;
    let bar: Progress | undefined; // on stderr, for databases big enough to take a while
    const { pages, schemaVersion } = await snapshotDatabaseFile(source, join(work, rel), (done, total) => {
      if (total > 2000) (bar ??= progress({ label: `copying ${rel} (pages)`, total, unit: 'items' })).update(done);
    });
    bar?.done();
    add(rel, { service: svc, schemaVersion });
    say(`${rel}: ${pages} pages, ${formatBytes(files.at(-1)!.bytes)}, schema ${schemaVersion}${serviceState(home, svc as Service).running ? ' (live snapshot)' : ''}`);
    if (svc === 'walrus') walrusCopy = join(work, rel);
  }

  for (const name of existsSync(home.keysDir) ? readdirSync(home.keysDir) : []) {
    const src = join(home.keysDir, name);
    if (!statSync(src).isFile() || name.includes('.tmp-')) continue;
    mkdirSync(join(work, 'keys'), { recursive: true, mode: 0o700 });
    copyFileSync(src, join(work, 'keys', name));
    chmodSync(join(work, 'keys', name), 0o600);
    add(join('keys', name));
  }
  if (files.some((f) => f.path.startsWith('keys/'))) say(`keys: ${files.filter((f) => f.path.startsWith('keys/')).length} files (keep this backup as secret as the home)`);
  if (existsSync(home.conf)) {
    copyFileSync(home.conf, join(work, 'mallee.conf'));
    add('mallee.conf');
  }

  let missingObjects = 0;
  if (opts.objects && walrusCopy) {
    const db = openDatabase(walrusCopy, { migrations: [], readonly: true });
    const ids = referencedBlobIds(db);
    db.close();
    let bytes = 0;
    let copied = 0;
    const bar = ids.length > 100 ? progress({ label: 'copying objects', total: ids.length, unit: 'items' }) : undefined;
    for (const id of ids) {
      bar?.advance(1);
      const rel = blobRelativePath(id);
      const src = join(home.dir, rel);
      if (!existsSync(src)) {
        missingObjects++; // deleted since the snapshot
        continue;
      }
      mkdirSync(dirname(join(work, rel)), { recursive: true });
      copyFileSync(src, join(work, rel), constants.COPYFILE_FICLONE);
      add(rel);
      bytes += files.at(-1)!.bytes;
      copied++;
    }
    bar?.done();
    say(`objects: ${copied} blobs, ${formatBytes(bytes)}${missingObjects ? `; ${missingObjects} deleted after the snapshot (their objects will read as missing)` : ''}`);
  }

  const manifest: BackupManifest = {
    format: BACKUP_FORMAT, createdAt: new Date().toISOString(), host: hostname(), sourceHome: home.dir, wireVersion: BUILD_WIRE_VERSION,
    objects: Boolean(opts.objects && walrusCopy), files, ...(missingObjects ? { missingObjects } : {}),
  };
  writeFileSync(join(work, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
  if (existsSync(outDir)) rmSync(outDir, { recursive: true });
  renameSync(work, outDir);
  return manifest;
}

export function readManifest(dir: string): BackupManifest {
  const file = join(dir, 'manifest.json');
  if (!existsSync(file)) throw new CliError(`${dir} is not a Mallee backup (no manifest.json)`);
  const m = JSON.parse(readFileSync(file, 'utf8')) as BackupManifest;
  if (m.format !== BACKUP_FORMAT) throw new CliError(`${dir} is a backup in format ${m.format}; this mallee reads format ${BACKUP_FORMAT}`);
  return m;
}

/** Every file present with the size and SHA-256 the manifest recorded. */
export function verifyBackup(dir: string, m: BackupManifest): void {
  const bad = m.files.filter((f) => {
    const abs = join(dir, f.path);
    return !existsSync(abs) || statSync(abs).size !== f.bytes || sha256(abs) !== f.sha256;
  });
  if (bad.length) throw new CliError(`the backup in ${dir} is damaged: ${bad.slice(0, 5).map((f) => f.path).join(', ')}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''} missing or changed`);
}

/** mallee.conf paths inside the backed-up home, moved to the new one. */
function relocateConf(text: string, from: string, to: string): string {
  if (from === to) return text;
  return text.split('\n').map((line) => {
    const m = /^(\s*(?:export\s+)?[A-Z_][A-Z0-9_]*\s*=\s*"?)([^"]*)("?.*)$/.exec(line);
    if (!m || !(m[2] === from || m[2]!.startsWith(from + '/'))) return line;
    return m[1] + to + m[2]!.slice(from.length) + m[3];
  }).join('\n');
}

export interface RestoreResult {
  restored: string[];
  movedAside?: string;
  keptConf: boolean;
}

/** Restore a backup into a home whose daemons are stopped; with `force`, what it replaces goes to <home>/pre-restore-<time>/. */
export function restoreHome(dir: string, home: Home, opts: { force?: boolean; say?: Say } = {}): RestoreResult {
  const say = opts.say ?? (() => {});
  const m = readManifest(dir);
  const running = [...new Set([...SERVICES, ...DATABASES])].filter((svc) => serviceState(home, svc as Service).running);
  if (running.length) {
    throw new CliError(`${running.join(', ')} ${running.length === 1 ? 'is' : 'are'} running in ${home.dir}: stop ${running.length === 1 ? 'it' : 'them'} first (\`mallee down --home ${home.dir}\`, or stop the services)`);
  }
  verifyBackup(dir, m);
  say(`backup of ${m.sourceHome} on ${m.host} at ${m.createdAt}: ${m.files.length} files, checksums verified`);
  const replaced = m.files.map((f) => f.path).filter((p) => p !== 'mallee.conf' && existsSync(join(home.dir, p)));
  const existingDbs = DATABASES.map((d) => `${d}.sqlite`).filter((f) => existsSync(join(home.dir, f)));
  let movedAside: string | undefined;
  if (replaced.length || existingDbs.length) {
    if (!opts.force) throw new CliError(`${home.dir} already holds a cloud (${[...new Set([...existingDbs, ...replaced])].slice(0, 4).join(', ')}…): restore into an empty home, or add --force to move what is there to ${join(home.dir, 'pre-restore-<time>')}`);
    movedAside = join(home.dir, `pre-restore-${timestamp()}`);
    for (const rel of [...new Set([...existingDbs, ...replaced])]) {
      for (const suffix of ['', '-wal', '-shm']) {
        const src = join(home.dir, rel + suffix);
        if (!existsSync(src)) continue;
        mkdirSync(dirname(join(movedAside, rel)), { recursive: true, mode: 0o700 });
        renameSync(src, join(movedAside, rel + suffix));
      }
    }
    say(`moved what the restore replaces to ${movedAside}`);
  }

  mkdirSync(home.dir, { recursive: true });
  const restored: string[] = [];
  let keptConf = false;
  for (const f of m.files) {
    const dest = join(home.dir, f.path);
    if (f.path === 'mallee.conf') {
      const text = relocateConf(readFileSync(join(dir, f.path), 'utf8'), m.sourceHome, home.dir);
      if (existsSync(dest)) {
        writeFileSync(join(home.dir, 'mallee.conf.from-backup'), text);
        keptConf = true;
        continue;
      }
      writeFileSync(dest, text);
      restored.push(f.path);
      continue;
    }
    mkdirSync(dirname(dest), { recursive: true, mode: f.path.startsWith('keys/') ? 0o700 : 0o755 });
    const tmp = `${dest}.restore-tmp`;
    copyFileSync(join(dir, f.path), tmp, constants.COPYFILE_FICLONE);
    if (f.path.startsWith('keys/')) chmodSync(tmp, 0o600);
    renameSync(tmp, dest);
    restored.push(f.path);
  }
  const dbs = m.files.filter((f) => f.service).map((f) => `${f.path} (schema ${f.schemaVersion})`);
  say(`restored ${dbs.join(', ')}; ${restored.filter((p) => p.startsWith('keys/')).length} keys${m.objects ? `; ${restored.filter((p) => p.startsWith('walrus/')).length} object blobs` : ''}`);
  if (keptConf) say(`kept ${home.conf}; the backup's is beside it as mallee.conf.from-backup`);
  return { restored, ...(movedAside ? { movedAside } : {}), keptConf };
}

export function backupCommands(program: Command, kit: CommandKit): void {
  program
    .command('backup')
    .description("back up this home's cloud (databases as live consistent snapshots, keys, mallee.conf) while it runs")
    .option('--out <dir>', 'a new directory for the backup (default ./mallee-backup-<time>)')
    .option('--objects', "also copy the Walrus objects the snapshot refers to (default: Walrus's metadata only)")
    .addOption(kit.homeOption())
    .action(async (opts: { home: string; out?: string; objects?: boolean }) => {
      const home = kit.homeOf(opts);
      const out = resolve(opts.out ?? defaultBackupDir());
      const m = await backupHome(home, out, { objects: Boolean(opts.objects), say: kit.say });
      const bytes = m.files.reduce((n, f) => n + f.bytes, 0);
      kit.say(`backup written to ${out} (${m.files.length} files, ${formatBytes(bytes)}). Restore with: mallee restore ${out} --home <empty home>`);
    });

  program
    .command('restore <dir>')
    .description('restore a backup into a home whose daemons are stopped (an empty one, or --force to move what is there aside)')
    .option('--force', 'the home already holds a cloud: move what the restore replaces to <home>/pre-restore-<time>/')
    .addOption(kit.homeOption())
    .action((dir: string, opts: { home: string; force?: boolean }) => {
      const home = kit.homeOf(opts);
      restoreHome(resolve(dir), home, { force: Boolean(opts.force), say: kit.say });
      kit.say(`restored into ${home.dir}. Start it with: mallee up --home ${home.dir}`);
    });
}
