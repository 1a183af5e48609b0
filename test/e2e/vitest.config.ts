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

const group = process.env.MALLEE_E2E_GROUP;
if (group && group !== 'guests' && group !== 'api') throw new Error(`MALLEE_E2E_GROUP=${group}: expected guests or api`);

export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: group === 'api' ? apiFiles : ['**/*.test.ts'],
    exclude: ['**/node_modules/**', ...(group === 'guests' ? apiFiles : [])],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
