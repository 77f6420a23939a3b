// extendReservation: relative extension, volatile remaining_ttl_ms on replay, no grace,
// MAX_EXTENSIONS_EXCEEDED, every error code, and the sweep schedule moving with expiry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { putBudget, putTenant } from './helpers/fixtures';
import { commitPath, extendPath, redisNowMs, releasePath, reserve, setExpiry, uid, readReservation } from './helpers/reservations';
import { keys } from '../src/store/keys';

const U = 'USD_MICROCENTS';
let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });
const redis = () => srv.redis.client;

async function tenant(fields?: Record<string, string>): Promise<{ t: string; key: string }> {
  const t = uid('e');
  if (fields) await putTenant(redis(), t, fields);
  await putBudget(redis(), t, `tenant:${t}`, U, { allocated: 1_000 });
  return { t, key: await srv.tenantKey(t) };
}

const extend = (key: string, id: string, by: number, k = uid('k')) =>
  call(srv.runtimeUrl, 'POST', extendPath(id), { key, body: { idempotency_key: k, extend_by_ms: by } });

describe('extend', () => {
  it('moves expires_at by extend_by_ms relative to the current expiry and changes nothing else', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 100, ttl_ms: 60_000, grace_period_ms: 2_000 });
    const before = await readReservation(redis(), c.t, id);
    // remaining_ttl_ms is computed on the Redis clock while the request runs, so it lies
    // between the lead measured just before and just after the request.
    const nowBefore = await redisNowMs(redis());
    const r = await extend(c.key, id, 30_000);
    const nowAfter = await redisNowMs(redis());
    expect(r.status, r.text).toBe(200);
    const expected = Number(before.expires_at_ms) + 30_000;
    expect(r.body.status).toBe('ACTIVE');
    expect(r.body.expires_at_ms).toBe(expected);
    expect(r.body.remaining_ttl_ms).toBeGreaterThanOrEqual(expected - nowAfter);
    expect(r.body.remaining_ttl_ms).toBeLessThanOrEqual(expected - nowBefore);
    expect(r.body.balances[0].reserved).toEqual({ unit: U, amount: 100 });
    const after = await readReservation(redis(), c.t, id);
    expect(after.expires_at_ms).toBe(String(expected));
    expect(after.extension_count).toBe('1');
    for (const f of ['estimate', 'unit', 'subject', 'action', 'scope_path', 'affected_scopes', 'status']) expect(after[f]).toBe(before[f]);
    // the sweeper's deadline moved too (expires_at + grace)
    expect(await redis().zscore(keys.expirySchedule(c.t), id)).toBe(String(expected + 2_000));
    // a second extension stacks on the first
    const r2 = await extend(c.key, id, 1_000);
    expect(r2.body.expires_at_ms).toBe(expected + 1_000);
  });

  it('replay returns the original fields with remaining_ttl_ms recomputed (0 once the reservation is no longer ACTIVE)', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 100, ttl_ms: 60_000 });
    const k = uid('k');
    const first = await extend(c.key, id, 10_000, k);
    expect(first.status).toBe(200);
    await new Promise((r) => setTimeout(r, 60));
    const again = await extend(c.key, id, 10_000, k);
    expect(again.status).toBe(200);
    expect(again.body.expires_at_ms).toBe(first.body.expires_at_ms);
    expect(again.body.balances).toEqual(first.body.balances);
    expect(again.body.remaining_ttl_ms).toBeLessThanOrEqual(first.body.remaining_ttl_ms - 50);
    // replay did not extend again
    expect((await readReservation(redis(), c.t, id)).extension_count).toBe('1');
    expect((await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: 'c', actual: { unit: U, amount: 1 } } })).status).toBe(200);
    const afterCommit = await extend(c.key, id, 10_000, k);
    expect(afterCommit.status).toBe(200);
    expect(afterCommit.body.remaining_ttl_ms).toBe(0);
    expect(afterCommit.body.expires_at_ms).toBe(first.body.expires_at_ms);
    const mismatch = await extend(c.key, id, 10_001, k);
    expect([mismatch.status, mismatch.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('404 NOT_FOUND and 403 FORBIDDEN', async () => {
    const a = await tenant();
    const b = await tenant();
    const id = await reserve(srv, a.key, a.t, { estimate: 10 });
    const nf = await extend(a.key, 'res_nope', 1_000);
    expect([nf.status, nf.body.error]).toEqual([404, 'NOT_FOUND']);
    const before = (await readReservation(redis(), a.t, id)).expires_at_ms;
    const fb = await extend(b.key, id, 1_000);
    expect([fb.status, fb.body.error]).toEqual([403, 'FORBIDDEN']);
    expect((await readReservation(redis(), a.t, id)).expires_at_ms).toBe(before);
  });

  it('409 RESERVATION_FINALIZED after release', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    expect((await call(srv.runtimeUrl, 'POST', releasePath(id), { key: c.key, body: { idempotency_key: 'r' } })).status).toBe(200);
    const r = await extend(c.key, id, 1_000);
    expect([r.status, r.body.error]).toEqual([409, 'RESERVATION_FINALIZED']);
  });

  it('410 after expires_at even inside the grace window (grace does not apply to extend), while commit still succeeds', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 100, ttl_ms: 1_000, grace_period_ms: 30_000 });
    await new Promise((r) => setTimeout(r, 1_100));
    const r = await extend(c.key, id, 5_000);
    expect([r.status, r.body.error]).toEqual([410, 'RESERVATION_EXPIRED']);
    const cm = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: 'c', actual: { unit: U, amount: 100 } } });
    expect(cm.status, cm.text).toBe(200);
  });

  it('409 MAX_EXTENSIONS_EXCEEDED once the tenant\'s max_reservation_extensions is used up', async () => {
    const c = await tenant({ max_reservation_extensions: '2' });
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    expect((await extend(c.key, id, 1_000)).status).toBe(200);
    expect((await extend(c.key, id, 1_000)).status).toBe(200);
    const before = (await readReservation(redis(), c.t, id)).expires_at_ms;
    const r = await extend(c.key, id, 1_000);
    expect([r.status, r.body.error]).toEqual([409, 'MAX_EXTENSIONS_EXCEEDED']);
    const h = await readReservation(redis(), c.t, id);
    expect([h.expires_at_ms, h.extension_count]).toEqual([before, '2']);
  });

  it('409 TENANT_CLOSED (outranking FINALIZED); a pre-close replay still succeeds', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    const done = await reserve(srv, c.key, c.t, { estimate: 10 });
    const k = uid('k');
    const original = await extend(c.key, id, 1_000, k);
    expect((await call(srv.runtimeUrl, 'POST', releasePath(done), { key: c.key, body: { idempotency_key: 'r' } })).status).toBe(200);
    await putTenant(redis(), c.t, { status: 'CLOSED' });
    const fresh = await extend(c.key, id, 1_000);
    expect([fresh.status, fresh.body.error]).toEqual([409, 'TENANT_CLOSED']);
    const fin = await extend(c.key, done, 1_000);
    expect([fin.status, fin.body.error]).toEqual([409, 'TENANT_CLOSED']);
    const replay = await extend(c.key, id, 1_000, k);
    expect(replay.status).toBe(200);
    expect(replay.body.expires_at_ms).toBe(original.body.expires_at_ms);
  });

  it('410 for a reservation whose status is EXPIRED', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    await setExpiry(redis(), c.t, id, 1, 0);
    await redis().hset(keys.reservation(c.t, id), 'status', 'EXPIRED');
    const r = await extend(c.key, id, 1_000);
    expect([r.status, r.body.error]).toEqual([410, 'RESERVATION_EXPIRED']);
  });

  it('400 for extend_by_ms outside 1..86400000', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    expect((await extend(c.key, id, 0)).status).toBe(400);
    expect((await extend(c.key, id, 86_400_001)).status).toBe(400);
  });
});
