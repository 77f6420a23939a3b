// Production coverage: a realistic tenant life through the real HTTP planes — create,
// settings, budgets, funding, keys, a policy, reserve/commit with overage into debt, a
// denial, expiry by the sweeper, freeze/unfreeze, suspend/reactivate, revoke, a failed
// validation, and the close cascade — then every event it produced, read back through
// listEvents, is validated (expectValidEvent) and checked for who caused it: actor
// (admin / admin_on_behalf_of / api_key with key_id / system), the causing request's
// request_id and trace_id, and the cascade's shared correlation id.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type ApiResponse, type TestServer } from './helpers/server';
import { commitPath } from './helpers/reservations';
import { expectValidEvent } from './helpers/events';
import { keys } from '../src/store/keys';

let s: TestServer;
beforeAll(async () => { s = await startTestServer({ CYCLES_SWEEP_INTERVAL_MS: '100' }); });
afterAll(async () => { await s?.stop(); });

const U = 'TOKENS';
const T = (n: number) => ({ unit: U, amount: n });
const enc = encodeURIComponent;
const hex = (n: number, c: string) => c.repeat(n);

interface Caused { requestId: string; traceId: string; actor: Record<string, string>; types: string[] }

describe('events of a whole tenant life', () => {
  it('every event validates and names its cause', async () => {
    const t = `flow-${process.pid}`;
    const root = `tenant:${t}`;
    const ws = `${root}/workspace:w`;
    const caused: Caused[] = [];
    let n = 0;
    /** One request; its trace comes from a traceparent we choose, so propagation is checked. */
    const req = async (plane: 'admin' | 'runtime', method: string, path: string, o: { body?: unknown; key?: string; admin?: boolean } = {}) => {
      const traceId = hex(30, 'c') + String(++n).padStart(2, '0');
      const r: ApiResponse = await call(plane === 'admin' ? s.adminUrl : s.runtimeUrl, method, path, {
        body: o.body, key: o.key, adminKey: o.admin === false ? undefined : (o.key ? undefined : s.adminKey),
        headers: { traceparent: `00-${traceId}-${hex(16, '1')}-01` },
      });
      expect(r.headers.get('x-cycles-trace-id')).toBe(traceId);
      return { r, requestId: r.headers.get('x-request-id')!, traceId };
    };
    const expectCause = (x: { r: ApiResponse; requestId: string; traceId: string }, status: number, actor: Record<string, string>, types: string[]) => {
      expect(x.r.status, x.r.text).toBe(status);
      caused.push({ requestId: x.requestId, traceId: x.traceId, actor, types });
      return x.r.body;
    };
    const ADMIN = { type: 'admin' };
    const AOBO = { type: 'admin_on_behalf_of' };

    expectCause(await req('admin', 'POST', '/v1/admin/tenants', { body: { tenant_id: t, name: 'Flow' } }), 201, ADMIN, ['tenant.created']);
    expectCause(await req('admin', 'PATCH', `/v1/admin/tenants/${t}`, { body: { name: 'Flow Inc' } }), 200, ADMIN, ['tenant.updated', 'tenant.settings_changed']);
    expectCause(await req('admin', 'POST', '/v1/admin/budgets', { body: { tenant_id: t, scope: root, unit: U, allocated: T(1000), overdraft_limit: T(500), commit_overage_policy: 'ALLOW_WITH_OVERDRAFT' } }),
      201, AOBO, ['budget.created']);
    expectCause(await req('admin', 'POST', '/v1/admin/budgets', { body: { tenant_id: t, scope: ws, unit: U, allocated: T(400), overdraft_limit: T(2000) } }), 201, AOBO, ['budget.created']);
    expectCause(await req('admin', 'POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=${enc(root)}&unit=${U}`, { body: { operation: 'CREDIT', amount: T(200), idempotency_key: 'f1', reason: 'top-up' } }),
      200, AOBO, ['budget.funded']);
    const key = expectCause(await req('admin', 'POST', '/v1/admin/api-keys', { body: { tenant_id: t, name: 'agent' } }), 201, ADMIN, ['api_key.created']);
    const spare = expectCause(await req('admin', 'POST', '/v1/admin/api-keys', { body: { tenant_id: t, name: 'spare' } }), 201, ADMIN, ['api_key.created']);
    const K = { type: 'api_key', key_id: key.key_id };
    expectCause(await req('admin', 'POST', '/v1/admin/policies', { key: key.key_secret, body: { name: 'cap', scope_pattern: `${root}/*` } }), 201, K, ['policy.created']);
    expectCause(await req('admin', 'PATCH', `/v1/admin/api-keys/${spare.key_id}`, { body: { permissions: ['balances:read'] } }), 200, ADMIN, ['api_key.permissions_changed']);

    // reserve on the workspace, commit far above the estimate: overage, debt, over limit
    const reserveBody = (amount: number, extra: Record<string, unknown> = {}) => ({
      idempotency_key: `r-${++n}`, subject: { tenant: t, workspace: 'w' }, action: { kind: 'llm.completion', name: 'chat' }, estimate: T(amount), ...extra,
    });
    const rsv = expectCause(await req('runtime', 'POST', '/v1/reservations', { key: key.key_secret, body: reserveBody(100, { overage_policy: 'ALLOW_WITH_OVERDRAFT' }) }), 200, K, []);
    expectCause(await req('runtime', 'POST', commitPath(rsv.reservation_id), { key: key.key_secret, body: { idempotency_key: 'c1', actual: T(1500) } }),
      200, K, ['reservation.commit_overage', 'budget.debt_incurred', 'budget.over_limit_entered', 'budget.exhausted', 'budget.threshold_crossed']);
    // a denial (debt outstanding / budget exceeded)
    const denied = await req('runtime', 'POST', '/v1/reservations', { key: key.key_secret, body: reserveBody(50) });
    expect(denied.r.status).toBe(409);
    caused.push({ requestId: denied.requestId, traceId: denied.traceId, actor: K, types: ['reservation.denied'] });
    // pay the debt back so a reservation can expire
    expectCause(await req('admin', 'POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=${enc(ws)}&unit=${U}`, { body: { operation: 'REPAY_DEBT', amount: T(1100), idempotency_key: 'f2' } }),
      200, AOBO, ['budget.debt_repaid', 'budget.over_limit_exited', 'budget.threshold_crossed']);
    expectCause(await req('admin', 'POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=${enc(ws)}&unit=${U}`, { body: { operation: 'CREDIT', amount: T(5000), idempotency_key: 'f3' } }),
      200, AOBO, ['budget.funded', 'budget.threshold_crossed']);
    expectCause(await req('admin', 'POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=${enc(root)}&unit=${U}`, { body: { operation: 'REPAY_DEBT', amount: T(300), idempotency_key: 'f4' } }),
      200, AOBO, ['budget.debt_repaid', 'budget.over_limit_exited', 'budget.threshold_crossed']);
    expectCause(await req('admin', 'POST', `/v1/admin/budgets/fund?tenant_id=${t}&scope=${enc(root)}&unit=${U}`, { body: { operation: 'CREDIT', amount: T(5000), idempotency_key: 'f5' } }),
      200, AOBO, ['budget.funded', 'budget.threshold_crossed']);
    const exp = expectCause(await req('runtime', 'POST', '/v1/reservations', { key: key.key_secret, body: reserveBody(30, { ttl_ms: 1000, grace_period_ms: 0 }) }), 200, K, []);
    for (let i = 0; i < 100 && (await s.redis.client.hget(keys.reservation(t, exp.reservation_id), 'status')) !== 'EXPIRED'; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const open = expectCause(await req('runtime', 'POST', '/v1/reservations', { key: key.key_secret, body: reserveBody(20) }), 200, K, []);
    expect(open.decision).toBe('ALLOW');

    expectCause(await req('admin', 'POST', `/v1/admin/budgets/freeze?tenant_id=${t}&scope=${enc(root)}&unit=${U}`), 200, ADMIN, ['budget.frozen']);
    expectCause(await req('admin', 'POST', `/v1/admin/budgets/unfreeze?tenant_id=${t}&scope=${enc(root)}&unit=${U}`), 200, ADMIN, ['budget.unfrozen']);
    expectCause(await req('admin', 'PATCH', `/v1/admin/tenants/${t}`, { body: { status: 'SUSPENDED' } }), 200, ADMIN, ['tenant.suspended']);
    expectCause(await req('admin', 'PATCH', `/v1/admin/tenants/${t}`, { body: { status: 'ACTIVE' } }), 200, ADMIN, ['tenant.reactivated']);
    expectCause(await req('admin', 'DELETE', `/v1/admin/api-keys/${spare.key_id}?reason=rotated`), 200, ADMIN, ['api_key.revoked']);
    const v = expectCause(await req('admin', 'POST', '/v1/auth/validate', { body: { key_secret: spare.key_secret } }), 200, ADMIN, ['api_key.auth_failed']);
    expect(v.valid).toBe(false);
    const close = await req('admin', 'PATCH', `/v1/admin/tenants/${t}`, { body: { status: 'CLOSED' } });
    expectCause(close, 200, ADMIN, ['tenant.closed', 'budget.closed_via_tenant_cascade', 'api_key.revoked_via_tenant_cascade', 'reservation.released_via_tenant_cascade']);

    // ---- read everything back through the API ----
    let events: any[] = [];
    const expectedCount = async () => {
      events = [];
      let cursor: string | undefined;
      do {
        const r = await call(s.adminUrl, 'GET', `/v1/admin/events?tenant_id=${t}&sort_dir=asc&sort_by=timestamp&limit=100${cursor ? `&cursor=${cursor}` : ''}`, { adminKey: s.adminKey });
        expect(r.status, r.text).toBe(200);
        events.push(...r.body.events);
        cursor = r.body.next_cursor;
      } while (cursor);
      return events.some((e) => e.event_type === 'reservation.expired');
    };
    const end = Date.now() + 5000;
    while (!(await expectedCount())) {
      expect(Date.now() < end, 'the sweeper expires the reservation').toBe(true);
      await new Promise((r) => setTimeout(r, 50));
    }

    const byRequest = new Map(caused.map((c) => [c.requestId, c]));
    const types = new Set<string>();
    for (const e of events) {
      expectValidEvent(e);
      types.add(e.event_type);
      expect(e.tenant_id).toBe(t);
      expect(e.trace_id, e.event_type).toMatch(/^[0-9a-f]{32}$/);
      if (e.event_type === 'reservation.expired') {
        expect(e.actor).toEqual({ type: 'system' });
        expect(e.request_id).toBeUndefined(); // no originating request
        expect(e.data).toMatchObject({ reservation_id: exp.reservation_id, estimated_amount: 30, ttl_ms: 1000, unit: U });
        continue;
      }
      const c = byRequest.get(e.request_id);
      expect(c, `${e.event_type} carries the request_id of the request that caused it (${e.request_id})`).toBeDefined();
      expect(e.trace_id, e.event_type).toBe(c!.traceId);
      expect(e.actor, e.event_type).toEqual(c!.actor);
      expect(c!.types, `${e.event_type} from this request`).toContain(e.event_type);
    }
    // the emitters this flow must reach
    for (const ty of ['tenant.created', 'budget.created', 'budget.funded', 'api_key.created', 'policy.created', 'api_key.permissions_changed',
      'reservation.commit_overage', 'budget.debt_incurred', 'budget.exhausted', 'reservation.denied', 'budget.debt_repaid',
      'reservation.expired', 'budget.frozen', 'budget.unfrozen', 'tenant.suspended', 'tenant.reactivated', 'api_key.revoked',
      'api_key.auth_failed', 'tenant.closed', 'budget.closed_via_tenant_cascade', 'api_key.revoked_via_tenant_cascade',
      'reservation.released_via_tenant_cascade']) {
      expect(types.has(ty), `${ty} in ${[...types].join(', ')}`).toBe(true);
    }
    // commit overage in numbers (int64 rendered as integers)
    const over = events.find((e) => e.event_type === 'reservation.commit_overage');
    expect(over.data).toMatchObject({ reservation_id: rsv.reservation_id, estimated_amount: 100, actual_amount: 1500, overage: 1400, overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const denial = events.find((e) => e.event_type === 'reservation.denied');
    expect(denial.data.reason_code).toMatch(/^(DEBT_OUTSTANDING|OVERDRAFT_LIMIT_EXCEEDED|BUDGET_EXCEEDED)$/);
    // the cascade: one shared correlation id naming the close request
    const corr = `tenant_close_cascade:${t}:${close.requestId}`;
    const cascade = events.filter((e) => e.event_type.endsWith('_via_tenant_cascade'));
    const count = (ty: string) => cascade.filter((e) => e.event_type === ty).length;
    expect(count('budget.closed_via_tenant_cascade')).toBe(2);
    expect(count('api_key.revoked_via_tenant_cascade')).toBe(1); // the spare key was revoked before
    expect(count('reservation.released_via_tenant_cascade')).toBe(2); // the open reservation held on both budgets
    expect(cascade).toHaveLength(5);
    for (const e of cascade) expect(e.correlation_id).toBe(corr);
    const closed = events.find((e) => e.event_type === 'tenant.closed');
    expect(closed.correlation_id).toBe(corr);
    // and the same events are found by their correlation / request / trace ids
    const byCorr = await call(s.adminUrl, 'GET', `/v1/admin/events?correlation_id=${enc(corr)}&limit=100`, { adminKey: s.adminKey });
    expect(byCorr.body.events.map((e: any) => e.event_id).sort()).toEqual([closed, ...cascade].map((e) => e.event_id).sort());
    const byReq = await call(s.adminUrl, 'GET', `/v1/admin/events?request_id=${enc(close.requestId)}&trace_id=${close.traceId}&limit=100`, { adminKey: s.adminKey });
    expect(byReq.body.events).toHaveLength(cascade.length + 1);
  });
});
