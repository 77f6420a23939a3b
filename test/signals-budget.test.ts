// Budget signals written inside the ledger scripts (docs/decisions.md DV31, DV32):
// budget.threshold_crossed (rising/falling with re-arm band, from reserve, commit, release,
// expiry, createEvent and funding) and budget.over_limit_entered/exited (funding and
// updateBudget). Real HTTP, real Redis; every event validated with expectValidEvent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { expectValidEvent, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';
import { uid, commitPath, releasePath } from './helpers/reservations';
import { sweepOnce } from '../src/ledger/sweeper';

let s: TestServer;
beforeAll(async () => { s = await startTestServer({ CYCLES_SWEEP_INTERVAL_MS: '600000' }); }, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const T = (n: number | bigint) => ({ unit: 'TOKENS', amount: n });

async function tenantWithBudget(allocated: number, extra: Record<string, unknown> = {}) {
  const t = uid('sg');
  expect((await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t })).status).toBe(201);
  const r = await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: `tenant:${t}`, unit: 'TOKENS', allocated: T(allocated), ...extra });
  expect(r.status, r.text).toBe(201);
  const k = await admin('POST', '/v1/admin/api-keys', { tenant_id: t, name: 'agent' });
  expect(k.status, k.text).toBe(201);
  return { t, key: k.body.key_secret as string, scope: `tenant:${t}` };
}

