import { defineConfig } from 'vitest/config';

// End-to-end suites: each file brings up a real all-in-one cloud from the BUILT daemons
// (`mallee up` in a temp home on free ports) and drives it with real clients.
//
// Groups, chosen by MALLEE_E2E_GROUP (unset: every file, one at a time), as test/run-all.sh runs them in
// two streams side by side (each file's cloud has its own home, ports, tgt prefix, instance ids and, for
// the netns topologies, namespace ids, so files of different streams never touch each other's state):
// - `api`: the files listed here, whose clouds run the simulated hypervisor (real clients, daemons,
//   tgt, no guests). They mostly wait on clients and daemons: the side stream runs them first, beside
//   `guests-netns`.
// - `guests-netns`: the netns topology files whose checks are timed (EIP gaps during upgrade and live
//   migration, a revoke cutting traffic within 5 s). The foreground runs them first, one at a time, with
//   nothing but the api group, fuzzing and faults beside them: never beside another guest file.
// - `guests-beside`: guest files the side stream runs once `guests-netns` is done (run-all.sh waits for
//   it), beside `guests`: then two guest files run at once, one per core, and the streams end about together.
// - `guests`: every other file (real QEMU/TCG guests under libvirt), one at a time: a TCG guest keeps a
//   core busy. A new file lands here unless it is listed below.
export const apiFiles = [
  'awscli.test.ts',
  'backup.test.ts',
  'boto.test.ts',
  'cli.test.ts',
  'console.test.ts',
  'crash.test.ts',
  'errors.test.ts',
  'euca2ools.test.ts',
  'install.test.ts',
  'isolation.test.ts',
  'observability.test.ts',
  'ops.test.ts',
  'security.test.ts',
  'volumes.test.ts',
];

// ~780 s of the 1,580 s all guest files took one after another in the last full run before the split.
export const guestsNetnsFiles = [
  'network.test.ts',
  'network-novlan.test.ts',
  'migrate.test.ts',
  'upgrade.test.ts',
];

// ~480 s, beside the ~330 s of `guests`.
export const guestsBesideFiles = [
  'debian.test.ts',
  'nodes.test.ts',
  'network-system.test.ts',
];

const group = process.env.MALLEE_E2E_GROUP;
const groupFiles = { api: apiFiles, 'guests-netns': guestsNetnsFiles, 'guests-beside': guestsBesideFiles } as Record<string, string[] | undefined>;
if (group && group !== 'guests' && !groupFiles[group]) throw new Error(`MALLEE_E2E_GROUP=${group}: expected guests, ${Object.keys(groupFiles).join(', ')}`);

export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: (group && groupFiles[group]) || ['**/*.test.ts'],
    exclude: ['**/node_modules/**', ...(group === 'guests' ? [...apiFiles, ...guestsNetnsFiles, ...guestsBesideFiles] : [])],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
