import { defineConfig } from 'vitest/config';

// End-to-end suites: each file brings up a real all-in-one cloud from the BUILT daemons
// (`mallee up` in a temp home on free ports) and drives it with real clients.
//
// Two groups, chosen by MALLEE_E2E_GROUP (unset: every file, one at a time):
// - `api`: the files listed here, whose clouds run the simulated hypervisor (real clients, daemons,
//   tgt, no guests). They mostly wait on clients and daemons, so test/run-all.sh runs this group
//   BESIDE the other one; each file's cloud has its own home, ports, tgt prefix and instance ids, so
//   the groups never touch each other's state.
// - `guests`: every other file (real QEMU/TCG guests under libvirt, network namespaces of the seed
//   topology). They run one at a time: a TCG guest keeps a core busy. A new file lands here unless
//   it is listed below.
// - `guests-beside`: guest files that run.sh runs in the side stream once the api group, fuzzing and
//   fault injection are done (about ten minutes in), so that the two streams end together: then two
//   guest files run at once, one per core. Their clouds (own home, ports, instance ids; netns
//   topologies with their own ids) never touch the other stream's, as the api group's never did.
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

// About 480 s of the guests group's 1,580 (the last full run): the api group, fuzzing and faults take ~620 s.
export const guestsBesideFiles = [
  'debian.test.ts',
  'nodes.test.ts',
  'network-system.test.ts',
];

const group = process.env.MALLEE_E2E_GROUP;
if (group && group !== 'guests' && group !== 'api' && group !== 'guests-beside') throw new Error(`MALLEE_E2E_GROUP=${group}: expected guests, guests-beside or api`);
const groupFiles = { api: apiFiles, 'guests-beside': guestsBesideFiles } as Record<string, string[] | undefined>;

export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: (group && groupFiles[group]) || ['**/*.test.ts'],
    exclude: ['**/node_modules/**', ...(group === 'guests' ? [...apiFiles, ...guestsBesideFiles] : [])],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
