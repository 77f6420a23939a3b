// createEvent (POST /v1/events): overage branches with exact numbers, the ledger
// invariant, idempotent replay, tenancy, closed tenant, int64 boundaries.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { getBudget, putBudget, putTenant, type BudgetSeed } from './helpers/fixtures';
import { ledgerHolds } from '../src/ledger/model';
import { keys } from '../src/store/keys';

let srv: TestServer;
let n = 0;

beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });

const U = 'USD_MICROCENTS';

/** A fresh tenant with budgets at tenant and tenant/workspace:prod. */
async function setup(tenantSeed: BudgetSeed | null, wsSeed: BudgetSeed | null) {
  const t = `ev${++n}`;
  if (tenantSeed) await putBudget(srv.redis.client, t, `tenant:${t}`, U, tenantSeed);
  if (wsSeed) await putBudget(srv.redis.client, t, `tenant:${t}/workspace:prod`, U, wsSeed);
  const key = await srv.tenantKey(t);
  return { t, key };
}

function event(t: string, amt: bigint | number, extra: Record<string, unknown> = {}) {
  return {
    idempotency_key: `k-${++n}`,
    subject: { tenant: t, workspace: 'prod' },
    action: { kind: 'llm.completion', name: 'x' },
    actual: { unit: U, amount: amt },
    ...extra,
  };
}

const post = (key: string, body: unknown, headers?: Record<string, string>) =>
  call(srv.runtimeUrl, 'POST', '/v1/events', { key, body, headers });

async function budgets(t: string) {
  const a = await getBudget(srv.redis.client, t, `tenant:${t}`, U);
  const b = await getBudget(srv.redis.client, t, `tenant:${t}/workspace:prod`, U);
  for (const h of [a, b]) if (h.unit) expect(ledgerHolds(h)).toBe(true);
  return { tenant: a, ws: b };
}

describe('createEvent happy path and replay', () => {
  it('debits every budgeted scope, returns 201 APPLIED with balances and no charged', async () => {
    const { t, key } = await setup({ allocated: 1000 }, { allocated: 500, spent: 100 });
    const r = await post(key, event(t, 150));
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('APPLIED');
    expect(r.body.event_id).toMatch(/^evt_/);
    expect(r.body.charged).toBeUndefined();
    expect(r.body.balances.map((b: any) => b.scope)).toEqual([`tenant:${t}`, `tenant:${t}/workspace:prod`]);
    expect(r.body.balances[1].remaining).toEqual({ unit: U, amount: 250 });
    const { tenant, ws } = await budgets(t);
    expect([tenant.spent, tenant.remaining]).toEqual(['150', '850']);
    expect([ws.spent, ws.remaining]).toEqual(['250', '250']);
    // event record stored
    const rec = await srv.redis.client.hgetall(keys.eventRecord(t, r.body.event_id));
    expect(rec.charged).toBe('150');
    expect(rec.scope_path).toBe(`tenant:${t}/workspace:prod`);
  });

  it('replay returns the same 201 body (same event_id) and debits once; different payload → 409', async () => {
    const { t, key } = await setup({ allocated: 1000 }, null);
    const body = event(t, 40);
    const a = await post(key, body);
    const b = await post(key, { ...body, metadata: undefined });
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.text).toBe(a.text);
    expect((await budgets(t)).tenant.spent).toBe('40');
    // key order / explicit default policy do not change the payload
    const c = await post(key, { overage_policy: 'ALLOW_IF_AVAILABLE', ...body });
    expect(c.status).toBe(201);
    expect(c.body.event_id).toBe(a.body.event_id);
    const d = await post(key, { ...body, actual: { unit: U, amount: 41 } });
    expect(d.status).toBe(409);
    expect(d.body.error).toBe('IDEMPOTENCY_MISMATCH');
    expect((await budgets(t)).tenant.spent).toBe('40');
  });

  it('header/body idempotency key mismatch → 400; header alone agrees', async () => {
    const { t, key } = await setup({ allocated: 1000 }, null);
    const body = event(t, 1);
    const r = await post(key, body, { 'X-Idempotency-Key': 'other' });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('INVALID_REQUEST');
    const ok = await post(key, body, { 'X-Idempotency-Key': body.idempotency_key });
    expect(ok.status).toBe(201);
  });

  it('client_time_ms is advisory: a far-past or far-future value changes nothing', async () => {
    const { t, key } = await setup({ allocated: 100 }, null);
    expect((await post(key, event(t, 10, { client_time_ms: 0 }))).status).toBe(201);
    expect((await post(key, event(t, 10, { client_time_ms: 9_000_000_000_000_000n }))).status).toBe(201);
    expect((await budgets(t)).tenant.spent).toBe('20');
  });
});

