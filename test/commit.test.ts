// commitReservation: every error code, every overage branch with exact numbers and the
// ledger invariant on every scope, grace window, byte-identical replay, int64 boundaries.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { getBudget, putBudget, putTenant, type BudgetSeed } from './helpers/fixtures';
import { commitPath, expectLedgerHolds, outboxEvents, redisNowMs, releasePath, reserve, setExpiry, uid, readReservation } from './helpers/reservations';
import { keys } from '../src/store/keys';

const U = 'USD_MICROCENTS';
let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });

const redis = () => srv.redis.client;

/** A tenant with budgets at tenant level and (optionally) workspace level. */
async function tenantWith(root: BudgetSeed, ws?: BudgetSeed): Promise<{ t: string; key: string; subject: Record<string, string>; rootScope: string; wsScope: string }> {
  const t = uid('c');
  const rootScope = `tenant:${t}`;
  const wsScope = `${rootScope}/workspace:w`;
  await putBudget(redis(), t, rootScope, U, root);
  if (ws) await putBudget(redis(), t, wsScope, U, ws);
  return { t, key: await srv.tenantKey(t), subject: ws ? { tenant: t, workspace: 'w' } : { tenant: t }, rootScope, wsScope };
}

const commit = (key: string, id: string, amount: bigint | number, extra: Record<string, unknown> = {}) =>
  call(srv.runtimeUrl, 'POST', commitPath(id), { key, body: { idempotency_key: uid('k'), actual: { unit: U, amount }, ...extra } });

const big = (h: Record<string, string>, f: string) => BigInt(h[f]);

describe('commit: happy paths', () => {
  it('actual < estimate charges actual and releases the rest on every budgeted scope', async () => {
    const c = await tenantWith({ allocated: 10_000 }, { allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 400, subject: c.subject });
    const r = await commit(c.key, id, 150, { metrics: { tokens_input: 10, latency_ms: 5 }, metadata: { run: 'x' } });
    expect(r.status, r.text).toBe(200);
    expect(r.body.status).toBe('COMMITTED');
    expect(r.body.charged).toEqual({ unit: U, amount: 150 });
    expect(r.body.released).toEqual({ unit: U, amount: 250 });
    expect(r.headers.get('x-cycles-tenant')).toBe(c.t);
    const root = await getBudget(redis(), c.t, c.rootScope, U);
    const ws = await getBudget(redis(), c.t, c.wsScope, U);
    expect([root.spent, root.reserved, root.remaining]).toEqual(['150', '0', '9850']);
    expect([ws.spent, ws.reserved, ws.remaining]).toEqual(['150', '0', '850']);
    expect(r.body.balances.map((b: any) => [b.scope, b.remaining.amount])).toEqual([[c.rootScope, 9850], [c.wsScope, 850]]);
    await expectLedgerHolds(redis(), c.t);
    const h = await readReservation(redis(), c.t, id);
    expect(h.status).toBe('COMMITTED');
    expect(h.charged).toBe('150');
    expect(JSON.parse(h.committed_metrics)).toEqual({ tokens_input: 10, latency_ms: 5 });
    expect(JSON.parse(h.committed_metadata)).toEqual({ run: 'x' });
    expect(Number(h.committed_at_ms)).toBeGreaterThan(0);
    // the sweeper no longer needs it
    expect(await redis().zscore(keys.expirySchedule(c.t), id)).toBeNull();
    // no overage → no overage event
    expect((await outboxEvents(redis(), c.t)).filter((e) => e.type === 'reservation.commit_overage')).toEqual([]);
  });

  it('actual == estimate: charged = estimate and no `released` field', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 300 });
    const r = await commit(c.key, id, 300);
    expect(r.status, r.text).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 300 });
    expect('released' in r.body).toBe(false);
    await expectLedgerHolds(redis(), c.t);
  });

  it('commit inside the grace window (past expires_at, before expires_at + grace) succeeds', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, grace_period_ms: 60_000 });
    await setExpiry(redis(), c.t, id, (await redisNowMs(redis())) - 5_000);
    const r = await commit(c.key, id, 100);
    expect(r.status, r.text).toBe(200);
  });

  it('replay with the same key and payload is byte-identical and charges once; key order does not matter', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    const body = { idempotency_key: uid('k'), actual: { unit: U, amount: 70 }, metadata: { a: 1, b: 2 } };
    const first = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body });
    expect(first.status, first.text).toBe(200);
    // Ledger moves after the commit; the replay must still show the original snapshot.
    const other = await reserve(srv, c.key, c.t, { estimate: 200 });
    const reordered = `{"metadata":{"b":2,"a":1},"actual":{"amount":70,"unit":"${U}"},"idempotency_key":"${body.idempotency_key}"}`;
    const again = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, rawBody: reordered });
    expect(again.status).toBe(200);
    expect(again.text).toBe(first.text);
    const viaHeader = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body, headers: { 'X-Idempotency-Key': body.idempotency_key } });
    expect(viaHeader.text).toBe(first.text);
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.spent, b.reserved]).toEqual(['70', '200']);
    expect(other).toBeTruthy();
    await expectLedgerHolds(redis(), c.t);
  });
});

