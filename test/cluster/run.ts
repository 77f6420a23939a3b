// npm run test:cluster [-- vitest file filters…]: starts local Redis Clusters (3 masters,
// 1 replica each, loopback ports, temp dirs), then runs every suite that uses Redis and can
// run on a cluster against them (CYCLES_TEST_REDIS_CLUSTER: test/helpers/redis.ts hands out
// cluster clients, servers get REDIS_CLUSTER=1), each test server as TWO instances behind a
// round-robin proxy per plane (CYCLES_TEST_INSTANCES=2, test/helpers/server.ts). Files run
// one at a time per cluster, since a suite flushes its cluster at start; the list is dealt
// over CYCLES_TEST_CLUSTER_SHARDS clusters (default 3; balanced by the suites' known
// durations), one vitest process each, in parallel (the suites mostly wait on timers and
// Redis: on this 2-core machine, at load ~20, 3 shards took 310 s, 2 took 374 s at ~15).
// Stops the clusters after.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startLocalCluster, type LocalCluster } from '../helpers/redisCluster';

/** The suites that run on the cluster: runtime and admin planes, governance (quotas, action
 *  kinds, policy cache), signals, retention and the cold export, evidence (production,
 *  serving, export, pre-seal, conformance, the independent verifier), events and webhook
 *  subscriptions and their delivery (DK13–DK16; its crash suite SIGKILLs the server process,
 *  not Redis), the operator CLI, plus the cluster-only cases (test/redis-cluster.test.ts)
 *  and the two-instance proxy's own checks. Left out: suites that crash or restart their
 *  private redis-server (restart() has no cluster equivalent; the failover case in
 *  redis-cluster.test.ts stands in; single cases of kept suites are skipped the same way),
 *  the single-node key-cache unit suite (auth-cache; its cluster counterpart is in
 *  redis-cluster.test.ts), `cycles doctor` (it
 *  rightly fails this cluster: no persistence), suites that start `cycles serve` processes
 *  with an embedded Redis, and suites that do not use Redis. */
export const CLUSTER_SUITES = [
  // cluster-only cases, the key guards (DK1, DK19), the two-instance proxy
  'test/redis-cluster.test.ts', 'test/lua-slots.test.ts', 'test/lua-key-guard.test.ts', 'test/two-instances.test.ts',
  'test/declared-keys.test.ts',
  // runtime plane
  'test/reserve.test.ts', 'test/commit.test.ts', 'test/release.test.ts', 'test/extend.test.ts',
  'test/expiry.test.ts', 'test/decide.test.ts', 'test/balances.test.ts', 'test/events.test.ts',
  'test/get-reservation.test.ts', 'test/list-reservations.test.ts', 'test/tenant-suspended.test.ts',
  'test/runtime-scope-filter.security.test.ts', 'test/idempotency-canonical.test.ts', 'test/footprint.test.ts',
  // admin plane
  'test/admin-apikeys.test.ts', 'test/admin-tenants.test.ts', 'test/admin-budgets.test.ts', 'test/admin-fund.test.ts',
  'test/admin-policies.test.ts', 'test/admin-policies.security.test.ts', 'test/admin-cascade.test.ts',
  'test/admin-overview.test.ts', 'test/admin-audit.test.ts', 'test/admin-audit-scrub.test.ts',
  'test/admin-auth.security.test.ts', 'test/admin-bulk.test.ts', 'test/cli-admin.test.ts',
  // governance (v0.1.26)
  'test/governance.test.ts', 'test/governance-rules.test.ts', 'test/governance-concurrency.test.ts',
  'test/action-kinds.test.ts', 'test/action-quota-counters.test.ts', 'test/policy-cache.test.ts',
  'test/quota-windows.lua.test.ts',
  // signals, retention, cold export
  'test/signals-budget.test.ts', 'test/signals-burn.test.ts', 'test/signals-rates.test.ts', 'test/signals-system.test.ts',
  'test/retention.test.ts', 'test/export.test.ts', 'test/export-job.test.ts', 'test/export-paging.test.ts',
  // evidence
  'test/evidence-production.test.ts', 'test/evidence-serve.test.ts', 'test/evidence-export.test.ts',
  'test/evidence-preseal.test.ts', 'test/evidence-conformance.test.ts', 'test/evidence-independent-verifier.test.ts',
  // events, webhook subscriptions and their delivery
  'test/events-relay.test.ts', 'test/events-api.test.ts', 'test/events-flow.test.ts',
  'test/webhooks-crud.test.ts', 'test/webhooks-bulk.test.ts', 'test/webhooks-invariants.test.ts',
  'test/webhooks-security.test.ts',
  'test/delivery-basic.test.ts', 'test/delivery-retry.test.ts', 'test/delivery-ops.test.ts',
  'test/delivery-workers.test.ts', 'test/delivery-access.security.test.ts', 'test/delivery-cluster.test.ts',
  'test/delivery-migrate.test.ts', 'test/delivery-crash.test.ts',
];

