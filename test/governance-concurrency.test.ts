// v0.1.26 quotas under concurrency (action-kinds spec ATOMICITY: the counter check and the
// increment happen in the same atomic step as the budget reserve; PER_RUN COUNTER
// LIFECYCLE). Parallel reserves on one server, on two server processes sharing one Redis,
// a per_run quota racing a risk-class quota across runs, and releases racing new reserves.
// Every case checks the counters, the ledger and the reservation records against the
// responses: a lost or doubled increment, or a slot given out twice, shows up as a
// mismatch.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startTestServer, call, ADMIN_KEY, type ApiResponse, type TestServer } from './helpers/server';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { startChildServer, stopAllChildServers, type ChildServer } from './helpers/childServer';
import { putBudget, putTenant, getBudget } from './helpers/fixtures';
import { expectLedgerHolds, readReservation, redisNowMs, releasePath, uid } from './helpers/reservations';
import { storedEvents } from './helpers/events';
import { storeNewKey } from '../src/auth/apiKeys';
import { DEFAULT_TENANT_PERMISSIONS } from '../src/auth/permissions';
import { keys } from '../src/store/keys';

const U = 'USD_MICROCENTS';
const ESTIMATE = 500;
const KIND = 'agent.spawn'; // risk class side_effect in the built-in registry
const TENANT_ALLOCATED = 10_000_000;
const LEAF_ALLOCATED = 1_000_000; // 2,000 reserves: the budget never binds here

interface Setup { tenant: string; key: string; scope: string; root: string }

/** A tenant with a root and an agent budget, a policy on tenant:<t>/* and a tenant key.
 *  State goes straight into `redis` (fixtures) except the policy, which goes through the
 *  admin API at `adminUrl` so that it is validated and bumps the policy version. */
async function setup(redis: Redis, adminUrl: string, policy: Record<string, unknown>): Promise<Setup> {
  const tenant = uid('gc');
  await putTenant(redis, tenant);
  const root = `tenant:${tenant}`;
  const scope = `${root}/agent:bot`;
  await putBudget(redis, tenant, root, U, { allocated: TENANT_ALLOCATED });
  await putBudget(redis, tenant, scope, U, { allocated: LEAF_ALLOCATED });
  const r = await call(adminUrl, 'POST', '/v1/admin/policies', {
    adminKey: ADMIN_KEY, body: { tenant_id: tenant, name: uid('p'), scope_pattern: `${root}/*`, ...policy },
  });
  expect(r.status, r.text).toBe(201);
  const { secret } = await storeNewKey(redis, { tenant_id: tenant, permissions: DEFAULT_TENANT_PERMISSIONS, scope_filter: [], expires_at_ms: 0, name: 'test' });
  return { tenant, key: secret, scope, root };
}

const reserve = (url: string, t: Setup, run: string, kind = KIND) => call(url, 'POST', '/v1/reservations', {
  key: t.key,
  body: {
    idempotency_key: uid('i'), subject: { tenant: t.tenant, agent: 'bot', dimensions: { run_id: run } },
    action: { kind, name: 'x' }, estimate: { unit: U, amount: ESTIMATE }, ttl_ms: 600_000,
  },
});
const release = (url: string, t: Setup, id: string) =>
  call(url, 'POST', releasePath(id), { key: t.key, body: { idempotency_key: uid('r') } });

/** `used` of every quota counter of a tenant, by the key part after keys.quotaPrefix. */
async function counters(redis: Redis, tenant: string): Promise<Record<string, number>> {
  const prefix = keys.quotaPrefix(tenant);
  const out: Record<string, number> = {};
  for (const k of await redis.keys(`${prefix}*`)) out[k.slice(prefix.length)] = Number(await redis.hget(k, 'used'));
  return out;
}

/** Reservation records of a tenant: ids in the created index, in the expiry schedule, and
 *  the status of each reservation hash found by key. */
async function reservations(redis: Redis, tenant: string) {
  const hashKeys = await redis.keys(keys.reservation(tenant, '*'));
  const status: Record<string, string> = {};
  for (const k of hashKeys) status[k.slice(keys.reservation(tenant, '').length)] = (await redis.hget(k, 'status')) ?? '';
  return {
    index: (await redis.zrange(keys.reservationIndex(tenant), 0, -1)).sort(),
    schedule: (await redis.zrange(keys.expirySchedule(tenant), 0, -1)).sort(),
    status,
  };
}

