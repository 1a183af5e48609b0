import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const src = (p: string) => fileURLToPath(new URL(`${p}/src/index.ts`, import.meta.url));

// Unit and component tests run on the TypeScript sources; end-to-end suites (test/e2e) run against
// the built daemons and real clients and have their own config.
export default defineConfig({
  resolve: {
    alias: {
      '@mallee/store': src('./packages/store'),
      '@mallee/telemetry': src('./packages/telemetry'),
      '@mallee/config': src('./packages/config'),
      '@mallee/wire': src('./packages/wire'),
      '@mallee/aws-protocol': src('./packages/aws-protocol'),
      '@mallee/vnet': src('./packages/vnet'),
      '@mallee/image': src('./packages/image'),
      '@mallee/properties': src('./packages/properties'),
      '@mallee/nc': src('./services/nc'),
      '@mallee/cc': src('./services/cc'),
      '@mallee/clc': src('./services/clc'),
      '@mallee/walrus': src('./services/walrus'),
      '@mallee/sc': src('./services/sc'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    pool: 'forks',
    // Vitest's default is one worker less than the cores: one, on CI's two. The guest-booting nc files
    // and the many small ones overlap well (520 tests: 548 s with one worker on a quiet host, 537 s
    // with two on a host loaded to 8–10 by other work).
    maxWorkers: 2,
  },
});
