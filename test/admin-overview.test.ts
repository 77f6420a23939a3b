// getAdminOverview: counts agree with the store, top-10 caps, events window, auth.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, putTenant } from './helpers/fixtures';
import { keys } from '../src/store/keys';

let s: TestServer;
beforeAll(async () => { s = await startTestServer({ CYCLES_FEATURES: 'v0.1.26' }); });
afterAll(async () => { await s?.stop(); });

const overview = async () => {
  const r = await call(s.adminUrl, 'GET', '/v1/admin/overview', { adminKey: s.adminKey });
  expect(r.status, r.text).toBe(200);
  return r.body;
};

describe('getAdminOverview', () => {
  it('401 without the admin key; 401 for a tenant key', async () => {
    expect((await call(s.adminUrl, 'GET', '/v1/admin/overview')).status).toBe(401);
    const key = await s.tenantKey('ov-t');
    expect((await call(s.adminUrl, 'GET', '/v1/admin/overview', { key })).status).toBe(401);
  });

  it('empty store: zero counts, all required keys', async () => {
    const o = await overview();
    expect(o.event_window_seconds).toBe(3600);
    expect(o.tenant_counts).toEqual({ total: 0, active: 0, suspended: 0, closed: 0, in_observe_mode: 0 });
    expect(o.budget_counts.total).toBe(0);
    expect(o.over_limit_scopes).toEqual([]);
    expect(o.recent_denials).toEqual([]);
  });

  it('counts tenants, budgets (by status, unit, over limit, debt) and policies; caps top lists at 10 ordered by debt', async () => {
    await putTenant(s.redis.client, 'ov-a');
    await putTenant(s.redis.client, 'ov-b', { status: 'SUSPENDED', observe_mode: 'OBSERVE' });
    await putTenant(s.redis.client, 'ov-c', { status: 'CLOSED' });
    for (let i = 0; i < 12; i++) {
      await putBudget(s.redis.client, 'ov-a', `tenant:ov-a/app:d${i}`, 'TOKENS', { allocated: 100, debt: i + 1, overdraft_limit: 5, is_over_limit: i + 1 > 5 });
    }
    await putBudget(s.redis.client, 'ov-a', 'tenant:ov-a', 'USD_MICROCENTS', { allocated: 2n ** 62n, status: 'FROZEN' });
    await putBudget(s.redis.client, 'ov-b', 'tenant:ov-b', 'CREDITS', { allocated: 1, status: 'CLOSED' });
    const p = await call(s.adminUrl, 'POST', '/v1/admin/policies', { adminKey: s.adminKey,
      body: { tenant_id: 'ov-a', name: 'deny', scope_pattern: 'tenant:ov-a/*', denied_action_kinds: ['http.post'] } });
    expect(p.status).toBe(201);
    const o = await overview();
    expect(o.tenant_counts).toEqual({ total: 3, active: 1, suspended: 1, closed: 1, in_observe_mode: 1 });
    expect(o.budget_counts).toEqual({ total: 14, active: 12, frozen: 1, closed: 1, over_limit: 7, with_debt: 12,
      by_unit: { TOKENS: 12, USD_MICROCENTS: 1, CREDITS: 1, RISK_POINTS: 0 } });
    expect(o.over_limit_scopes).toHaveLength(7);
    expect(o.over_limit_scopes[0]).toEqual({ scope: 'tenant:ov-a/app:d11', unit: 'TOKENS', allocated: 100, remaining: 100 - 12, debt: 12 });
    expect(o.debt_scopes).toHaveLength(10);
    expect(o.debt_scopes.map((d: any) => d.debt)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3]);
    expect(o.access_control_stats).toEqual({ policies_with_allow_list: 0, policies_with_deny_list: 1 });
    expect(o.event_counts.by_category.policy).toBe(1);
  });

  it('events in the window: counts by category, recent denials (newest first, ≤ 10) and expiries as Events', async () => {
    const now = Date.now();
    for (let i = 0; i < 12; i++) {
      await s.redis.client.xadd(keys.outbox('ov-a'), '*', 'type', 'reservation.denied', 'data', JSON.stringify({ scope: 'tenant:ov-a', unit: 'TOKENS', reason_code: i % 2 ? 'BUDGET_EXCEEDED' : 'BUDGET_FROZEN' }),
        'ts_ms', String(now + i), 'trace_id', 'a'.repeat(32), 'request_id', `req_${i}`, 'actor', JSON.stringify({ type: 'api_key', key_id: 'k1' }));
    }
    await s.redis.client.xadd(keys.outbox('ov-b'), '*', 'type', 'reservation.expired', 'data', '{}', 'ts_ms', String(now), 'trace_id', '', 'request_id', '', 'actor', '{}');
    const o = await overview();
    expect(o.event_counts.by_category.reservation).toBe(13);
    expect(o.recent_denials).toHaveLength(10);
    expect(o.recent_denials[0]).toMatchObject({ event_type: 'reservation.denied', category: 'reservation', tenant_id: 'ov-a', request_id: 'req_11' });
    expect(o.recent_denials_by_reason).toEqual({ BUDGET_EXCEEDED: 6, BUDGET_FROZEN: 6 });
    expect(o.recent_expiries).toHaveLength(1);
    expect(o.recent_expiries[0].tenant_id).toBe('ov-b');
  });
});