/** Both budgets moved by exactly `n` estimates from their seeded state, identity intact. */
async function expectReserved(redis: Redis, t: Setup, n: number) {
  for (const [scope, allocated] of [[t.root, TENANT_ALLOCATED], [t.scope, LEAF_ALLOCATED]] as const) {
    const b = await getBudget(redis, t.tenant, scope, U);
    expect({ scope, reserved: b.reserved, remaining: b.remaining, spent: b.spent })
      .toEqual({ scope, reserved: String(n * ESTIMATE), remaining: String(allocated - n * ESTIMATE), spent: '0' });
  }
  await expectLedgerHolds(redis, t.tenant);
}

const statuses = (rs: ApiResponse[]) => {
  const out: Record<number, number> = {};
  for (const r of rs) out[r.status] = (out[r.status] ?? 0) + 1;
  return out;
};

/** The Redis-time UTC hour (the per_hour_tumbling window key). */
const hourOf = (ms: number) => new Date(ms).toISOString().slice(0, 13);

/**
 * 100 parallel reserves (distinct idempotency keys, one run) against a per_run quota of 5,
 * spread over `urls` in turn: exactly 5 ALLOWs, 95 × 409 with the violation at 5/5, and
 * the counter, the budgets, the reservations and the events say the same.
 */
async function perRunRace(redis: Redis, adminUrl: string, urls: string[]) {
  const t = await setup(redis, adminUrl, { action_quotas: [{ action_kind: KIND, max_calls: 5, window: 'per_run' }] });
  const run = uid('run');
  const rs = await Promise.all(Array.from({ length: 100 }, (_, i) => reserve(urls[i % urls.length], t, run)));
  expect(statuses(rs)).toEqual({ 200: 5, 409: 95 });
  for (const r of rs.filter((x) => x.status === 409)) {
    expect(r.body.error).toBe('ACTION_QUOTA_EXCEEDED');
    expect(r.body.details.deny_detail).toMatchObject({
      reason_code: 'ACTION_QUOTA_EXCEEDED', blocked_by_scope: t.scope,
      quota_violation: { action_kind: KIND, window: 'per_run', window_key: run, used: 5, limit: 5, scope: t.scope },
    });
  }
  const ids = rs.filter((r) => r.status === 200).map((r) => r.body.reservation_id as string).sort();
  expect(new Set(ids).size).toBe(5);

  await expectReserved(redis, t, 5);
  expect(await counters(redis, t.tenant)).toEqual({ [`${t.scope}:${KIND}:per_run:${run}`]: 5 });
  const counterKey = keys.quotaCounter(t.tenant, t.scope, KIND, 'per_run', run);
  expect(await redis.hget(counterKey, 'used')).toBe('5');
  const res = await reservations(redis, t.tenant);
  expect(res.index).toEqual(ids);
  expect(res.schedule).toEqual(ids);
  expect(Object.keys(res.status).sort()).toEqual(ids);
  expect(Object.values(res.status).every((s) => s === 'ACTIVE')).toBe(true);
  for (const id of ids) expect(JSON.parse((await readReservation(redis, t.tenant, id)).run_counters)).toEqual([counterKey]);

  // one reservation.denied per refused request; one threshold event (4 of 5 crosses 0.80)
  const evs = await storedEvents(redis, t.tenant);
  expect(evs.filter((e) => e.event_type === 'reservation.denied')).toHaveLength(95);
  const th = evs.filter((e) => e.event_type === 'quota.threshold_approaching');
  expect(th).toHaveLength(1);
  expect(th[0].data).toMatchObject({ used: 4, limit: 5, window_key: run });
  return { t, rs };
}