describe('createEvent overage policies', () => {
  it('ALLOW_IF_AVAILABLE caps to min over scopes of max(remaining,0), returns charged, marks capped scopes, no debt', async () => {
    const { t, key } = await setup({ allocated: 1000 }, { allocated: 300, spent: 200 }); // ws remaining 100
    const r = await post(key, event(t, 250));
    expect(r.status).toBe(201);
    expect(r.body.charged).toEqual({ unit: U, amount: 100 });
    const { tenant, ws } = await budgets(t);
    expect([tenant.spent, tenant.remaining, tenant.debt, tenant.is_over_limit]).toEqual(['100', '900', '0', '0']);
    expect([ws.spent, ws.remaining, ws.debt, ws.is_over_limit]).toEqual(['300', '0', '0', '1']);
    const bal = r.body.balances.find((b: any) => b.scope.endsWith('workspace:prod'));
    expect(bal.is_over_limit).toBe(true);
  });

  it('ALLOW_IF_AVAILABLE with a negative remaining charges 0', async () => {
    const { t, key } = await setup({ allocated: 100, spent: 100, debt: 20, overdraft_limit: 50 }, null); // remaining -20
    const r = await post(key, event(t, 30));
    expect(r.status).toBe(201);
    expect(r.body.charged).toEqual({ unit: U, amount: 0 });
    const { tenant } = await budgets(t);
    expect([tenant.spent, tenant.remaining, tenant.debt, tenant.is_over_limit]).toEqual(['100', '-20', '20', '1']);
  });

  it('events are not blocked by existing debt or is_over_limit', async () => {
    const { t, key } = await setup({ allocated: 1000, debt: 10, overdraft_limit: 5, is_over_limit: true }, null);
    const r = await post(key, event(t, 100));
    expect(r.status).toBe(201);
    expect(r.body.charged).toBeUndefined();
    expect((await budgets(t)).tenant.remaining).toBe('890');
  });

  it('REJECT: actual > remaining on any scope → 409 BUDGET_EXCEEDED, nothing written', async () => {
    const { t, key } = await setup({ allocated: 1000 }, { allocated: 100 });
    const before = await budgets(t);
    const r = await post(key, event(t, 101, { overage_policy: 'REJECT' }));
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('BUDGET_EXCEEDED');
    expect(await budgets(t)).toEqual(before);
    expect(await srv.redis.client.xlen(keys.outbox(t))).toBe(0);
    const ok = await post(key, event(t, 100, { overage_policy: 'REJECT' }));
    expect(ok.status).toBe(201);
    expect((await budgets(t)).ws.remaining).toBe('0');
  });

  it('ALLOW_WITH_OVERDRAFT within the limit: funded part to spent, rest to debt, remaining negative', async () => {
    const { t, key } = await setup({ allocated: 1000 }, { allocated: 100, spent: 70, overdraft_limit: 50 }); // ws remaining 30
    const r = await post(key, event(t, 70, { overage_policy: 'ALLOW_WITH_OVERDRAFT' }));
    expect(r.status).toBe(201);
    expect(r.body.charged).toBeUndefined();
    const { tenant, ws } = await budgets(t);
    expect([tenant.spent, tenant.remaining, tenant.debt]).toEqual(['70', '930', '0']);
    expect([ws.spent, ws.debt, ws.remaining, ws.is_over_limit]).toEqual(['100', '40', '-40', '0']);
    const types = (await srv.redis.client.xrange(keys.outbox(t), '-', '+')).map(([, f]) => f[f.indexOf('type') + 1]);
    expect(types).toContain('budget.debt_incurred');
    expect(types).toContain('budget.exhausted');
    const entries = await srv.redis.client.xrange(keys.outbox(t), '-', '+');
    const debt = entries.map(([, f]) => f).find((f) => f[f.indexOf('type') + 1] === 'budget.debt_incurred')!;
    expect(JSON.parse(debt[debt.indexOf('data') + 1])).toMatchObject({
      scope: `tenant:${t}/workspace:prod`, unit: U, debt_incurred: '40', total_debt: '40', overdraft_limit: '50',
      overage_policy: 'ALLOW_WITH_OVERDRAFT', event_id: r.body.event_id,
    });
  });

  it('ALLOW_WITH_OVERDRAFT beyond the limit → 409 OVERDRAFT_LIMIT_EXCEEDED, nothing written', async () => {
    const { t, key } = await setup(null, { allocated: 100, spent: 100, debt: 40, overdraft_limit: 50 }); // remaining -40
    const before = await budgets(t);
    const r = await post(key, event(t, 11, { overage_policy: 'ALLOW_WITH_OVERDRAFT' }));
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('OVERDRAFT_LIMIT_EXCEEDED');
    expect(await budgets(t)).toEqual(before);
    const ok = await post(key, event(t, 10, { overage_policy: 'ALLOW_WITH_OVERDRAFT' }));
    expect(ok.status).toBe(201);
    const { ws } = await budgets(t);
    expect([ws.debt, ws.remaining, ws.spent]).toEqual(['50', '-50', '100']);
  });

  it('ALLOW_WITH_OVERDRAFT: a zero-limit scope caps the charge for all scopes (behaves as ALLOW_IF_AVAILABLE)', async () => {
    const { t, key } = await setup({ allocated: 60 }, { allocated: 10, overdraft_limit: 100 }); // tenant remaining 60, limit 0
    const r = await post(key, event(t, 80, { overage_policy: 'ALLOW_WITH_OVERDRAFT' }));
    expect(r.status).toBe(201);
    expect(r.body.charged).toEqual({ unit: U, amount: 60 });
    const { tenant, ws } = await budgets(t);
    expect([tenant.spent, tenant.remaining, tenant.debt, tenant.is_over_limit]).toEqual(['60', '0', '0', '1']);
    expect([ws.spent, ws.debt, ws.remaining, ws.is_over_limit]).toEqual(['10', '50', '-50', '0']);
  });
});

