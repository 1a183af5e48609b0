#!/usr/bin/env node
// Installs the built tree (what the daemons and the `mallee` command need at run time) from a built
// checkout into a prefix such as /opt/mallee, and keeps it a mirror: files are written only when their
// content differs, files no longer part of the tree are removed, so a second run changes nothing.
// Production dependencies only, read from package-lock.json (entries not marked dev).
//   node deploy/install-tree.mjs SOURCE DEST      → prints "tree: N written, M removed, K unchanged"
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const [source, dest] = process.argv.slice(2);
if (!source || !dest) {
  console.error('usage: install-tree.mjs SOURCE DEST');
  process.exit(2);
}

/** @type {Map<string, { kind: 'file', mode: number } | { kind: 'link', target: string }>} */
const wanted = new Map();

function addFile(rel) {
  const st = lstatSync(join(source, rel));
  if (st.isSymbolicLink()) wanted.set(rel, { kind: 'link', target: readlinkSync(join(source, rel)) });
  else if (st.isFile()) wanted.set(rel, { kind: 'file', mode: st.mode & 0o777 });
}

/** Every file under rel, minus nested node_modules (the lock lists those separately) and skipped names. */
function addTree(rel, skip = () => false) {
  const abs = join(source, rel);
  if (!existsSync(abs)) return;
  for (const name of readdirSync(abs)) {
    const child = rel ? `${rel}/${name}` : name;
    if (skip(child, name)) continue;
    const st = lstatSync(join(source, child));
    if (st.isDirectory()) addTree(child, skip);
    else addFile(child);
  }
}

const lock = JSON.parse(readFileSync(join(source, 'package-lock.json'), 'utf8'));
const rootPkg = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8'));
const workspaces = new Set(rootPkg.workspaces ?? []);

for (const f of ['package.json', 'package-lock.json', 'README.md', 'DESIGN.md']) if (existsSync(join(source, f))) addFile(f);
addTree('deploy');
addTree('test/images', (_rel, name) => name === 'out' || name.endsWith('.tmp'));

for (const [path, entry] of Object.entries(lock.packages ?? {})) {
  if (path === '' || entry.dev || entry.devOptional) continue;
  if (entry.link) {
    // A workspace link (node_modules/@mallee/x → ../../packages/x), kept relative.
    wanted.set(path, { kind: 'link', target: relative(dirname(join('/', path)), join('/', entry.resolved)) });
    continue;
  }
  if (workspaces.has(path)) {
    for (const f of ['package.json', 'README.md']) if (existsSync(join(source, path, f))) addFile(`${path}/${f}`);
    addTree(`${path}/dist`, (rel, name) => name.endsWith('.tsbuildinfo') || rel === `${path}/dist/test`);
    continue;
  }
  if (!existsSync(join(source, path))) continue; // an optional dependency for another platform
  addTree(path, (_rel, name) => name === 'node_modules' || name === '.bin');
}
if (!wanted.has('packages/cli/dist/src/main.js')) {
  console.error(`install-tree: ${source} is not built (no packages/cli/dist/src/main.js): run npm run build first`);
  process.exit(1);
}

const digest = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
let written = 0;
let unchanged = 0;
let removed = 0;
const changes = [];

for (const [rel, w] of wanted) {
  const target = join(dest, rel);
  let cur;
  try {
    cur = lstatSync(target);
  } catch {
    cur = undefined;
  }
  if (w.kind === 'link') {
    if (cur?.isSymbolicLink() && readlinkSync(target) === w.target) {
      unchanged++;
      continue;
    }
    if (cur) rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(w.target, target);
  } else {
    const src = join(source, rel);
    if (cur?.isFile() && cur.size === lstatSync(src).size && digest(target) === digest(src)) {
      if ((cur.mode & 0o777) !== w.mode) chmodSync(target, w.mode);
      unchanged++;
      continue;
    }
    if (cur && !cur.isFile()) rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    const tmp = `${target}.install-tmp`;
    writeFileSync(tmp, readFileSync(src), { mode: w.mode });
    chmodSync(tmp, w.mode);
    renameSync(tmp, target);
  }
  written++;
  if (changes.length < 20) changes.push(rel);
}

/** Remove what the tree no longer holds (the prefix is the installer's own). */
function prune(rel) {
  const abs = rel ? join(dest, rel) : dest;
  let empty = true;
  for (const name of readdirSync(abs)) {
    const child = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dest, child));
    if (st.isDirectory() && !st.isSymbolicLink()) {
      if (prune(child)) rmSync(join(dest, child), { recursive: true });
      else empty = false;
      continue;
    }
    if (wanted.has(child)) {
      empty = false;
      continue;
    }
    rmSync(join(dest, child), { force: true });
    removed++;
  }
  return empty && rel !== '';
}
mkdirSync(dest, { recursive: true });
prune('');

console.log(`tree: ${written} written, ${removed} removed, ${unchanged} unchanged (${dest})`);
if (written && process.env.MALLEE_INSTALL_VERBOSE) for (const c of changes) console.log(`  ${c}`);
