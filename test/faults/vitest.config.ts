import { defineConfig } from 'vitest/config';

// Fault injection: a real all-in-one cloud from the BUILT daemons (simulated hypervisor), daemons killed
// with SIGKILL mid-workload and restarted with `mallee up`; Walrus on a small tmpfs (needs root, as CI).
export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: ['**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    // The cases of a file build on each other (the workload, then what it left).
    sequence: { concurrent: false },
  },
});
