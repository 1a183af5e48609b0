import { defineConfig } from 'vitest/config';

// Suites that need the scale-out backends themselves (test/scale-out/backends.sh up; run.sh does it).
export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: ['**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
