// POST /v1/decide: same evaluation as reserve, never mutates, DENY instead of 409.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer, type ApiResponse } from './helpers/server';
import { putBudget, putTenant, getBudget, type BudgetSeed } from './helpers/fixtures';
import { keys } from '../src/store/keys';

const U = 'USD_MICROCENTS';
let srv: TestServer;
let seq = 0;
const fresh = () => `d${++seq}-${Math.random().toString(36).slice(2, 8)}`;

beforeAll(async () => { srv = await startTestServer(); }, 30_000);
afterAll(async () => { await srv?.stop(); });

const redis = () => srv.redis.client;
function decide(key: string | undefined, body: Record<string, unknown>, headers?: Record<string, string>): Promise<ApiResponse> {
  return call(srv.runtimeUrl, 'POST', '/v1/decide', { key, body, headers });
}
function body(tenant: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    idempotency_key: `k-${Math.random().toString(36).slice(2)}`,
    subject: { tenant, workspace: 'prod' },
    action: { kind: 'tool.search', name: 'web' },
    estimate: { unit: U, amount: 10 },
    ...over,
  };
}
async function setup(budgets: Record<string, BudgetSeed>, tenantFields?: Record<string, string>) {
  const tenant = fresh();
  for (const [scope, seed] of Object.entries(budgets)) await putBudget(redis(), tenant, scope.replace('$T', tenant), U, seed);
  if (tenantFields) await putTenant(redis(), tenant, tenantFields);
  return { tenant, key: await srv.tenantKey(tenant), b: (s: string) => getBudget(redis(), tenant, s.replace('$T', tenant), U) };
}

describe('decide', () => {
  it('ALLOW with affected_scopes, no caps, and no mutation', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 100 } });
    const before = await b('tenant:$T');
    const r = await decide(key, body(tenant));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ decision: 'ALLOW', affected_scopes: [`tenant:${tenant}`, `tenant:${tenant}/workspace:prod`] });
    expect(await b('tenant:$T')).toEqual(before);
    expect(await redis().zcard(keys.reservationIndex(tenant))).toBe(0);
  });

  it('ALLOW_WITH_CAPS from the matching policy', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 100 } });
    await redis().hset(keys.policies(tenant), 'p1', JSON.stringify({ policy_id: 'p1', scope_pattern: `tenant:${tenant}/workspace:prod`, status: 'ACTIVE', caps: { max_steps_remaining: 3, cooldown_ms: 250 } }));
    const r = await decide(key, body(tenant));
    expect(r.body).toMatchObject({ decision: 'ALLOW_WITH_CAPS', caps: { max_steps_remaining: 3, cooldown_ms: 250 } });
  });

  it.each([
    ['BUDGET_EXCEEDED', { allocated: 9 }],
    ['BUDGET_FROZEN', { allocated: 100, status: 'FROZEN' as const }],
    ['BUDGET_CLOSED', { allocated: 100, status: 'CLOSED' as const }],
    ['OVERDRAFT_LIMIT_EXCEEDED', { allocated: 100, debt: 1, is_over_limit: true }],
    ['DEBT_OUTSTANDING', { allocated: 100, debt: 1 }],
  ])('200 DENY %s (never 409); emits reservation.denied; no mutation', async (code, seed) => {
    const { tenant, key, b } = await setup({ 'tenant:$T': seed });
    const before = await b('tenant:$T');
    const r = await decide(key, body(tenant));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ decision: 'DENY', reason_code: code, affected_scopes: [`tenant:${tenant}`, `tenant:${tenant}/workspace:prod`] });
    expect(await b('tenant:$T')).toEqual(before);
    const events = await redis().xrange(keys.outbox(tenant), '-', '+');
    expect(events).toHaveLength(1);
    const f = events[0][1];
    expect(f[f.indexOf('type') + 1]).toBe('reservation.denied');
    expect(JSON.parse(f[f.indexOf('data') + 1])).toMatchObject({ reason_code: code, scope: `tenant:${tenant}`, unit: U, requested_amount: '10' });
  });

  it('200 DENY BUDGET_NOT_FOUND and TENANT_CLOSED', async () => {
    const nf = await setup({});
    expect((await decide(nf.key, body(nf.tenant))).body).toMatchObject({ decision: 'DENY', reason_code: 'BUDGET_NOT_FOUND' });
    const cl = await setup({ 'tenant:$T': { allocated: 100 } }, { status: 'CLOSED' });
    const r = await decide(cl.key, body(cl.tenant));
    expect([r.status, r.body.decision, r.body.reason_code]).toEqual([200, 'DENY', 'TENANT_CLOSED']);
  });

  it('400 UNIT_MISMATCH with details', async () => {
    const tenant = fresh();
    await putBudget(redis(), tenant, `tenant:${tenant}`, 'TOKENS', { allocated: 100 });
    const key = await srv.tenantKey(tenant);
    const r = await decide(key, body(tenant));
    expect([r.status, r.body.error]).toEqual([400, 'UNIT_MISMATCH']);
    expect(r.body.details).toEqual({ scope: `tenant:${tenant}`, requested_unit: U, expected_units: ['TOKENS'] });
  });

  it('400 INVALID_REQUEST for bad subjects and header/body key mismatch', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 100 } });
    for (const over of [{ subject: { dimensions: { a: 'b' } } }, { subject: { tenant, agent: 'x y' } }, { estimate: { unit: U, amount: -5 } }]) {
      const r = await decide(key, body(tenant, over));
      expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    }
    const m = await decide(key, body(tenant), { 'X-Idempotency-Key': 'nope' });
    expect([m.status, m.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('401 without a key; 403 for another tenant in subject.tenant', async () => {
    const { key } = await setup({ 'tenant:$T': { allocated: 100 } });
    const n = await decide(undefined, body('x'));
    expect([n.status, n.body.error]).toEqual([401, 'UNAUTHORIZED']);
    const f = await decide(key, body('someone-else'));
    expect([f.status, f.body.error]).toEqual([403, 'FORBIDDEN']);
  });

  it('replay returns the original decision even after budgets changed; different payload → 409', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 100 } });
    const req = body(tenant);
    const first = await decide(key, req);
    expect(first.body.decision).toBe('ALLOW');
    await putBudget(redis(), tenant, `tenant:${tenant}`, U, { allocated: 100, status: 'FROZEN' });
    const again = await decide(key, req);
    expect(again.text).toBe(first.text);
    expect((await decide(key, body(tenant))).body.reason_code).toBe('BUDGET_FROZEN');
    const mm = await decide(key, { ...req, action: { kind: 'tool.search', name: 'other' } });
    expect([mm.status, mm.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('decide and reserve keys live in separate namespaces', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 100 } });
    const req = body(tenant, { idempotency_key: 'same' });
    expect((await decide(key, req)).status).toBe(200);
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: { ...req, ttl_ms: 5000 } });
    expect(r.status).toBe(200);
    expect(r.body.reservation_id).toBeDefined();
    expect((await b('tenant:$T')).reserved).toBe('10');
  });

  it('evaluates int64 amounts exactly', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 9007199254740993n } });
    expect((await decide(key, body(tenant, { estimate: { unit: U, amount: 9007199254740993n } }))).body.decision).toBe('ALLOW');
    expect((await decide(key, body(tenant, { estimate: { unit: U, amount: 9007199254740994n } }))).body).toMatchObject({ decision: 'DENY', reason_code: 'BUDGET_EXCEEDED' });
  });
});
