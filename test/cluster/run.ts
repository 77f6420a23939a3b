// npm run test:cluster [-- vitest file filters…]: starts a local Redis Cluster (3 masters,
// 1 replica each, loopback ports, temp dirs), then runs the runtime and admin suites against
// it (CYCLES_TEST_REDIS_CLUSTER: test/helpers/redis.ts hands out cluster clients, servers get
// REDIS_CLUSTER=1), one file at a time since they share the cluster. Stops the cluster after.
import { spawnSync } from 'node:child_process';
import { startLocalCluster } from '../helpers/redisCluster';

/** The suites that run on the cluster: runtime and admin planes, API-key revocation, expiry,
 *  events and webhooks, the derived signals, plus the cluster-only cases (test/redis-cluster.test.ts). Left out:
 *  suites that crash or restart their private redis-server (restart() has no cluster
 *  equivalent; the failover case in redis-cluster.test.ts stands in), the single-node
 *  key-cache unit suite (auth-cache; its cluster counterpart is in redis-cluster.test.ts),
 *  and suites that do not use Redis. Webhook delivery runs here too (DK13–DK16): its
 *  crash suite SIGKILLs the server process, not Redis. */
export const CLUSTER_SUITES = [
  'test/redis-cluster.test.ts',
  'test/lua-slots.test.ts', 'test/declared-keys.test.ts', 'test/governance.test.ts',
  'test/reserve.test.ts', 'test/commit.test.ts', 'test/release.test.ts', 'test/extend.test.ts',
  'test/expiry.test.ts', 'test/decide.test.ts', 'test/balances.test.ts', 'test/events.test.ts',
  'test/get-reservation.test.ts', 'test/list-reservations.test.ts', 'test/tenant-suspended.test.ts',
  'test/runtime-scope-filter.security.test.ts', 'test/idempotency-canonical.test.ts',
  'test/admin-apikeys.test.ts', 'test/admin-tenants.test.ts',
  'test/admin-budgets.test.ts', 'test/admin-fund.test.ts', 'test/admin-policies.test.ts',
  'test/admin-cascade.test.ts', 'test/admin-overview.test.ts', 'test/admin-audit.test.ts',
  'test/admin-auth.security.test.ts', 'test/admin-bulk.test.ts',
  'test/events-relay.test.ts', 'test/events-api.test.ts',
  'test/webhooks-crud.test.ts', 'test/webhooks-bulk.test.ts', 'test/webhooks-invariants.test.ts',
  'test/webhooks-security.test.ts',
  'test/delivery-basic.test.ts', 'test/delivery-retry.test.ts', 'test/delivery-ops.test.ts',
  'test/delivery-workers.test.ts', 'test/delivery-access.security.test.ts', 'test/delivery-cluster.test.ts',
  'test/delivery-migrate.test.ts', 'test/delivery-crash.test.ts',
  // the declared-keys guard and the signal scripts that declare their bucket keys (DK19, DK20)
  'test/lua-key-guard.test.ts',
  'test/signals-rates.test.ts', 'test/signals-system.test.ts', 'test/signals-budget.test.ts', 'test/signals-burn.test.ts',
];

const args = process.argv.slice(2);
const files = args.length ? args : CLUSTER_SUITES;
const t0 = Date.now();
const cluster = await startLocalCluster({ masters: 3, replicas: 1 });
console.log(`cluster up in ${Date.now() - t0} ms: ${cluster.seeds}`);
let status = 1;
try {
  const r = spawnSync('npx', ['vitest', 'run', '--no-file-parallelism', ...files], {
    stdio: 'inherit',
    env: { ...process.env, CYCLES_TEST_REDIS_CLUSTER: cluster.seeds },
  });
  status = r.status ?? 1;
} finally {
  await cluster.stop();
}
console.log(`test:cluster finished in ${Math.round((Date.now() - t0) / 1000)} s (exit ${status})`);
process.exit(status);