/** Seconds the long suites took on a loaded 2-core machine (a full run, load ~15); every
 *  other file counts as DEFAULT_WEIGHT_S. Only used to balance the shards. */
const WEIGHT_S: Record<string, number> = {
  'test/cli-admin.test.ts': 77, 'test/evidence-conformance.test.ts': 35,
  'test/evidence-independent-verifier.test.ts': 32, 'test/governance-concurrency.test.ts': 23,
  'test/export.test.ts': 19, 'test/redis-cluster.test.ts': 17, 'test/signals-burn.test.ts': 13,
  'test/export-job.test.ts': 12, 'test/governance.test.ts': 12, 'test/signals-system.test.ts': 11,
  'test/retention.test.ts': 11, 'test/evidence-production.test.ts': 10, 'test/webhooks-invariants.test.ts': 9,
  'test/expiry.test.ts': 8,
};
const DEFAULT_WEIGHT_S = 5; // a short suite plus vitest's per-file start

const args = process.argv.slice(2);
const files = args.length ? args : CLUSTER_SUITES;
const shardCount = Math.max(1, Math.min(Number(process.env.CYCLES_TEST_CLUSTER_SHARDS || '3'), files.length));
// longest first, each onto the shard with the least work so far
const shards: string[][] = Array.from({ length: shardCount }, () => []);
const load = new Array<number>(shardCount).fill(0);
const weight = (f: string) => WEIGHT_S[f] ?? DEFAULT_WEIGHT_S;
for (const f of [...files].sort((a, b) => weight(b) - weight(a))) {
  const i = load.indexOf(Math.min(...load));
  shards[i]!.push(f);
  load[i]! += weight(f);
}
const instances = process.env.CYCLES_TEST_INSTANCES || '2';
const t0 = Date.now();
const clusters: LocalCluster[] = [];
let status = 1;
try {
  for (let i = 0; i < shardCount; i++) clusters.push(await startLocalCluster({ masters: 3, replicas: 1 }));
  for (let i = 0; i < shardCount; i++) console.log(`shard ${i + 1}/${shardCount}: ${shards[i]!.length} files, ~${load[i]} s of suites on a loaded machine`);
  console.log(`${shardCount} cluster(s) up in ${Date.now() - t0} ms: ${clusters.map((c) => c.seeds).join(' | ')}`);
  const codes = await Promise.all(shards.map((list, i) => new Promise<number>((resolve) => {
    // --retry 1: three clusters and two instances per server share 2 cores here, and timing-
    // bound cases (signal rates, late deliveries) have flaked once each; a case must fail twice
    // to fail the run. The single-node suite (npm test) runs without retries.
    const child = spawn('npx', ['vitest', 'run', '--no-file-parallelism', '--retry', '1', ...list], {
      stdio: shardCount === 1 ? 'inherit' : ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        CYCLES_TEST_REDIS_CLUSTER: clusters[i]!.seeds,
        CYCLES_TEST_INSTANCES: instances,
      },
    });
    if (shardCount > 1) {
      // each line tagged with its shard, so the interleaved output stays readable
      for (const [stream, out] of [[child.stdout!, process.stdout], [child.stderr!, process.stderr]] as const) {
        createInterface({ input: stream }).on('line', (line) => out.write(`[${i + 1}/${shardCount}] ${line}\n`));
      }
    }
    child.on('close', (code) => resolve(code ?? 1));
  })));
  status = codes.every((c) => c === 0) ? 0 : 1;
  if (shardCount > 1) console.log(`shard exit codes: ${codes.join(', ')}`);
} finally {
  await Promise.all(clusters.map((c) => c.stop()));
}
console.log(`test:cluster finished in ${Math.round((Date.now() - t0) / 1000)} s (exit ${status}; ${files.length} files, ${shardCount} cluster(s), ${instances} server instance(s) per test server)`);
process.exit(status);