describe('one server process', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer({ CYCLES_FEATURES: 'v0.1.26' }); }, 30_000);
  afterAll(async () => { await s?.stop(); });

  it('100 parallel reserves of one run against a per_run quota of 5: exactly 5 ALLOW, 95 × 409 ACTION_QUOTA_EXCEEDED at 5/5', async () => {
    await perRunRace(s.redis.client, s.adminUrl, [s.runtimeUrl]);
  });

  it('per_run 5 and risk-class side_effect 7 per hour, 50 + 50 parallel reserves on two runs: exactly 7 ALLOW, ≤ 5 per run; releases racing new reserves give back per_run only', async () => {
    const redis = s.redis.client;
    const policy = {
      action_quotas: [{ action_kind: KIND, max_calls: 5, window: 'per_run' }],
      risk_class_quotas: [{ risk_class: 'side_effect', max_calls: 7, window: 'per_hour_tumbling' }],
    };
    // The hour counter resets at the hour: a race that straddles one is run again (once;
    // a race takes well under a second).
    let t!: Setup;
    let rs!: ApiResponse[];
    let hour = '';
    const [runA, runB] = [uid('runA'), uid('runB')];
    for (let attempt = 0; attempt < 2; attempt++) {
      t = await setup(redis, s.adminUrl, policy);
      const before = hourOf(await redisNowMs(redis));
      rs = await Promise.all(Array.from({ length: 100 }, (_, i) => reserve(s.runtimeUrl, t, i % 2 === 0 ? runA : runB)));
      hour = hourOf(await redisNowMs(redis));
      if (hour === before) break;
    }
    const runOf = (i: number) => (i % 2 === 0 ? runA : runB);
    const allowed = { [runA]: [] as string[], [runB]: [] as string[] };
    rs.forEach((r, i) => { if (r.status === 200) allowed[runOf(i)].push(r.body.reservation_id); });
    expect(statuses(rs)).toEqual({ 200: 7, 409: 93 });
    expect(allowed[runA].length).toBeLessThanOrEqual(5);
    expect(allowed[runB].length).toBeLessThanOrEqual(5);
    // every refusal names one of the two rules, at its limit
    for (const [i, r] of rs.entries()) {
      if (r.status !== 409) continue;
      expect(r.body.error).toBe('ACTION_QUOTA_EXCEEDED');
      const qv = r.body.details.deny_detail.quota_violation;
      if (qv.risk_class !== undefined) {
        expect(qv).toMatchObject({ risk_class: 'side_effect', action_kind: KIND, window: 'per_hour_tumbling', window_key: hour, used: 7, limit: 7 });
      } else {
        expect(qv).toMatchObject({ action_kind: KIND, window: 'per_run', window_key: runOf(i), used: 5, limit: 5 });
      }
    }
    const riskKey = `${t.scope}:__risk__:side_effect:per_hour_tumbling:${hour}`;
    const runKey = (run: string) => `${t.scope}:${KIND}:per_run:${run}`;
    expect(await counters(redis, t.tenant)).toEqual({
      [riskKey]: 7, [runKey(runA)]: allowed[runA].length, [runKey(runB)]: allowed[runB].length,
    });
    await expectReserved(redis, t, 7);
    expect((await reservations(redis, t.tenant)).index).toEqual([...allowed[runA], ...allowed[runB]].sort());

    // Release 2 of run A and 1 of run B while 20 new reserves (10 per run) race them: the
    // hour's risk quota is spent and a release does not give it back (only per_run counters
    // go down), so every new reserve is refused by the risk rule.
    const released = { [runA]: allowed[runA].slice(0, 2), [runB]: allowed[runB].slice(0, 1) };
    const [rel, fresh] = await Promise.all([
      Promise.all([...released[runA], ...released[runB]].map((id) => release(s.runtimeUrl, t, id))),
      Promise.all(Array.from({ length: 20 }, (_, i) => reserve(s.runtimeUrl, t, runOf(i)))),
    ]);
    expect(rel.map((r) => r.status)).toEqual([200, 200, 200]);
    if (hourOf(await redisNowMs(redis)) === hour) {
      expect(statuses(fresh)).toEqual({ 409: 20 });
      for (const r of fresh) expect(r.body.details.deny_detail.quota_violation).toMatchObject({ risk_class: 'side_effect', used: 7, limit: 7 });
    }
    const after = await counters(redis, t.tenant);
    const newAllowed = (run: string) => fresh.filter((r, i) => r.status === 200 && runOf(i) === run).length;
    expect(after[runKey(runA)]).toBe(allowed[runA].length - 2 + newAllowed(runA));
    expect(after[runKey(runB)]).toBe(allowed[runB].length - 1 + newAllowed(runB));
    expect(after[riskKey]).toBe(7);
    await expectReserved(redis, t, 7 - 3 + newAllowed(runA) + newAllowed(runB));
    const st = (await reservations(redis, t.tenant)).status;
    for (const id of [...released[runA], ...released[runB]]) expect(st[id]).toBe('RELEASED');
  });

  it('releases racing reserves on a full per_run quota: the counter always equals the run\'s ACTIVE reservations, and every freed slot can be taken again', async () => {
    const redis = s.redis.client;
    const t = await setup(redis, s.adminUrl, { action_quotas: [{ action_kind: KIND, max_calls: 5, window: 'per_run' }] });
    const run = uid('run');
    const key = `${t.scope}:${KIND}:per_run:${run}`;
    const first = await Promise.all(Array.from({ length: 5 }, () => reserve(s.runtimeUrl, t, run)));
    expect(first.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const ids = first.map((r) => r.body.reservation_id as string);
    const active = new Set(ids);
    for (let round = 0; round < 3; round++) {
      // release 3 of the active ones while 30 reserves race for the slots they free
      const victims = [...active].slice(0, 3);
      const [rel, fresh] = await Promise.all([
        Promise.all(victims.map((id) => release(s.runtimeUrl, t, id))),
        Promise.all(Array.from({ length: 30 }, () => reserve(s.runtimeUrl, t, run))),
      ]);
      expect(rel.map((r) => r.status)).toEqual([200, 200, 200]);
      for (const id of victims) active.delete(id);
      for (const r of fresh) {
        if (r.status === 200) active.add(r.body.reservation_id);
        else expect([r.status, r.body.error]).toEqual([409, 'ACTION_QUOTA_EXCEEDED']);
      }
      expect(active.size).toBeLessThanOrEqual(5);
      expect((await counters(redis, t.tenant))[key]).toBe(active.size);
      // whatever the race left free is still free: sequential reserves fill it to exactly 5
      while (active.size < 5) {
        const r = await reserve(s.runtimeUrl, t, run);
        expect(r.status, r.text).toBe(200);
        active.add(r.body.reservation_id);
      }
      const over = await reserve(s.runtimeUrl, t, run);
      expect(over.body.error).toBe('ACTION_QUOTA_EXCEEDED');
      expect((await counters(redis, t.tenant))[key]).toBe(5);
      const st = (await reservations(redis, t.tenant)).status;
      expect(Object.keys(st).filter((id) => st[id] === 'ACTIVE').sort()).toEqual([...active].sort());
      await expectReserved(redis, t, 5);
    }
  });
});