describe('createEvent concurrency', () => {
  it('30 concurrent REJECT events against room for 10: exactly 10 apply, no oversubscription', async () => {
    const { t, key } = await setup({ allocated: 1000 }, { allocated: 100 });
    const results = await Promise.all(Array.from({ length: 30 }, () => post(key, event(t, 10, { overage_policy: 'REJECT' }))));
    const codes = results.map((r) => r.status);
    expect(codes.filter((c) => c === 201)).toHaveLength(10);
    expect(codes.filter((c) => c === 409)).toHaveLength(20);
    const { tenant, ws } = await budgets(t);
    expect([ws.spent, ws.remaining]).toEqual(['100', '0']);
    expect([tenant.spent, tenant.remaining]).toEqual(['100', '900']);
  });

  it('the same key sent 10 times concurrently debits once and every answer carries one event_id', async () => {
    const { t, key } = await setup({ allocated: 1000 }, null);
    const body = event(t, 7);
    const results = await Promise.all(Array.from({ length: 10 }, () => post(key, body)));
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([201]));
    expect(new Set(results.map((r) => r.body.event_id)).size).toBe(1);
    expect((await budgets(t)).tenant.spent).toBe('7');
  });
});

describe('createEvent errors', () => {
  it('FROZEN → 409 BUDGET_FROZEN, CLOSED → 409 BUDGET_CLOSED', async () => {
    const a = await setup({ allocated: 100 }, { allocated: 100, status: 'FROZEN' });
    const r1 = await post(a.key, event(a.t, 1));
    expect([r1.status, r1.body.error]).toEqual([409, 'BUDGET_FROZEN']);
    const b = await setup({ allocated: 100, status: 'CLOSED' }, { allocated: 100 });
    const r2 = await post(b.key, event(b.t, 1));
    expect([r2.status, r2.body.error]).toEqual([409, 'BUDGET_CLOSED']);
    expect((await budgets(b.t)).ws.spent).toBe('0');
  });

  it('no budget in the unit but in another → 400 UNIT_MISMATCH; none at all → 404', async () => {
    const { t, key } = await setup({ allocated: 100 }, null);
    const r = await post(key, event(t, 1, { actual: { unit: 'TOKENS', amount: 1 } }));
    expect([r.status, r.body.error]).toEqual([400, 'UNIT_MISMATCH']);
    const other = `ev${++n}`;
    const k2 = await srv.tenantKey(other);
    const r2 = await post(k2, event(other, 1));
    expect([r2.status, r2.body.error]).toEqual([404, 'NOT_FOUND']);
    expect(r2.body.message).toContain('Budget not found for provided scope');
  });

  it('subject.tenant of another tenant → 403; tenant-less subject binds to the key tenant', async () => {
    const { t, key } = await setup({ allocated: 100 }, null);
    const r = await post(key, event('someone-else', 1));
    expect([r.status, r.body.error]).toEqual([403, 'FORBIDDEN']);
    const ok = await post(key, { ...event(t, 5), subject: { workspace: 'prod' } });
    expect(ok.status).toBe(201);
    expect((await budgets(t)).tenant.spent).toBe('5');
  });

  it('closed tenant → 409 TENANT_CLOSED, but a replay of a pre-close event still returns 201', async () => {
    const { t, key } = await setup({ allocated: 100 }, null);
    await putTenant(srv.redis.client, t);
    const body = event(t, 5);
    const first = await post(key, body);
    expect(first.status).toBe(201);
    await srv.redis.client.hset(keys.tenant(t), 'status', 'CLOSED');
    const fresh = await post(key, event(t, 5));
    expect([fresh.status, fresh.body.error]).toEqual([409, 'TENANT_CLOSED']);
    const replay = await post(key, body);
    expect(replay.status).toBe(201);
    expect(replay.text).toBe(first.text);
    expect((await budgets(t)).tenant.spent).toBe('5');
  });

  it('malformed body → 400 INVALID_REQUEST; missing key → 401', async () => {
    const { t, key } = await setup({ allocated: 100 }, null);
    const r = await post(key, { ...event(t, 1), actual: { unit: U, amount: -1 } });
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const r2 = await call(srv.runtimeUrl, 'POST', '/v1/events', { body: event(t, 1) });
    expect([r2.status, r2.body.error]).toEqual([401, 'UNAUTHORIZED']);
  });
});

