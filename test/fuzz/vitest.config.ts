import { defineConfig } from 'vitest/config';

// Fuzz suites: each file brings up a real all-in-one cloud from the BUILT daemons (as processes, simulated
// hypervisor) and throws fast-check-generated malformed input at it. A fixed seed and bounded run counts
// keep the default suite short and reproducible; `npm run fuzz` multiplies the runs (MALLEE_FUZZ_RUNS).
export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: ['**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