describe('two server processes on one Redis', () => {
  let redis: TestRedis;
  let a: ChildServer;
  let b: ChildServer;
  beforeAll(async () => {
    redis = await startTestRedis();
    const opts = { redisUrl: redis.url, adminKey: ADMIN_KEY, env: { CYCLES_FEATURES: 'v0.1.26' } };
    [a, b] = await Promise.all([startChildServer(opts), startChildServer(opts)]);
  }, 60_000);
  afterAll(async () => {
    await stopAllChildServers();
    await redis?.stop();
  });

  it('100 parallel reserves split over both processes (each with its own policy cache): exactly 5 ALLOW, 95 × 409 at 5/5', async () => {
    const { rs } = await perRunRace(redis.client, a.adminUrl, [a.runtimeUrl, b.runtimeUrl]);
    // both processes took part in the race and both allowed or refused by the same rule
    const byServer = [0, 1].map((k) => statuses(rs.filter((_, i) => i % 2 === k)));
    expect(byServer.map((x) => (x[200] ?? 0) + (x[409] ?? 0))).toEqual([50, 50]);
  });

  it('a second round on a fresh tenant, after both caches are warm: the same exact outcome', async () => {
    await perRunRace(redis.client, b.adminUrl, [b.runtimeUrl, a.runtimeUrl]);
  });
});
