// Expiry sweeper: held amounts come back after TTL + grace with the sweeper running in two
// servers on one Redis at once, and every reservation expires exactly once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, ADMIN_KEY, type TestServer } from './helpers/server';
import { getBudget, putBudget } from './helpers/fixtures';
import { commitPath, expectLedgerHolds, extendPath, outboxEvents, redisNowMs, releasePath, reserve, setExpiry, uid, readReservation } from './helpers/reservations';
import { startServer, type RunningServer } from '../src/server';
import { keys } from '../src/store/keys';
import { sweepOnce } from '../src/ledger/sweeper';
import { retentionTrimOnce } from '../src/export/retention';

const U = 'USD_MICROCENTS';
const SWEEP_MS = '50';
let srv: TestServer;
let other: RunningServer;
beforeAll(async () => {
  srv = await startTestServer({ CYCLES_SWEEP_INTERVAL_MS: SWEEP_MS });
  other = await startServer({
    env: {
      REDIS_URL: srv.redis.url, ADMIN_API_KEY: ADMIN_KEY, CYCLES_RUNTIME_PORT: '0', CYCLES_ADMIN_PORT: '0',
      CYCLES_VALIDATE_RESPONSES: '1', CYCLES_LOG_LEVEL: process.env.CYCLES_LOG_LEVEL ?? 'silent',
      CYCLES_SPECS_DIR: process.env.CYCLES_SPECS_DIR ?? '', CYCLES_SWEEP_INTERVAL_MS: SWEEP_MS,
    },
  });
}, 120_000);
afterAll(async () => {
  await other?.stop();
  await srv?.stop();
});
const redis = () => srv.redis.client;

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function tenant(allocated = 100_000): Promise<{ t: string; key: string; root: string; ws: string }> {
  const t = uid('x');
  const root = `tenant:${t}`;
  const ws = `${root}/workspace:w`;
  await putBudget(redis(), t, root, U, { allocated });
  await putBudget(redis(), t, ws, U, { allocated });
  return { t, key: await srv.tenantKey(t), root, ws };
}

const statusOf = async (t: string, id: string) => (await redis().hget(keys.reservation(t, id), 'status')) ?? '';

describe('expiry sweeper', () => {
  it('two servers sweeping one Redis: held amounts come back after TTL + grace, each reservation expires exactly once', async () => {
    const a = await tenant();
    const b = await tenant();
    const ids: { t: string; id: string }[] = [];
    const made = await Promise.all(Array.from({ length: 24 }, (_, i) => {
      const c = i % 2 ? a : b;
      return reserve(srv, c.key, c.t, { estimate: 100 + i, ttl_ms: 1_000, grace_period_ms: 300, subject: { tenant: c.t, workspace: 'w' } })
        .then((id) => ({ t: c.t, id }));
    }));
    ids.push(...made);
    for (const c of [a, b]) {
      expect(BigInt((await getBudget(redis(), c.t, c.ws, U)).reserved)).toBeGreaterThan(0n);
    }
    // still held after the TTL while inside the grace window
    await new Promise((r) => setTimeout(r, 1_050));
    expect((await Promise.all(ids.map((x) => statusOf(x.t, x.id)))).filter((s) => s === 'EXPIRED').length).toBeLessThan(ids.length);
    await waitFor(async () => (await Promise.all(ids.map((x) => statusOf(x.t, x.id)))).every((s) => s === 'EXPIRED'), 8_000);

    for (const c of [a, b]) {
      for (const scope of [c.root, c.ws]) {
        const h = await getBudget(redis(), c.t, scope, U);
        expect([h.reserved, h.remaining, h.spent]).toEqual(['0', '100000', '0']);
      }
      await expectLedgerHolds(redis(), c.t);
    }
    const events = [...await outboxEvents(redis(), a.t), ...await outboxEvents(redis(), b.t)].filter((e) => e.type === 'reservation.expired');
    expect(events).toHaveLength(ids.length);
    expect(new Set(events.map((e) => e.data.reservation_id)).size).toBe(ids.length);
    expect(events.every((e) => e.actor.type === 'system')).toBe(true);
    const estimateOf = new Map(ids.map((x, i) => [x.id, String(100 + i)]));
    for (const e of events) {
      expect(e.data).toMatchObject({ unit: U, estimated_amount: estimateOf.get(e.data.reservation_id) });
      expect(e.data.scope).toMatch(/^tenant:x-.*\/workspace:w$/);
    }
    for (const x of ids) expect(await redis().zscore(keys.expirySchedule(x.t), x.id)).toBeNull();

    // every mutation answers 410 now; the read answers 410 too
    const { t, id } = ids[0];
    const key = t === a.t ? a.key : b.key;
    for (const [path, body] of [
      [commitPath(id), { idempotency_key: 'c', actual: { unit: U, amount: 1 } }],
      [releasePath(id), { idempotency_key: 'r' }],
      [extendPath(id), { idempotency_key: 'e', extend_by_ms: 1_000 }],
    ] as const) {
      const r = await call(srv.runtimeUrl, 'POST', path, { key, body });
      expect([r.status, r.body.error]).toEqual([410, 'RESERVATION_EXPIRED']);
    }
    const get = await call(other.urls.runtime!, 'GET', `/v1/reservations/${id}`, { key });
    expect(get.status).toBe(410);
  }, 30_000);

  it('concurrent sweep batches racing on the same candidates expire each reservation exactly once', async () => {
    const c = await tenant();
    const ids = await Promise.all(Array.from({ length: 40 }, () => reserve(srv, c.key, c.t, { estimate: 10, ttl_ms: 60_000, grace_period_ms: 0 })));
    const past = (await redisNowMs(redis())) - 1;
    // Make them all due at once (hash and schedule), then race four batches plus the
    // two background sweepers.
    await Promise.all(ids.map((id) => setExpiry(redis(), c.t, id, past)));
    await redis().zadd(keys.expirySchedule(c.t), ...ids.flatMap((id) => [String(past), id]));
    const stats = await Promise.all([sweepOnce(srv.server.deps), sweepOnce(other.deps), sweepOnce(srv.server.deps), sweepOnce(other.deps)]);
    await waitFor(async () => (await Promise.all(ids.map((id) => statusOf(c.t, id)))).every((s) => s === 'EXPIRED'), 5_000);
    const expired = (await outboxEvents(redis(), c.t)).filter((e) => e.type === 'reservation.expired');
    expect(expired).toHaveLength(ids.length);
    expect(new Set(expired.map((e) => e.data.reservation_id))).toEqual(new Set(ids));
    expect(stats.reduce((n, s) => n + s.expired, 0)).toBeLessThanOrEqual(ids.length);
    expect(stats.every((s) => s.failed === 0)).toBe(true);
    const h = await getBudget(redis(), c.t, c.root, U);
    expect([h.reserved, h.remaining]).toEqual(['0', '100000']);
  }, 30_000);

  it('an extended reservation is not expired at its old deadline; a stale early score is re-scored, not expired', async () => {
    const c = await tenant();
    const ext = await reserve(srv, c.key, c.t, { estimate: 10, ttl_ms: 1_000, grace_period_ms: 0 });
    const r = await call(srv.runtimeUrl, 'POST', extendPath(ext), { key: c.key, body: { idempotency_key: 'e', extend_by_ms: 20_000 } });
    expect(r.status).toBe(200);
    const far = await reserve(srv, c.key, c.t, { estimate: 10, ttl_ms: 60_000, grace_period_ms: 1_000 });
    const h = await readReservation(redis(), c.t, far);
    await redis().zadd(keys.expirySchedule(c.t), '1', far); // stale: due long ago
    await new Promise((res) => setTimeout(res, 1_300));
    expect(await statusOf(c.t, ext)).toBe('ACTIVE');
    expect(await statusOf(c.t, far)).toBe('ACTIVE');
    expect(await redis().zscore(keys.expirySchedule(c.t), far)).toBe(String(Number(h.expires_at_ms) + 1_000));
    expect((await getBudget(redis(), c.t, c.root, U)).reserved).toBe('20');
  }, 30_000);

  it('stale entries (committed reservations, unknown ids) are dropped without events', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    expect((await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: 'c', actual: { unit: U, amount: 5 } } })).status).toBe(200);
    expect(await redis().zscore(keys.expirySchedule(c.t), id)).toBeNull(); // the commit unscheduled it
    const members = [id, 'res_missing', 'garbage'];
    await redis().zadd(keys.expirySchedule(c.t), ...members.flatMap((m) => ['1', m]));
    await waitFor(async () => (await Promise.all(members.map((m) => redis().zscore(keys.expirySchedule(c.t), m)))).every((s) => s === null), 5_000);
    expect((await outboxEvents(redis(), c.t)).filter((e) => e.type === 'reservation.expired')).toEqual([]);
    expect(await statusOf(c.t, id)).toBe('COMMITTED');
  }, 30_000);
});

