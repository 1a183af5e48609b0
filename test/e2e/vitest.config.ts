import { defineConfig } from 'vitest/config';

// End-to-end suites: each file brings up a real all-in-one cloud from the BUILT daemons
// (`mallee up --hypervisor simulated` in a temp home on free ports) and drives it with real clients.
export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: ['**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: one cloud at a time keeps timings honest.
    fileParallelism: false,
  },
});
