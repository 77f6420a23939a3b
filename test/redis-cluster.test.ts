// Redis Cluster cases (npm run test:cluster; skipped otherwise): the API-key cache's
// revocation safety with key records on every master (D8, DK3), two server instances on one
// cluster, the expiry sweeper and the cross-tenant admin lists over every shard, and a crash
// test: a master SIGKILLed, its replica promoted, the server going on (DK2–DK4).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster, Redis } from 'ioredis';
import { ADMIN_KEY, call, startTestServer, type TestServer } from './helpers/server';
import { TEST_CLUSTER } from './helpers/redis';
import { startLocalCluster, type LocalCluster } from './helpers/redisCluster';
import { startServer, type RunningServer } from '../src/server';
import { ApiKeyCache } from '../src/auth/keyCache';
import { storeNewKey, sha256Hex } from '../src/auth/apiKeys';
import { keys } from '../src/store/keys';
import { isCluster, rawCluster } from '../src/store/cluster';
import { uid } from './helpers/reservations';

const turn = () => new Promise((res) => setImmediate(res));

async function until(cond: () => boolean | Promise<boolean>, ms = 15_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try { if (await cond()) return; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `host:port` of the master that owns `key`. */
async function ownerOf(redis: Redis, key: string): Promise<string> {
  const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', key));
  return (rawCluster(redis) as unknown as { slots: string[][] }).slots[slot]![0]!;
}

/** Tenant ids whose `{t:…}` slots cover every master (one per master, in master order). */
async function tenantsOnEveryMaster(redis: Redis, prefix: string): Promise<string[]> {
  const masters = rawCluster(redis).nodes('master').map((n) => `${n.options.host}:${n.options.port}`);
  const found = new Map<string, string>();
  for (let i = 0; found.size < masters.length && i < 500; i++) {
    const t = `${prefix}-${i}`;
    const owner = await ownerOf(redis, keys.tenant(t));
    if (!found.has(owner)) found.set(owner, t);
  }
  expect(found.size).toBe(masters.length);
  return masters.map((m) => found.get(m)!);
}

async function adminSetup(adminUrl: string, tenant: string, amount = 1_000_000): Promise<string> {
  let r = await call(adminUrl, 'POST', '/v1/admin/tenants', { adminKey: ADMIN_KEY, body: { tenant_id: tenant, name: tenant } });
  expect(r.status, r.text).toBe(201);
  r = await call(adminUrl, 'POST', '/v1/admin/budgets', {
    adminKey: ADMIN_KEY,
    body: { tenant_id: tenant, scope: `tenant:${tenant}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount } },
  });
  expect(r.status, r.text).toBe(201);
  r = await call(adminUrl, 'POST', '/v1/admin/api-keys', { adminKey: ADMIN_KEY, body: { tenant_id: tenant, name: 'k' } });
  expect(r.status, r.text).toBe(201);
  return r.body.key_secret as string;
}

function reserveBody(tenant: string, amount: number, extra: Record<string, unknown> = {}) {
  return {
    idempotency_key: uid('rc'), subject: { tenant, agent: 'a' }, action: { kind: 'llm.completion', name: 'x' },
    estimate: { unit: 'TOKENS', amount }, ...extra,
  };
}

describe.skipIf(!TEST_CLUSTER)('on a Redis Cluster', () => {
  let a: TestServer;
  let b: RunningServer;
  let bRuntime: string;
  let bAdmin: string;

  beforeAll(async () => {
    a = await startTestServer({ CYCLES_SWEEP_INTERVAL_MS: '50' });
    b = await startServer({
      env: {
        REDIS_URL: a.redis.url, ADMIN_API_KEY: ADMIN_KEY, CYCLES_RUNTIME_PORT: '0', CYCLES_ADMIN_PORT: '0',
        CYCLES_VALIDATE_RESPONSES: '1', CYCLES_LOG_LEVEL: 'silent', CYCLES_SWEEP_INTERVAL_MS: '50',
        // REDIS_CLUSTER unset: detected from INFO cluster
      },
    });
    bRuntime = b.urls.runtime!;
    bAdmin = b.urls.admin!;
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('both instances run in cluster mode (one forced, one detected)', () => {
    expect(isCluster(a.server.deps.redis)).toBe(true);
    expect(isCluster(b.deps.redis)).toBe(true);
  });

  it('key cache: a revocation on any master is seen on the very next lookup', async () => {
    const redis = a.redis.client;
    const cache = new ApiKeyCache(redis);
    await cache.start();
    try {
      await until(() => cache.isActive, 10_000, 'cache armed on every master');
      // keys until every master holds one
      const masters = new Set(rawCluster(redis).nodes('master').map((n) => `${n.options.host}:${n.options.port}`));
      const byOwner = new Map<string, string>();
      for (let i = 0; byOwner.size < masters.size && i < 200; i++) {
        const { secret } = await storeNewKey(redis, { tenant_id: 'kc', permissions: ['balances:read'], scope_filter: [], expires_at_ms: 0 });
        const owner = await ownerOf(redis, keys.apiKeyBySecret(sha256Hex(secret)));
        if (!byOwner.has(owner)) byOwner.set(owner, secret);
      }
      expect(byOwner.size).toBe(masters.size);
      for (const secret of byOwner.values()) {
        expect((await cache.lookup(secret))?.status).toBe('ACTIVE');
        expect((await cache.lookup(secret))?.status).toBe('ACTIVE'); // from memory now
        await redis.hset(keys.apiKeyBySecret(sha256Hex(secret)), 'status', 'REVOKED');
        await turn();
        expect((await cache.lookup(secret))?.status).toBe('REVOKED');
      }
      expect(cache.isActive).toBe(true);
    } finally {
      await cache.stop();
    }
  });

  it('two instances: revocation through one is effective on the other at once, for tenants on every shard', async () => {
    const tenants = await tenantsOnEveryMaster(a.redis.client, uid('rv'));
    for (const t of tenants) {
      const key = await adminSetup(a.adminUrl, t);
      // warm B's cache
      for (let i = 0; i < 2; i++) {
        const r = await call(bRuntime, 'POST', '/v1/reservations', { key, body: reserveBody(t, 10) });
        expect(r.status, r.text).toBe(200);
      }
      const list = await call(bAdmin, 'GET', `/v1/admin/api-keys?tenant_id=${t}`, { adminKey: ADMIN_KEY });
      const keyId = list.body.keys[0].key_id as string;
      const rv = await call(bAdmin, 'DELETE', `/v1/admin/api-keys/${keyId}`, { adminKey: ADMIN_KEY });
      expect(rv.status, rv.text).toBe(200);
      for (const url of [a.runtimeUrl, bRuntime]) {
        const r = await call(url, 'POST', '/v1/reservations', { key, body: reserveBody(t, 10) });
        expect(r.status, r.text).toBe(401);
      }
    }
  });

  it('the expiry sweeper and the cross-tenant lists see every shard', async () => {
    const tenants = await tenantsOnEveryMaster(a.redis.client, uid('sw'));
    const ids: [string, string][] = [];
    for (const t of tenants) {
      const key = await adminSetup(bAdmin, t);
      const r = await call(a.runtimeUrl, 'POST', '/v1/reservations', { key, body: reserveBody(t, 100, { ttl_ms: 1000, grace_period_ms: 0 }) });
      expect(r.status, r.text).toBe(200);
      ids.push([t, r.body.reservation_id as string]);
    }
    for (const [t, id] of ids) {
      await until(async () => (await a.redis.client.hget(keys.reservation(t, id), 'status')) === 'EXPIRED', 15_000, `expiry of ${id}`);
      const bal = await a.redis.client.hgetall(keys.budget(t, `tenant:${t}`, 'TOKENS'));
      expect([bal.reserved, bal.remaining]).toEqual(['0', '1000000']);
    }
    const listed = await call(a.adminUrl, 'GET', '/v1/admin/tenants?limit=100', { adminKey: ADMIN_KEY });
    expect(listed.status).toBe(200);
    const seen = new Set((listed.body.tenants as { tenant_id: string }[]).map((x) => x.tenant_id));
    for (const t of tenants) expect(seen.has(t)).toBe(true);
    const budgets = await call(bAdmin, 'GET', '/v1/admin/budgets?limit=100', { adminKey: ADMIN_KEY });
    expect(budgets.status, budgets.text).toBe(200);
  });
});

describe.skipIf(!TEST_CLUSTER)('failover (own cluster: 3 masters + 3 replicas)', () => {
  let cluster: LocalCluster;
  let srv: RunningServer;

  beforeAll(async () => {
    cluster = await startLocalCluster({ masters: 3, replicas: 1 });
    srv = await startServer({
      env: {
        REDIS_URL: `redis://${cluster.seeds.split(',')[0]}`, ADMIN_API_KEY: ADMIN_KEY, CYCLES_RUNTIME_PORT: '0',
        CYCLES_ADMIN_PORT: '0', CYCLES_VALIDATE_RESPONSES: '1', CYCLES_LOG_LEVEL: 'silent', REDIS_CLUSTER: '1',
      },
    });
  }, 90_000);
  afterAll(async () => {
    await srv?.stop();
    await cluster?.stop();
  });

  it('a master killed: its replica takes over, the ledger stays exact, revocation still bites', async () => {
    const redis = srv.deps.redis;
    const admin = srv.urls.admin!;
    const runtime = srv.urls.runtime!;
    const tenants = await tenantsOnEveryMaster(redis, uid('fo'));
    const keyOf = new Map<string, string>();
    for (const t of tenants) keyOf.set(t, await adminSetup(admin, t));
    const victimTenant = tenants[0]!;
    const held: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await call(runtime, 'POST', '/v1/reservations', { key: keyOf.get(victimTenant)!, body: reserveBody(victimTenant, 1000) });
      expect(r.status, r.text).toBe(200);
      held.push(r.body.reservation_id as string);
    }
    // the victim master, once its writes reached the replica (WAIT), is SIGKILLed
    const owner = await ownerOf(redis, keys.tenant(victimTenant));
    const port = Number(owner.split(':')[1]);
    const node = (rawCluster(redis) as Cluster).nodes('master').find((n) => n.options.port === port)!;
    expect(Number(await node.call('WAIT', '1', '5000'))).toBe(1);
    await cluster.kill(port);
    await cluster.waitOk(30_000);

    // the server goes on: commits on the promoted replica (retry while it takes over)
    for (const id of held) {
      await until(async () => {
        const r = await call(runtime, 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, {
          key: keyOf.get(victimTenant)!, body: { idempotency_key: `c-${id}`, actual: { unit: 'TOKENS', amount: 600 } },
        });
        return r.status === 200;
      }, 30_000, `commit of ${id} after failover`);
    }
    const bal = await call(runtime, 'GET', `/v1/balances?tenant=${victimTenant}`, { key: keyOf.get(victimTenant)! });
    expect(bal.status, bal.text).toBe(200);
    const row = (bal.body.balances as any[]).find((x) => x.scope === `tenant:${victimTenant}`);
    expect(BigInt(row.spent.amount)).toBe(1800n);
    expect(BigInt(row.reserved.amount)).toBe(0n);
    expect(BigInt(row.remaining.amount)).toBe(1_000_000n - 1800n);

    // every tenant still works; a revocation on the promoted master is effective at once
    for (const t of tenants) {
      const r = await call(runtime, 'POST', '/v1/reservations', { key: keyOf.get(t)!, body: reserveBody(t, 5) });
      expect(r.status, r.text).toBe(200);
    }
    const list = await call(admin, 'GET', `/v1/admin/api-keys?tenant_id=${victimTenant}`, { adminKey: ADMIN_KEY });
    const rv = await call(admin, 'DELETE', `/v1/admin/api-keys/${list.body.keys[0].key_id as string}`, { adminKey: ADMIN_KEY });
    expect(rv.status, rv.text).toBe(200);
    const after = await call(runtime, 'POST', '/v1/reservations', { key: keyOf.get(victimTenant)!, body: reserveBody(victimTenant, 5) });
    expect(after.status, after.text).toBe(401);

    // the relay goes on after the failover (subscribers re-opened on the new master set,
    // DK4): the revocation event reaches the global index, which only the relay writes
    await until(async () => {
      const ev = await call(admin, 'GET', '/v1/admin/events?event_type=api_key.revoked&limit=50', { adminKey: ADMIN_KEY });
      return ev.status === 200 && (ev.body.events as { tenant_id: string }[]).some((e) => e.tenant_id === victimTenant);
    }, 20_000, 'api_key.revoked relayed after the failover');
  }, 120_000);
});