describe('commit: errors', () => {
  it('404 NOT_FOUND for a reservation that never existed', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const r = await commit(c.key, 'res_doesnotexist', 1);
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('NOT_FOUND');
  });

  it('403 FORBIDDEN for another tenant\'s reservation, which stays untouched', async () => {
    const a = await tenantWith({ allocated: 1_000 });
    const b = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, a.key, a.t, { estimate: 100 });
    const r = await commit(b.key, id, 50);
    expect(r.status).toBe(403);
    expect(r.body.error).toBe('FORBIDDEN');
    expect((await readReservation(redis(), a.t, id)).status).toBe('ACTIVE');
  });

  it('409 RESERVATION_FINALIZED on a second commit with a different key, and on commit after release', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    expect((await commit(c.key, id, 80)).status).toBe(200);
    const again = await commit(c.key, id, 80);
    expect(again.status).toBe(409);
    expect(again.body.error).toBe('RESERVATION_FINALIZED');
    const id2 = await reserve(srv, c.key, c.t, { estimate: 100 });
    expect((await call(srv.runtimeUrl, 'POST', releasePath(id2), { key: c.key, body: { idempotency_key: uid('r') } })).status).toBe(200);
    const afterRelease = await commit(c.key, id2, 10);
    expect(afterRelease.status).toBe(409);
    expect(afterRelease.body.error).toBe('RESERVATION_FINALIZED');
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.spent, b.reserved, b.remaining]).toEqual(['80', '0', '920']);
  });

  it('409 IDEMPOTENCY_MISMATCH when the key is reused with a different payload', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    const k = uid('k');
    expect((await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: k, actual: { unit: U, amount: 10 } } })).status).toBe(200);
    const r = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: k, actual: { unit: U, amount: 11 } } });
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('IDEMPOTENCY_MISMATCH');
  });

  it('400 when X-Idempotency-Key and body idempotency_key differ', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    const r = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, headers: { 'X-Idempotency-Key': 'other' }, body: { idempotency_key: 'one', actual: { unit: U, amount: 1 } } });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('INVALID_REQUEST');
  });

  it('400 UNIT_MISMATCH writes nothing and leaves the reservation ACTIVE (it can still be committed)', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    const before = await getBudget(redis(), c.t, c.rootScope, U);
    const r = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, body: { idempotency_key: uid('k'), actual: { unit: 'TOKENS', amount: 5 } } });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('UNIT_MISMATCH');
    expect(r.body.details).toMatchObject({ requested_unit: 'TOKENS', expected_units: [U] });
    expect(await getBudget(redis(), c.t, c.rootScope, U)).toEqual(before);
    expect((await readReservation(redis(), c.t, id)).status).toBe('ACTIVE');
    expect((await commit(c.key, id, 100)).status).toBe(200);
  });

  it('410 RESERVATION_EXPIRED past expires_at + grace (real clock), nothing written', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, ttl_ms: 1_000, grace_period_ms: 0 });
    await new Promise((r) => setTimeout(r, 1_150));
    const before = await getBudget(redis(), c.t, c.rootScope, U);
    const r = await commit(c.key, id, 100);
    expect(r.status).toBe(410);
    expect(r.body.error).toBe('RESERVATION_EXPIRED');
    expect(await getBudget(redis(), c.t, c.rootScope, U)).toEqual(before);
  });

  it('409 TENANT_CLOSED for fresh commits (outranking FINALIZED); a pre-close replay still returns the original', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const done = await reserve(srv, c.key, c.t, { estimate: 100 });
    const open = await reserve(srv, c.key, c.t, { estimate: 100 });
    const body = { idempotency_key: uid('k'), actual: { unit: U, amount: 40 } };
    const original = await call(srv.runtimeUrl, 'POST', commitPath(done), { key: c.key, body });
    expect(original.status).toBe(200);
    await putTenant(redis(), c.t, { status: 'CLOSED' });
    const fresh = await commit(c.key, open, 10);
    expect(fresh.status).toBe(409);
    expect(fresh.body.error).toBe('TENANT_CLOSED');
    // a committed reservation + a different key would be FINALIZED; the guard outranks it
    const finalized = await commit(c.key, done, 40);
    expect(finalized.status).toBe(409);
    expect(finalized.body.error).toBe('TENANT_CLOSED');
    const replay = await call(srv.runtimeUrl, 'POST', commitPath(done), { key: c.key, body });
    expect(replay.status).toBe(200);
    expect(replay.text).toBe(original.text);
    expect((await readReservation(redis(), c.t, open)).status).toBe('ACTIVE');
  });

  it('500 when the tenant record is corrupt (fail closed), nothing written', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    await putTenant(redis(), c.t, { status: 'WEIRD' });
    const r = await commit(c.key, id, 10);
    expect(r.status).toBe(500);
    expect((await readReservation(redis(), c.t, id)).status).toBe('ACTIVE');
  });
});