describe('createEvent int64 boundaries', () => {
  it('2^53+1 is charged exactly', async () => {
    const big = 2n ** 53n + 1n;
    const { t, key } = await setup({ allocated: 2n ** 62n }, null);
    const r = await post(key, event(t, big));
    expect(r.status).toBe(201);
    expect(r.body.balances[0].spent).toEqual({ unit: U, amount: big });
    expect(r.body.balances[0].remaining.amount).toBe(2n ** 62n - big);
    expect((await budgets(t)).tenant.spent).toBe(big.toString());
  });

  it('2^63 → 400 and nothing written; 2^63-1 against a smaller budget caps exactly', async () => {
    const { t, key } = await setup({ allocated: 2n ** 62n }, null);
    const r = await call(srv.runtimeUrl, 'POST', '/v1/events', {
      key,
      rawBody: `{"idempotency_key":"k-max","subject":{"tenant":"${t}"},"action":{"kind":"a","name":"b"},"actual":{"unit":"${U}","amount":9223372036854775808}}`,
    });
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect((await budgets(t)).tenant.spent).toBe('0');
    const max = 2n ** 63n - 1n;
    const capped = await post(key, event(t, max));
    expect(capped.status).toBe(201);
    expect(capped.body.charged).toEqual({ unit: U, amount: 2n ** 62n });
    expect((await budgets(t)).tenant.remaining).toBe('0');
  });
});