describe('retention of finished reservations', () => {
  it('commit, release and expiry set the 90-day TTL (from created_at, DX1) on the reservation hash and unschedule it', async () => {
    const c = await tenant();
    const committed = await reserve(srv, c.key, c.t, { estimate: 10 });
    const released = await reserve(srv, c.key, c.t, { estimate: 10 });
    const expiring = await reserve(srv, c.key, c.t, { estimate: 10, ttl_ms: 1000, grace_period_ms: 0 });
    const active = await reserve(srv, c.key, c.t, { estimate: 10 });
    const rt = (m: string, p: string, body: unknown) => call(srv.runtimeUrl, m, p, { key: c.key, body });
    expect((await rt('POST', `/v1/reservations/${committed}/commit`, { idempotency_key: 'c', actual: { unit: U, amount: 5 } })).status).toBe(200);
    expect((await rt('POST', `/v1/reservations/${released}/release`, { idempotency_key: 'r' })).status).toBe(200);
    const deadline = Date.now() + 15_000;
    while ((await redis().hget(keys.reservation(c.t, expiring), 'status')) !== 'EXPIRED') {
      if (Date.now() > deadline) throw new Error('not expired in time');
      await new Promise((res) => setTimeout(res, 100));
    }
    const retention = 90 * 86_400_000;
    for (const id of [committed, released, expiring]) {
      const created = Number((await readReservation(redis(), c.t, id)).created_at_ms);
      const at = await redis().pexpiretime(keys.reservation(c.t, id));
      expect(at).toBe(created + retention);
      expect(await redis().zscore(keys.expirySchedule(c.t), id)).toBeNull();
    }
    // an ACTIVE reservation is never given a TTL and stays scheduled
    expect(await redis().pttl(keys.reservation(c.t, active))).toBe(-1);
    expect(await redis().zscore(keys.expirySchedule(c.t), active)).not.toBeNull();
  });
});

describe('retention of the created-at index', () => {
  it('the retention trim removes index entries older than 90 days and keeps younger ones', async () => {
    const c = await tenant();
    const now = await redisNowMs(redis());
    const day = 86_400_000;
    await redis().zadd(keys.reservationIndex(c.t), now - 91 * day, 'res_old', now - 89 * day, 'res_young');
    await retentionTrimOnce({ redis: redis(), config: srv.server.config });
    expect(await redis().zscore(keys.reservationIndex(c.t), 'res_old')).toBeNull();
    expect(await redis().zscore(keys.reservationIndex(c.t), 'res_young')).not.toBeNull();
  });
});
