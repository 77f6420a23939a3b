// Sized for a 2-core CI machine: forked workers (each test file starts its own private
// redis-server, so files are isolated processes), two at a time, generous timeouts for
// suites that spawn redis-server or a whole `cycles serve`. CYCLES_LUA_KEY_GUARD: every Lua
// script (in-process servers and spawned `cycles serve` children alike) refuses a key it did not
// declare in KEYS (src/store/scripts.ts, docs/decisions.md DK19).
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
    env: { NODE_ENV: 'test', CYCLES_LUA_KEY_GUARD: '1' },
  },
});
