// Sized for a 2-core CI machine: forked workers (each test file starts its own private
// redis-server, so files are isolated processes), two at a time, generous timeouts for
// suites that spawn redis-server or a whole `cycles serve`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // CYCLES_TEST_STRICT_KEYS: the ledger scripts refuse undeclared keys (src/store/scripts.ts, DK8)
    env: { NODE_ENV: 'test', CYCLES_TEST_STRICT_KEYS: '1' },
  },
});