describe('commit: overage policies (actual > estimate)', () => {
  it('REJECT → 409 BUDGET_EXCEEDED, nothing written, reservation still ACTIVE and releasable', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, overage_policy: 'REJECT' });
    const before = await getBudget(redis(), c.t, c.rootScope, U);
    const r = await commit(c.key, id, 101);
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('BUDGET_EXCEEDED');
    expect(await getBudget(redis(), c.t, c.rootScope, U)).toEqual(before);
    expect((await call(srv.runtimeUrl, 'POST', releasePath(id), { key: c.key, body: { idempotency_key: uid('r') } })).status).toBe(200);
  });

  it('ALLOW_IF_AVAILABLE with enough remaining charges the full actual everywhere', async () => {
    const c = await tenantWith({ allocated: 10_000 }, { allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, subject: c.subject, overage_policy: 'ALLOW_IF_AVAILABLE' });
    const r = await commit(c.key, id, 350);
    expect(r.status, r.text).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 350 });
    const ws = await getBudget(redis(), c.t, c.wsScope, U);
    expect([ws.spent, ws.reserved, ws.remaining, ws.is_over_limit, ws.debt]).toEqual(['350', '0', '650', '0', '0']);
    await expectLedgerHolds(redis(), c.t);
    const ev = (await outboxEvents(redis(), c.t)).filter((e) => e.type === 'reservation.commit_overage');
    expect(ev).toHaveLength(1);
    expect(ev[0].data).toMatchObject({ reservation_id: id, estimated_amount: '100', actual_amount: '350', overage: '250', overage_policy: 'ALLOW_IF_AVAILABLE', debt_incurred: '0' });
  });

  it('ALLOW_IF_AVAILABLE capped: charge estimate + min remaining, over-limit only where the delta was not covered, never debt', async () => {
    // root: allocated 1000, spent 870 → remaining 130, after reserving 100 → 30
    // ws:   allocated 1000            → remaining 1000, after reserving 100 → 900
    const c = await tenantWith({ allocated: 1_000, spent: 870 }, { allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, subject: c.subject });
    const r = await commit(c.key, id, 300); // delta 200, capped to 30
    expect(r.status, r.text).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 130 });
    expect('released' in r.body).toBe(false);
    const root = await getBudget(redis(), c.t, c.rootScope, U);
    const ws = await getBudget(redis(), c.t, c.wsScope, U);
    expect([root.spent, root.reserved, root.remaining, root.debt, root.is_over_limit]).toEqual(['1000', '0', '0', '0', '1']);
    expect([ws.spent, ws.reserved, ws.remaining, ws.debt, ws.is_over_limit]).toEqual(['130', '0', '870', '0', '0']);
    expect(r.body.balances.map((b: any) => b.is_over_limit)).toEqual([true, false]);
    await expectLedgerHolds(redis(), c.t);
    const types = (await outboxEvents(redis(), c.t)).map((e) => `${e.type}@${e.scope}`);
    expect(types).toContain(`reservation.commit_overage@${c.wsScope}`);
    expect(types).toContain(`budget.over_limit_entered@${c.rootScope}`);
    expect(types).toContain(`budget.exhausted@${c.rootScope}`);
    expect(types).not.toContain(`budget.over_limit_entered@${c.wsScope}`);
    expect(types.filter((x) => x.startsWith('budget.debt_incurred'))).toEqual([]);
  });

  it('ALLOW_IF_AVAILABLE with no remaining at all charges exactly the estimate', async () => {
    const c = await tenantWith({ allocated: 100 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    const r = await commit(c.key, id, 500);
    expect(r.status).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 100 });
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.spent, b.remaining, b.debt, b.is_over_limit]).toEqual(['100', '0', '0', '1']);
    await expectLedgerHolds(redis(), c.t);
  });

  it('ALLOW_WITH_OVERDRAFT with remaining covering the delta commits normally (no debt)', async () => {
    const c = await tenantWith({ allocated: 1_000, overdraft_limit: 500 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const r = await commit(c.key, id, 400);
    expect(r.status).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 400 });
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.spent, b.remaining, b.debt, b.is_over_limit]).toEqual(['400', '600', '0', '0']);
  });

  it('ALLOW_WITH_OVERDRAFT within the limit: covered part from remaining, the rest becomes debt', async () => {
    // allocated 1000, spent 880 → remaining 120; reserve 100 → remaining 20
    const c = await tenantWith({ allocated: 1_000, spent: 880, overdraft_limit: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const r = await commit(c.key, id, 300); // delta 200: 20 funded, 180 debt
    expect(r.status, r.text).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 300 });
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.spent, b.reserved, b.debt, b.remaining, b.is_over_limit]).toEqual(['1000', '0', '180', '-180', '0']);
    expect(r.body.balances[0].remaining).toEqual({ unit: U, amount: -180 });
    expect(r.body.balances[0].debt).toEqual({ unit: U, amount: 180 });
    await expectLedgerHolds(redis(), c.t);
    const ev = await outboxEvents(redis(), c.t);
    const debt = ev.filter((e) => e.type === 'budget.debt_incurred');
    expect(debt).toHaveLength(1);
    expect(debt[0].data).toMatchObject({ scope: c.rootScope, reservation_id: id, debt_incurred: '180', total_debt: '180', overdraft_limit: '1000' });
    expect(ev.filter((e) => e.type === 'reservation.commit_overage')[0].data.debt_incurred).toBe('180');
    expect(ev.filter((e) => e.type === 'budget.exhausted')).toHaveLength(1);
  });

  it('ALLOW_WITH_OVERDRAFT: debt + deficit exactly at the limit is allowed; one unit more is 409 OVERDRAFT_LIMIT_EXCEEDED with nothing written', async () => {
    const c = await tenantWith({ allocated: 100, overdraft_limit: 50 });
    const a = await reserve(srv, c.key, c.t, { estimate: 50, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const b = await reserve(srv, c.key, c.t, { estimate: 50, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    // remaining 0: every unit of overage is debt
    const before = await getBudget(redis(), c.t, c.rootScope, U);
    const over = await commit(c.key, a, 101); // deficit 51 > 50
    expect(over.status).toBe(409);
    expect(over.body.error).toBe('OVERDRAFT_LIMIT_EXCEEDED');
    expect(over.body.details).toMatchObject({ scope: c.rootScope, current_debt: '0', deficit: '51', overdraft_limit: '50' });
    expect(await getBudget(redis(), c.t, c.rootScope, U)).toEqual(before);
    expect((await readReservation(redis(), c.t, a)).status).toBe('ACTIVE');
    const ok = await commit(c.key, a, 100); // deficit 50 == limit
    expect(ok.status, ok.text).toBe(200);
    let h = await getBudget(redis(), c.t, c.rootScope, U);
    expect([h.spent, h.reserved, h.debt, h.remaining, h.is_over_limit]).toEqual(['50', '50', '50', '-50', '0']);
    // the second one now has no headroom at all
    const none = await commit(c.key, b, 51);
    expect(none.status).toBe(409);
    expect(none.body.error).toBe('OVERDRAFT_LIMIT_EXCEEDED');
    expect((await commit(c.key, b, 50)).status).toBe(200);
    h = await getBudget(redis(), c.t, c.rootScope, U);
    expect([h.spent, h.reserved, h.debt, h.remaining]).toEqual(['100', '0', '50', '-50']);
    await expectLedgerHolds(redis(), c.t);
  });

  it('ALLOW_WITH_OVERDRAFT: a scope with overdraft_limit 0 behaves as ALLOW_IF_AVAILABLE and caps the charge for all scopes', async () => {
    // root: limit 0, remaining after reserve 50; ws: limit 1000, remaining after reserve 10
    const c = await tenantWith({ allocated: 1_000, spent: 850 }, { allocated: 110, overdraft_limit: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, subject: c.subject, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const r = await commit(c.key, id, 300); // delta 200 → capped to 50 by root; ws: 10 funded, 40 debt
    expect(r.status, r.text).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 150 });
    const root = await getBudget(redis(), c.t, c.rootScope, U);
    const ws = await getBudget(redis(), c.t, c.wsScope, U);
    expect([root.spent, root.remaining, root.debt, root.is_over_limit]).toEqual(['1000', '0', '0', '1']);
    expect([ws.spent, ws.remaining, ws.debt, ws.is_over_limit]).toEqual(['110', '-40', '40', '0']);
    await expectLedgerHolds(redis(), c.t);
  });

  it('ALLOW_WITH_OVERDRAFT: a zero-limit scope never produces OVERDRAFT_LIMIT_EXCEEDED', async () => {
    const c = await tenantWith({ allocated: 100 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const r = await commit(c.key, id, 1_000);
    expect(r.status).toBe(200);
    expect(r.body.charged).toEqual({ unit: U, amount: 100 });
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.debt, b.is_over_limit]).toEqual(['0', '1']);
  });

  it('a commit that leaves debt > overdraft_limit marks the scope over-limit (limit lowered after debt was taken)', async () => {
    const c = await tenantWith({ allocated: 200, overdraft_limit: 100 });
    const a = await reserve(srv, c.key, c.t, { estimate: 100, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const b = await reserve(srv, c.key, c.t, { estimate: 100, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    expect((await commit(c.key, a, 180)).status).toBe(200); // 80 debt
    // operator lowers the limit below the debt (admin plane; here directly)
    await redis().hset(keys.budget(c.t, c.rootScope, U), 'overdraft_limit', '50');
    const r = await commit(c.key, b, 100); // no overage, but debt 80 > limit 50 now
    expect(r.status, r.text).toBe(200);
    const h = await getBudget(redis(), c.t, c.rootScope, U);
    expect([h.debt, h.is_over_limit, h.remaining]).toEqual(['80', '1', '-80']);
    const ev = (await outboxEvents(redis(), c.t)).filter((e) => e.type === 'budget.over_limit_entered');
    expect(ev).toHaveLength(1);
    expect(ev[0].data).toMatchObject({ debt: '80', overdraft_limit: '50', is_over_limit: true });
    await expectLedgerHolds(redis(), c.t);
  });

  it('existing ACTIVE reservations on an over-limit scope can still be committed', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 100 });
    await redis().hset(keys.budget(c.t, c.rootScope, U), 'is_over_limit', '1');
    expect((await commit(c.key, id, 90)).status).toBe(200);
  });
});

describe('commit: int64', () => {
  const MAX = 2n ** 63n - 1n;

  it('amounts beyond 2^53 are exact (estimate 2^53+1, actual 2^53+3)', async () => {
    const c = await tenantWith({ allocated: 2n ** 62n });
    const est = 2n ** 53n + 1n;
    const id = await reserve(srv, c.key, c.t, { estimate: est });
    const r = await commit(c.key, id, est + 2n);
    expect(r.status, r.text).toBe(200);
    expect(r.body.charged.amount).toBe(9007199254740995n);
    expect(r.text).toContain('"amount":9007199254740995');
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect(b.spent).toBe('9007199254740995');
    expect(big(b, 'remaining')).toBe(2n ** 62n - 9007199254740995n);
    await expectLedgerHolds(redis(), c.t);
  });

  it('2^53−1 released exactly; 2^63−1 committed exactly', async () => {
    const c = await tenantWith({ allocated: MAX });
    const id = await reserve(srv, c.key, c.t, { estimate: MAX });
    const r = await commit(c.key, id, MAX - (2n ** 53n - 1n));
    expect(r.status, r.text).toBe(200);
    expect(r.body.released.amount).toBe(2 ** 53 - 1);
    const id2 = await reserve(srv, c.key, c.t, { estimate: 2n ** 53n - 1n });
    expect((await commit(c.key, id2, 2n ** 53n - 1n)).status).toBe(200);
    const b = await getBudget(redis(), c.t, c.rootScope, U);
    expect([b.spent, b.remaining, b.reserved]).toEqual([MAX.toString(), '0', '0']);
    await expectLedgerHolds(redis(), c.t);
  });

  it('a commit whose spent would overflow int64 is refused (409 BUDGET_EXCEEDED, INT64_OVERFLOW) with no partial write', async () => {
    const c = await tenantWith({ allocated: MAX }, { allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 15, subject: c.subject });
    // An admin debit after the reserve leaves root spent near MAX with remaining negative
    // (spent MAX-5, reserved 15 → remaining -10, invariant intact).
    await redis().hset(keys.budget(c.t, c.rootScope, U), { spent: (MAX - 5n).toString(), remaining: '-10' });
    await expectLedgerHolds(redis(), c.t);
    const root = await getBudget(redis(), c.t, c.rootScope, U);
    const ws = await getBudget(redis(), c.t, c.wsScope, U);
    const r = await commit(c.key, id, 15);
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('BUDGET_EXCEEDED');
    expect(r.body.details).toMatchObject({ scope: c.rootScope, field: 'spent', reason: 'INT64_OVERFLOW' });
    // neither scope changed (the ws scope is processed by the same script)
    expect(await getBudget(redis(), c.t, c.rootScope, U)).toEqual(root);
    expect(await getBudget(redis(), c.t, c.wsScope, U)).toEqual(ws);
    expect((await readReservation(redis(), c.t, id)).status).toBe('ACTIVE');
  });

  it('an actual of 2^63 is rejected as invalid input (400), nothing written', async () => {
    const c = await tenantWith({ allocated: 1_000 });
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    const r = await call(srv.runtimeUrl, 'POST', commitPath(id), { key: c.key, rawBody: `{"idempotency_key":"x","actual":{"unit":"${U}","amount":9223372036854775808}}` });
    expect(r.status).toBe(400);
    expect((await readReservation(redis(), c.t, id)).status).toBe('ACTIVE');
  });
});
