// `npm run bench [-- name…]`: runs every benchmark of bench/ (or the named ones) one after the other, each
// in its own process, and says which wrote which bench/results/<name>.md. Benchmarks are separate
// files so each area adds its own (ec2-workload and memory: proof; s3: images; guest-boot: compute;
// snapshots: sc; scale-out: only when named); a benchmark that fails does not stop the others.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('.', import.meta.url).pathname;
const NOT_BENCHMARKS = new Set(['run.ts', 'lib.ts']);
/** Run only when named: they need back-ends the all-in-one does not have (scale-out: PostgreSQL and Ceph; the ebs ones: Ceph). */
const ONLY_WHEN_NAMED = new Set(['scale-out', 'ebs-rbd', 'ebs-guest-write']);
const all = readdirSync(dir).filter((f) => f.endsWith('.ts') && !NOT_BENCHMARKS.has(f)).map((f) => f.slice(0, -3)).sort();
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`no such benchmark: ${unknown.join(', ')} (there are: ${all.join(', ')})`);
  process.exit(2);
}
const failed: string[] = [];
for (const name of wanted.length ? wanted : all.filter((n) => !ONLY_WHEN_NAMED.has(n))) {
  console.log(`\n=== bench/${name}.ts`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(dir, `${name}.ts`)], { stdio: 'inherit' });
  if (r.status !== 0) failed.push(name);
}
if (failed.length) {
  console.error(`\nfailed: ${failed.join(', ')}`);
  process.exit(1);
}