async function reserve(key: string, t: string, amount: number, extra: Record<string, unknown> = {}) {
  const r = await call(s.runtimeUrl, 'POST', '/v1/reservations', { key, body: {
    idempotency_key: uid('r'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' },
    estimate: T(amount), ...extra,
  } });
  expect(r.status, r.text).toBe(200);
  return { id: r.body.reservation_id as string, requestId: r.headers.get('x-request-id')!, traceId: r.headers.get('x-cycles-trace-id')! };
}

/** The tenant's events of these types, rendered as the API serves them, each validated. */
async function signals(t: string, types = ['budget.threshold_crossed']) {
  const evs = (await storedEvents(s.redis.client, t)).filter((e) => types.includes(e.event_type));
  for (const e of evs) expectValidEvent(e);
  return evs;
}
const crossings = async (t: string) => (await signals(t)).map((e) => `${(e.data as any).direction} ${(e.data as any).threshold}`);

describe('budget.threshold_crossed', () => {
  it('fires once per direction crossing, re-arms only below the band, on every path that moves utilization', async () => {
    const { t, key, scope } = await tenantWithBudget(1000);
    // reserve: 0 → 0.80 (exactly at the threshold counts as crossed)
    const a = await reserve(key, t, 800);
    let evs = await signals(t);
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({
      scope, tenant_id: t, request_id: a.requestId, trace_id: a.traceId,
      actor: { type: 'api_key' },
      data: { scope, unit: 'TOKENS', threshold: 0.8, utilization: 0.8, direction: 'rising', allocated: 1000, reserved: 800, spent: 0, remaining: 200 },
    });
    // release: back to 0 → falling 0.8 (re-armed)
    expect((await call(s.runtimeUrl, 'POST', releasePath(a.id), { key, body: { idempotency_key: uid('rl') } })).status).toBe(200);
    expect(await crossings(t)).toEqual(['rising 0.8', 'falling 0.8']);

    await reserve(key, t, 790);                   // 0.79: nothing
    const c = await reserve(key, t, 20);          // 0.81: rising again
    expect(await crossings(t)).toEqual(['rising 0.8', 'falling 0.8', 'rising 0.8']);
    // hovering: 0.79 is inside the band (0.75..0.8): no falling, no second rising
    expect((await call(s.runtimeUrl, 'POST', releasePath(c.id), { key, body: { idempotency_key: uid('rl') } })).status).toBe(200);
    const d = await reserve(key, t, 20);
    expect(await crossings(t)).toHaveLength(3);

    // commit with overage: (790 + 200) / 1000 = 0.99 → rising 0.95 only
    const cm = await call(s.runtimeUrl, 'POST', commitPath(d.id), { key, body: { idempotency_key: uid('c'), actual: T(200) } });
    expect(cm.status, cm.text).toBe(200);
    evs = await signals(t);
    expect(evs.at(-1)).toMatchObject({ request_id: cm.headers.get('x-request-id'), data: { threshold: 0.95, direction: 'rising', spent: 200, reserved: 790 } });
    expect((evs.at(-1)!.data as any).utilization).toBeCloseTo(0.99, 10);

    // createEvent (post-hoc spend) to 1.0 → rising 1.0
    const ev = await call(s.runtimeUrl, 'POST', '/v1/events', { key, body: {
      idempotency_key: uid('e'), subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, actual: T(10),
    } });
    expect(ev.status, ev.text).toBe(201);
    expect(await crossings(t)).toEqual(['rising 0.8', 'falling 0.8', 'rising 0.8', 'rising 0.95', 'rising 1']);

    // funding doubles allocated: 1000/2000 = 0.5 → every crossed threshold falls, highest first
    // (same actor as the funding's own event: fundBudget acts admin-on-behalf-of the tenant)
    const f = await admin('POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=${encodeURIComponent(scope)}&unit=TOKENS`,
      { operation: 'CREDIT', amount: T(1000) });
    expect(f.status, f.text).toBe(200);
    evs = await signals(t);
    expect(evs.slice(-3).map((e) => `${(e.data as any).direction} ${(e.data as any).threshold}`)).toEqual(['falling 1', 'falling 0.95', 'falling 0.8']);
    expect(evs.at(-1)).toMatchObject({ actor: { type: 'admin_on_behalf_of' }, request_id: f.headers.get('x-request-id'), data: { utilization: 0.5, allocated: 2000 } });
    expect(await s.redis.client.hget(keys.budget(t, scope, 'TOKENS'), 'sig_util')).toBe('0');
  });

  it('the expiry sweeper releasing a hold is a falling crossing, attributed to the system', async () => {
    const { t, key } = await tenantWithBudget(100);
    await reserve(key, t, 90, { ttl_ms: 1000, grace_period_ms: 0 });
    expect(await crossings(t)).toEqual(['rising 0.8']);
    await new Promise((r) => setTimeout(r, 1100));
    await sweepOnce(s.server.deps);
    const evs = await signals(t);
    expect(evs.map((e) => `${(e.data as any).direction} ${(e.data as any).threshold}`)).toEqual(['rising 0.8', 'falling 0.8']);
    expect(evs[1].actor).toEqual({ type: 'system' });
    // the primary event of the change comes first
    const all = (await storedEvents(s.redis.client, t)).map((e) => e.event_type);
    expect(all.indexOf('reservation.expired')).toBeLessThan(all.lastIndexOf('budget.threshold_crossed'));
  });

  it('below every threshold nothing is written (and the budget hash gets no signal state)', async () => {
    const { t, key, scope } = await tenantWithBudget(1000);
    for (let i = 0; i < 5; i++) await reserve(key, t, 100);
    expect(await signals(t)).toEqual([]);
    expect(await s.redis.client.hexists(keys.budget(t, scope, 'TOKENS'), 'sig_util')).toBe(0);
  });

  it('concurrent reservations crossing together produce one rising event per threshold', async () => {
    const { t, key } = await tenantWithBudget(1000);
    await Promise.all(Array.from({ length: 50 }, () => reserve(key, t, 20)));
    expect(await crossings(t)).toEqual(['rising 0.8', 'rising 0.95', 'rising 1']);
  });
});

describe('budget.over_limit_entered / exited', () => {
  const budgetPath = (t: string, scope: string, op: string) =>
    `/v1/admin/budgets${op}?${op === '/fund' ? `tenant_id=${t}&` : ''}scope=${encodeURIComponent(scope)}&unit=TOKENS`;

  it('updateBudget moves is_over_limit both ways; REPAY_DEBT below the limit exits', async () => {
    const { t, key, scope } = await tenantWithBudget(100, { overdraft_limit: T(100), commit_overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const r = await reserve(key, t, 100);
    const cm = await call(s.runtimeUrl, 'POST', commitPath(r.id), { key, body: { idempotency_key: uid('c'), actual: T(180) } });
    expect(cm.status, cm.text).toBe(200); // debt 80 <= limit 100: not over
    const types = ['budget.over_limit_entered', 'budget.over_limit_exited'];
    expect(await signals(t, types)).toEqual([]);

    // lowering the limit below the debt flips is_over_limit 0 → 1
    const u = await admin('PATCH', budgetPath(t, scope, ''), { overdraft_limit: T(50) });
    expect(u.status, u.text).toBe(200);
    expect(u.body.is_over_limit).toBe(true);
    let evs = await signals(t, types);
    expect(evs.map((e) => e.event_type)).toEqual(['budget.over_limit_entered']);
    expect(evs[0]).toMatchObject({ scope, request_id: u.headers.get('x-request-id'), data: { debt: 80, overdraft_limit: 50, is_over_limit: true, debt_utilization: 1.6 } });

    // repaying to debt 40 <= 50 clears it: over_limit_exited, in the funding request's name
    const f = await admin('POST', budgetPath(t, scope, '/fund'), { operation: 'REPAY_DEBT', amount: T(40) });
    expect(f.status, f.text).toBe(200);
    evs = await signals(t, types);
    expect(evs.map((e) => e.event_type)).toEqual(['budget.over_limit_entered', 'budget.over_limit_exited']);
    expect(evs[1]).toMatchObject({ actor: { type: 'admin_on_behalf_of' }, request_id: f.headers.get('x-request-id'),
      data: { scope, unit: 'TOKENS', debt: 40, overdraft_limit: 50, is_over_limit: false, debt_utilization: 0.8 } });

    // a change that leaves the flag as it is writes nothing more
    expect((await admin('POST', budgetPath(t, scope, '/fund'), { operation: 'REPAY_DEBT', amount: T(10) })).status).toBe(200);
    expect((await admin('PATCH', budgetPath(t, scope, ''), { overdraft_limit: T(60) })).status).toBe(200);
    expect(await signals(t, types)).toHaveLength(2);

    // lowering again (debt 30 > 20) and raising the limit back (30 <= 100): entered, exited
    expect((await admin('PATCH', budgetPath(t, scope, ''), { overdraft_limit: T(20) })).status).toBe(200);
    expect((await admin('PATCH', budgetPath(t, scope, ''), { overdraft_limit: T(100) })).status).toBe(200);
    expect((await signals(t, types)).map((e) => e.event_type.slice(18))).toEqual(['entered', 'exited', 'entered', 'exited']);
  });

  it('a capped commit (ALLOW_IF_AVAILABLE) marks the budget over limit; any funding clears it with over_limit_exited', async () => {
    const { t, key, scope } = await tenantWithBudget(100);
    const r = await reserve(key, t, 100);
    const cm = await call(s.runtimeUrl, 'POST', commitPath(r.id), { key, body: { idempotency_key: uid('c'), actual: T(150) } });
    expect(cm.status, cm.text).toBe(200);
    const types = ['budget.over_limit_entered', 'budget.over_limit_exited'];
    expect((await signals(t, types)).map((e) => e.event_type)).toEqual(['budget.over_limit_entered']);
    const f = await admin('POST', budgetPath(t, scope, '/fund'), { operation: 'CREDIT', amount: T(50) });
    expect(f.status, f.text).toBe(200);
    const evs = await signals(t, types);
    expect(evs.map((e) => e.event_type)).toEqual(['budget.over_limit_entered', 'budget.over_limit_exited']);
    expect(evs[1].data).toMatchObject({ debt: 0, overdraft_limit: 0, is_over_limit: false });
    expect((evs[1].data as any).debt_utilization).toBeUndefined(); // no ratio to a zero limit
    // the budget takes reservations again
    await reserve(key, t, 10);
  });
});
