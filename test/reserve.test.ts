// createReservation (live and dry_run) against a real Redis through the full HTTP
// pipeline (responses are validated against the spec by the test server).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer, type ApiResponse } from './helpers/server';
import { putBudget, putTenant, getBudget, type BudgetSeed } from './helpers/fixtures';
import { keys } from '../src/store/keys';
import { ledgerHolds } from '../src/ledger/model';
import { ownerOf } from '../src/ledger/reservationId';
import { readReservation } from './helpers/reservations';

const U = 'USD_MICROCENTS';
let srv: TestServer;
let seq = 0;
/** A fresh tenant id per test: suites share one Redis and never flush it. */
const fresh = (p = 't') => `${p}${++seq}-${Math.random().toString(36).slice(2, 8)}`;

beforeAll(async () => { srv = await startTestServer(); }, 30_000);
afterAll(async () => { await srv?.stop(); });

const redis = () => srv.redis.client;

interface ReqOpts { key: string; headers?: Record<string, string> }
function reserve(o: ReqOpts, body: Record<string, unknown>): Promise<ApiResponse> {
  return call(srv.runtimeUrl, 'POST', '/v1/reservations', { key: o.key, body, headers: o.headers });
}
function body(tenant: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    idempotency_key: `k-${Math.random().toString(36).slice(2)}`,
    subject: { tenant, agent: 'bot' },
    action: { kind: 'llm.completion', name: 'gpt' },
    estimate: { unit: U, amount: 100 },
    ...over,
  };
}
async function setup(budgets: Record<string, BudgetSeed>, tenantFields?: Record<string, string>) {
  const tenant = fresh();
  for (const [scope, seed] of Object.entries(budgets)) {
    await putBudget(redis(), tenant, scope.replace('$T', tenant), U, seed);
  }
  if (tenantFields) await putTenant(redis(), tenant, tenantFields);
  const key = await srv.tenantKey(tenant);
  return { tenant, key, b: (scope: string) => getBudget(redis(), tenant, scope.replace('$T', tenant), U) };
}
const strip = (h: Record<string, string>) => { const { updated_at_ms: _u, ...rest } = h; return rest; };

describe('live ALLOW', () => {
  it('reserves on every budgeted scope and writes the reservation, index and schedule', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 }, 'tenant:$T/agent:bot': { allocated: 500, spent: 50 } });
    const req = body(tenant, { metadata: { run: 'r1' }, ttl_ms: 30000, grace_period_ms: 2000 });
    const r = await reserve({ key }, req);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-cycles-tenant')).toBe(tenant);
    const id = r.body.reservation_id as string;
    expect(id).toBe(`res_${tenant}_${id.slice(-32)}`); // the id pins the tenant (DR9)
    expect(id.slice(-32)).toMatch(/^[0-9a-f]{32}$/);
    expect(r.body.decision).toBe('ALLOW');
    expect(r.body.caps).toBeUndefined();
    expect(r.body.reserved).toEqual({ unit: U, amount: 100 });
    expect(r.body.scope_path).toBe(`tenant:${tenant}/agent:bot`);
    expect(r.body.affected_scopes).toEqual([`tenant:${tenant}`, `tenant:${tenant}/agent:bot`]);
    expect(r.body.remaining_ttl_ms).toBeGreaterThan(29000);
    expect(r.body.remaining_ttl_ms).toBeLessThanOrEqual(30000);
    expect(r.body.balances.map((x: any) => [x.scope, x.remaining.amount, x.reserved.amount])).toEqual([
      [`tenant:${tenant}`, 900, 100], [`tenant:${tenant}/agent:bot`, 350, 100],
    ]);
    const parent = await b('tenant:$T');
    const child = await b('tenant:$T/agent:bot');
    expect([parent.remaining, parent.reserved, child.remaining, child.reserved]).toEqual(['900', '100', '350', '100']);
    expect(ledgerHolds(parent) && ledgerHolds(child)).toBe(true);

    const h = await readReservation(redis(), tenant, id);
    expect(h).toMatchObject({
      reservation_id: id, tenant, status: 'ACTIVE', unit: U, estimate: '100',
      scope_path: `tenant:${tenant}/agent:bot`, grace_ms: '2000', overage_policy: 'ALLOW_IF_AVAILABLE',
      idempotency_key: req.idempotency_key, extension_count: '0', max_extensions: '10',
      expires_at_ms: String(r.body.expires_at_ms),
    });
    expect(JSON.parse(h.subject)).toEqual(req.subject);
    expect(JSON.parse(h.action)).toEqual(req.action);
    expect(JSON.parse(h.metadata)).toEqual({ run: 'r1' });
    expect(JSON.parse(h.affected_scopes)).toEqual(r.body.affected_scopes);
    expect(JSON.parse(h.budgeted)).toEqual(r.body.affected_scopes);
    expect(Number(h.expires_at_ms) - Number(h.created_at_ms)).toBeLessThanOrEqual(30000);
    expect(Number(h.expires_at_ms) - Number(h.created_at_ms)).toBeGreaterThan(29000);
    expect(await redis().zscore(keys.reservationIndex(tenant), id)).toBe(h.created_at_ms);
    // the id pins the tenant (docs/decisions.md DR9) and the same script scheduled the
    // sweep at exactly expires_at + grace
    expect(ownerOf(id)).toBe(tenant);
    expect(await redis().zscore(keys.expirySchedule(tenant), id)).toBe(String(Number(h.expires_at_ms) + 2000));
  });

  it('schedules the sweep at the capped deadline when a tenant cap shortens the requested ttl', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 1000 } }, { max_reservation_ttl_ms: '5000' });
    const r = await reserve({ key }, body(tenant, { ttl_ms: 600_000, grace_period_ms: 0 }));
    expect(r.status).toBe(200);
    const id = r.body.reservation_id;
    expect(r.body.expires_at_ms - Number((await readReservation(redis(), tenant, id)).created_at_ms)).toBe(5000);
    expect(await redis().zscore(keys.expirySchedule(tenant), id)).toBe(String(r.body.expires_at_ms));
  });

  it('skips gaps and unbudgeted scopes; affected_scopes lists every derived scope', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 }, 'tenant:$T/workflow:w/agent:bot': { allocated: 300 } });
    const r = await reserve({ key }, body(tenant, { subject: { tenant, app: 'chat', workflow: 'w', agent: 'bot' } }));
    // app level has no budget; workspace absent from the subject entirely
    expect(r.status).toBe(200);
    expect(r.body.affected_scopes).toEqual([`tenant:${tenant}`, `tenant:${tenant}/app:chat`, `tenant:${tenant}/app:chat/workflow:w`, `tenant:${tenant}/app:chat/workflow:w/agent:bot`]);
    expect(r.body.balances.map((x: any) => x.scope)).toEqual([`tenant:${tenant}`]);
    expect((await b('tenant:$T')).reserved).toBe('100');
    expect((await b('tenant:$T/workflow:w/agent:bot')).reserved).toBe('0'); // a different path: untouched
    const h = await readReservation(redis(), tenant, r.body.reservation_id);
    expect(JSON.parse(h.budgeted)).toEqual([`tenant:${tenant}`]);
  });

  it('a subject without tenant is bound to the key tenant and never reaches another tenant', async () => {
    const victim = await setup({ 'tenant:$T/workspace:prod': { allocated: 1000 } });
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const r = await reserve({ key }, body(tenant, { subject: { workspace: 'prod' } }));
    expect(r.status).toBe(200);
    expect(r.body.affected_scopes).toEqual([`tenant:${tenant}`, `tenant:${tenant}/workspace:prod`]);
    expect((await b('tenant:$T')).reserved).toBe('100');
    expect((await victim.b('tenant:$T/workspace:prod')).reserved).toBe('0');
  });

  it('upper-case subject values reach the canonical lower-case budget; the subject round-trips as sent', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T/agent:bot': { allocated: 1000 } });
    const r = await reserve({ key }, body(tenant, { subject: { tenant: tenant.toUpperCase(), agent: 'BOT' } }));
    expect(r.status).toBe(200);
    expect(r.body.scope_path).toBe(`tenant:${tenant}/agent:bot`);
    expect((await b('tenant:$T/agent:bot')).reserved).toBe('100');
    const h = await readReservation(redis(), tenant, r.body.reservation_id);
    expect(JSON.parse(h.subject)).toEqual({ tenant: tenant.toUpperCase(), agent: 'BOT' });
  });

  it('budget.exhausted is written to the outbox when remaining reaches 0', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 100 } });
    const r = await reserve({ key }, body(tenant));
    expect(r.status).toBe(200);
    // (threshold crossings on the way to 100% are derived signals: test/signals-budget.test.ts)
    const events = (await redis().xrange(keys.outbox(tenant), '-', '+'))
      .filter(([, f]) => f[f.indexOf('type') + 1] !== 'budget.threshold_crossed');
    const types = events.map(([, f]) => f[f.indexOf('type') + 1]);
    expect(types).toEqual(['budget.exhausted']);
    const data = JSON.parse(events[0][1][events[0][1].indexOf('data') + 1]);
    expect(data).toMatchObject({ scope: `tenant:${tenant}`, unit: U, remaining: '0', reserved: '100', reservation_id: r.body.reservation_id });
  });
});

describe('request errors', () => {
  it('401 without a key', async () => {
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { body: body('x') });
    expect([r.status, r.body.error]).toEqual([401, 'UNAUTHORIZED']);
  });

  it('403 when subject.tenant is another tenant; nothing is written', async () => {
    const other = await setup({ 'tenant:$T': { allocated: 1000 } });
    const { key } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const r = await reserve({ key }, body(other.tenant));
    expect([r.status, r.body.error]).toEqual([403, 'FORBIDDEN']);
    expect((await other.b('tenant:$T')).reserved).toBe('0');
  });

  it.each([
    ['dimensions-only subject', { subject: { dimensions: { team: 'x' } } }],
    ['bad charset', { subject: { agent: 'a/b' } }],
    ['space in value', { subject: { workspace: 'my ws' } }],
    ['negative estimate', { estimate: { unit: U, amount: -1 } }],
    ['unknown unit', { estimate: { unit: 'EUR', amount: 1 } }],
    ['ttl below minimum', { ttl_ms: 999 }],
    ['grace above maximum', { grace_period_ms: 60001 }],
    ['missing action', { action: undefined }],
    ['unknown field', { colour: 'red' }],
  ])('400 INVALID_REQUEST: %s', async (_n, over) => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const r = await reserve({ key }, body(tenant, over));
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect((await b('tenant:$T')).reserved).toBe('0');
  });

  it('400 when X-Idempotency-Key differs from the body key; equal keys are fine', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const req = body(tenant);
    const bad = await reserve({ key, headers: { 'X-Idempotency-Key': 'other' } }, req);
    expect([bad.status, bad.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const ok = await reserve({ key, headers: { 'X-Idempotency-Key': req.idempotency_key as string } }, req);
    expect(ok.status).toBe(200);
  });

  it('400 UNIT_MISMATCH with details when budgets exist only in another unit', async () => {
    const tenant = fresh();
    await putBudget(redis(), tenant, `tenant:${tenant}/agent:bot`, 'TOKENS', { allocated: 1000 });
    await putBudget(redis(), tenant, `tenant:${tenant}/agent:bot`, 'CREDITS', { allocated: 1000 });
    const key = await srv.tenantKey(tenant);
    const r = await reserve({ key }, body(tenant));
    expect([r.status, r.body.error]).toEqual([400, 'UNIT_MISMATCH']);
    expect(r.body.details).toEqual({ scope: `tenant:${tenant}/agent:bot`, requested_unit: U, expected_units: ['TOKENS', 'CREDITS'] });
    const dry = await reserve({ key }, body(tenant, { dry_run: true }));
    expect([dry.status, dry.body.error]).toEqual([400, 'UNIT_MISMATCH']);
  });

  it('404 NOT_FOUND when no derived scope has a budget in any unit', async () => {
    const { tenant, key } = await setup({});
    const r = await reserve({ key }, body(tenant));
    expect([r.status, r.body.error]).toEqual([404, 'NOT_FOUND']);
    expect(r.body.message).toBe(`Budget not found for provided scope: tenant:${tenant}/agent:bot`);
  });
});

describe('live denials (409) leave every scope untouched', () => {
  const cases: [string, Record<string, BudgetSeed>, string, string][] = [
    ['BUDGET_EXCEEDED', { 'tenant:$T': { allocated: 1000 }, 'tenant:$T/agent:bot': { allocated: 99 } }, 'BUDGET_EXCEEDED', 'tenant:$T/agent:bot'],
    ['BUDGET_FROZEN', { 'tenant:$T': { allocated: 1000 }, 'tenant:$T/agent:bot': { allocated: 1000, status: 'FROZEN' } }, 'BUDGET_FROZEN', 'tenant:$T/agent:bot'],
    ['BUDGET_CLOSED', { 'tenant:$T': { allocated: 1000, status: 'CLOSED' } }, 'BUDGET_CLOSED', 'tenant:$T'],
    ['OVERDRAFT_LIMIT_EXCEEDED (flag)', { 'tenant:$T': { allocated: 1000, is_over_limit: true } }, 'OVERDRAFT_LIMIT_EXCEEDED', 'tenant:$T'],
    ['OVERDRAFT_LIMIT_EXCEEDED beats DEBT_OUTSTANDING', { 'tenant:$T': { allocated: 1000, debt: 50, is_over_limit: true } }, 'OVERDRAFT_LIMIT_EXCEEDED', 'tenant:$T'],
    ['OVERDRAFT_LIMIT_EXCEEDED (debt > limit)', { 'tenant:$T': { allocated: 1000, debt: 60, overdraft_limit: 50 } }, 'OVERDRAFT_LIMIT_EXCEEDED', 'tenant:$T'],
    ['DEBT_OUTSTANDING', { 'tenant:$T': { allocated: 1000, debt: 1 } }, 'DEBT_OUTSTANDING', 'tenant:$T'],
    ['first failing scope in canonical order wins', { 'tenant:$T': { allocated: 1000, status: 'FROZEN' }, 'tenant:$T/agent:bot': { allocated: 1 } }, 'BUDGET_FROZEN', 'tenant:$T'],
  ];
  it.each(cases)('%s', async (_n, seeds, code, scope) => {
    const { tenant, key, b } = await setup(seeds);
    const before = await Promise.all(Object.keys(seeds).map(async (s) => strip(await b(s))));
    const r = await reserve({ key }, body(tenant));
    expect([r.status, r.body.error]).toEqual([409, code]);
    expect(r.body.details.scope).toBe(scope.replace('$T', tenant));
    const after = await Promise.all(Object.keys(seeds).map(async (s) => strip(await b(s))));
    expect(after).toEqual(before);
    expect(await redis().zcard(keys.reservationIndex(tenant))).toBe(0);
    // a budget denial is reported on the outbox; nothing else was written
    const events = await redis().xrange(keys.outbox(tenant), '-', '+');
    expect(events.map(([, f]) => f[f.indexOf('type') + 1])).toEqual(['reservation.denied']);
  });

  it('BUDGET_EXCEEDED details carry the remaining amount', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 40 } });
    const r = await reserve({ key }, body(tenant));
    expect(r.body.details).toMatchObject({ scope: `tenant:${tenant}`, remaining: { unit: U, amount: 40 } });
  });

  it('debt within a positive overdraft_limit does not block (only remaining is checked)', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 1000, debt: 10, overdraft_limit: 50 } });
    const r = await reserve({ key }, body(tenant));
    expect(r.status).toBe(200);
  });

  it('409 TENANT_CLOSED for a closed tenant whose key still authenticates', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } }, { status: 'CLOSED' });
    const r = await reserve({ key }, body(tenant));
    expect([r.status, r.body.error]).toEqual([409, 'TENANT_CLOSED']);
    expect((await b('tenant:$T')).reserved).toBe('0');
  });

  it('a SUSPENDED tenant gets 403 (D9) with nothing held; a corrupt tenant record is a 500', async () => {
    const s = await setup({ 'tenant:$T': { allocated: 1000 } }, { status: 'SUSPENDED' });
    const susp = await reserve({ key: s.key }, body(s.tenant));
    expect([susp.status, susp.body.error, susp.body.details?.reason]).toEqual([403, 'FORBIDDEN', 'TENANT_SUSPENDED']);
    expect((await s.b('tenant:$T')).reserved).toBe('0');
    const c = await setup({ 'tenant:$T': { allocated: 1000 } }, { status: 'WEIRD' });
    const r = await reserve({ key: c.key }, body(c.tenant));
    expect([r.status, r.body.error]).toEqual([500, 'INTERNAL_ERROR']);
    const dry = await reserve({ key: c.key }, body(c.tenant, { dry_run: true }));
    expect([dry.status, dry.body.error]).toEqual([500, 'INTERNAL_ERROR']);
    expect((await c.b('tenant:$T')).reserved).toBe('0');
  });
});

describe('idempotency', () => {
  it('replay is byte-identical except remaining_ttl_ms, and charges once', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const req = body(tenant);
    const first = await reserve({ key }, req);
    await new Promise((r) => setTimeout(r, 30));
    // same payload with a different key order
    const reordered = { estimate: req.estimate, action: req.action, subject: req.subject, idempotency_key: req.idempotency_key };
    const second = await reserve({ key }, reordered);
    expect(second.status).toBe(200);
    const { remaining_ttl_ms: t1, ...a } = first.body;
    const { remaining_ttl_ms: t2, ...c } = second.body;
    expect(c).toEqual(a);
    expect(second.text.replace(/"remaining_ttl_ms":\d+/, '')).toBe(first.text.replace(/"remaining_ttl_ms":\d+/, ''));
    expect(t2).toBeLessThan(t1);
    expect((await b('tenant:$T')).reserved).toBe('100');

    // no longer ACTIVE → remaining_ttl_ms 0 on replay
    await redis().hset(keys.reservation(tenant, first.body.reservation_id), 'status', 'RELEASED');
    const third = await reserve({ key }, req);
    expect(third.body.remaining_ttl_ms).toBe(0);
    expect(third.body.reservation_id).toBe(first.body.reservation_id);
  });

  it('a replay of a pre-close success survives the tenant being closed', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 1000 } }, { status: 'ACTIVE' });
    const req = body(tenant);
    const first = await reserve({ key }, req);
    await redis().hset(keys.tenant(tenant), 'status', 'CLOSED');
    const again = await reserve({ key }, req);
    expect(again.status).toBe(200);
    expect(again.body.reservation_id).toBe(first.body.reservation_id);
    expect((await reserve({ key }, body(tenant))).body.error).toBe('TENANT_CLOSED');
  });

  it('409 IDEMPOTENCY_MISMATCH for the same key with a different payload; dry_run and live share the namespace', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const req = body(tenant);
    expect((await reserve({ key }, req)).status).toBe(200);
    const r = await reserve({ key }, { ...req, estimate: { unit: U, amount: 101 } });
    expect([r.status, r.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
    const d = await reserve({ key }, { ...req, dry_run: true });
    expect([d.status, d.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
    // explicit defaults are the same payload as omitted ones
    const same = await reserve({ key }, { ...req, grace_period_ms: 5000, dry_run: false });
    expect(same.status).toBe(200);
    expect((await b('tenant:$T')).reserved).toBe('100');
  });

  it('a failed (409) reserve is not stored: the same key succeeds once the budget allows it', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 50 } });
    const req = body(tenant);
    expect((await reserve({ key }, req)).status).toBe(409);
    await putBudget(redis(), tenant, `tenant:${tenant}`, U, { allocated: 500 });
    expect((await reserve({ key }, req)).status).toBe(200);
  });

  it('the same key used by two tenants creates two independent reservations', async () => {
    const a = await setup({ 'tenant:$T': { allocated: 1000 } });
    const c = await setup({ 'tenant:$T': { allocated: 1000 } });
    const ra = await reserve({ key: a.key }, body(a.tenant, { idempotency_key: 'shared' }));
    const rc = await reserve({ key: c.key }, body(c.tenant, { idempotency_key: 'shared', estimate: { unit: U, amount: 7 } }));
    expect([ra.status, rc.status]).toEqual([200, 200]);
    expect(ra.body.reservation_id).not.toBe(rc.body.reservation_id);
    expect((await a.b('tenant:$T')).reserved).toBe('100');
    expect((await c.b('tenant:$T')).reserved).toBe('7');
  });
});

describe('policies, TTL and overage resolution', () => {
  // Like policy_write.lua: the row plus the policy version bump (runtime policy caches key on it).
  const putPolicy = (tenant: string, p: Record<string, unknown>) => redis().multi()
    .hset(keys.policies(tenant), p.policy_id as string, JSON.stringify({ status: 'ACTIVE', created_at: '2026-01-01T00:00:00Z', ...p }))
    .incr(keys.policyVersion(tenant))
    .exec();

  it('caps from the matching policy → ALLOW_WITH_CAPS (live and dry_run); caps absent otherwise', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 1000 } });
    await putPolicy(tenant, { policy_id: 'p-low', scope_pattern: `tenant:${tenant}/*`, priority: 1, caps: { max_tokens: 1 } });
    await putPolicy(tenant, { policy_id: 'p-high', scope_pattern: 'agent:*', priority: 5, caps: { max_tokens: 4096, tool_denylist: ['rm'] } });
    const r = await reserve({ key }, body(tenant));
    expect(r.status).toBe(200);
    expect(r.body.decision).toBe('ALLOW_WITH_CAPS');
    expect(r.body.caps).toEqual({ max_tokens: 4096, tool_denylist: ['rm'] });
    expect(r.body.reservation_id).toBeDefined();
    const h = await readReservation(redis(), tenant, r.body.reservation_id);
    expect(h.policy_id).toBe('p-high');
    const dry = await reserve({ key }, body(tenant, { dry_run: true }));
    expect([dry.body.decision, dry.body.caps]).toEqual(['ALLOW_WITH_CAPS', { max_tokens: 4096, tool_denylist: ['rm'] }]);
    // a scope no policy matches
    const plain = await reserve({ key }, body(tenant, { subject: { tenant } }));
    expect(plain.body.decision).toBe('ALLOW');
    expect(plain.body.caps).toBeUndefined();
    // a DENY never carries caps
    const deny = await reserve({ key }, body(tenant, { dry_run: true, estimate: { unit: U, amount: 10_000 } }));
    expect(deny.body.decision).toBe('DENY');
    expect(deny.body.caps).toBeUndefined();
  });

  it('TTL: request capped at tenant max; tenant default when absent; policy overrides tenant', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 10_000 } }, { default_reservation_ttl_ms: '20000', max_reservation_ttl_ms: '40000', max_reservation_extensions: '3' });
    const ttlOf = async (over: Record<string, unknown>) => {
      const r = await reserve({ key }, body(tenant, over));
      expect(r.status).toBe(200);
      const h = await readReservation(redis(), tenant, r.body.reservation_id);
      return { ttl: Number(h.expires_at_ms) - Number(h.created_at_ms), h, r };
    };
    const capped = await ttlOf({ ttl_ms: 86_400_000 });
    expect(capped.ttl).toBeLessThanOrEqual(40_000);
    expect(capped.ttl).toBeGreaterThan(39_000);
    expect(capped.r.body.remaining_ttl_ms).toBeLessThanOrEqual(40_000);
    expect(capped.h.max_extensions).toBe('3');
    const dflt = await ttlOf({});
    expect(dflt.ttl).toBeLessThanOrEqual(20_000);
    expect(dflt.ttl).toBeGreaterThan(19_000);

    await putPolicy(tenant, { policy_id: 'ttl', scope_pattern: `tenant:${tenant}/agent:bot`, reservation_ttl_override: { default_ttl_ms: 5000, max_ttl_ms: 8000, max_extensions: 1 } });
    const pd = await ttlOf({});
    expect(pd.ttl).toBeLessThanOrEqual(5000);
    expect(pd.ttl).toBeGreaterThan(4000);
    expect(pd.h.max_extensions).toBe('1');
    const pc = await ttlOf({ ttl_ms: 30_000 });
    expect(pc.ttl).toBeLessThanOrEqual(8000);
    expect(pc.ttl).toBeGreaterThan(7000);
  });

  it('overage policy: request > policy > leaf budget > tenant default > ALLOW_IF_AVAILABLE', async () => {
    const { tenant, key } = await setup({
      'tenant:$T': { allocated: 10_000, commit_overage_policy: 'REJECT' },
      'tenant:$T/agent:bot': { allocated: 10_000, commit_overage_policy: 'ALLOW_WITH_OVERDRAFT' },
    }, { default_commit_overage_policy: 'REJECT' });
    const stored = async (over: Record<string, unknown>) => {
      const r = await reserve({ key }, body(tenant, over));
      expect(r.status).toBe(200);
      return (await readReservation(redis(), tenant, r.body.reservation_id)).overage_policy;
    };
    expect(await stored({})).toBe('ALLOW_WITH_OVERDRAFT'); // leaf-most budget
    expect(await stored({ subject: { tenant } })).toBe('REJECT'); // tenant-level budget
    expect(await stored({ subject: { tenant, agent: 'other' } })).toBe('REJECT'); // only the parent is budgeted
    expect(await stored({ overage_policy: 'ALLOW_IF_AVAILABLE' })).toBe('ALLOW_IF_AVAILABLE'); // request wins
    await putPolicy(tenant, { policy_id: 'ov', scope_pattern: 'agent:*', commit_overage_policy: 'ALLOW_IF_AVAILABLE' });
    expect(await stored({})).toBe('ALLOW_IF_AVAILABLE'); // policy beats budget
    expect(await stored({ overage_policy: 'REJECT' })).toBe('REJECT');

    const t2 = await setup({ 'tenant:$T': { allocated: 1000 } }, { default_commit_overage_policy: 'ALLOW_WITH_OVERDRAFT' });
    const r2 = await reserve({ key: t2.key }, body(t2.tenant));
    expect((await readReservation(redis(), t2.tenant, r2.body.reservation_id)).overage_policy).toBe('ALLOW_WITH_OVERDRAFT');
  });
});

describe('dry_run', () => {
  it('ALLOW without reservation_id / expires_at_ms / remaining_ttl_ms and without any write', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const before = await b('tenant:$T');
    const r = await reserve({ key }, body(tenant, { dry_run: true }));
    expect(r.status).toBe(200);
    expect(r.body.decision).toBe('ALLOW');
    expect(r.body.reservation_id).toBeUndefined();
    expect(r.body.expires_at_ms).toBeUndefined();
    expect(r.body.remaining_ttl_ms).toBeUndefined();
    expect(r.body.affected_scopes).toEqual([`tenant:${tenant}`, `tenant:${tenant}/agent:bot`]);
    expect(r.body.balances[0].remaining.amount).toBe(1000);
    expect(await b('tenant:$T')).toEqual(before);
    expect(await redis().zcard(keys.reservationIndex(tenant))).toBe(0);
    expect(await redis().exists(keys.outbox(tenant))).toBe(0);
  });

  it.each([
    ['BUDGET_EXCEEDED', { allocated: 10 }],
    ['BUDGET_FROZEN', { allocated: 1000, status: 'FROZEN' as const }],
    ['BUDGET_CLOSED', { allocated: 1000, status: 'CLOSED' as const }],
    ['OVERDRAFT_LIMIT_EXCEEDED', { allocated: 1000, debt: 5, is_over_limit: true }],
    ['DEBT_OUTSTANDING', { allocated: 1000, debt: 5 }],
  ])('200 DENY %s, with affected_scopes and no writes', async (code, seed) => {
    const { tenant, key, b } = await setup({ 'tenant:$T': seed });
    const before = await b('tenant:$T');
    const r = await reserve({ key }, body(tenant, { dry_run: true }));
    expect(r.status).toBe(200);
    expect([r.body.decision, r.body.reason_code]).toEqual(['DENY', code]);
    expect(r.body.affected_scopes).toHaveLength(2);
    expect(r.body.reservation_id).toBeUndefined();
    expect(r.body.remaining_ttl_ms).toBeUndefined();
    expect(r.body.caps).toBeUndefined();
    expect(await b('tenant:$T')).toEqual(before);
    expect(await redis().exists(keys.outbox(tenant))).toBe(0); // dry_run emits no event
  });

  it('200 DENY BUDGET_NOT_FOUND and TENANT_CLOSED', async () => {
    const nf = await setup({});
    const r = await reserve({ key: nf.key }, body(nf.tenant, { dry_run: true }));
    expect([r.status, r.body.decision, r.body.reason_code]).toEqual([200, 'DENY', 'BUDGET_NOT_FOUND']);
    const cl = await setup({ 'tenant:$T': { allocated: 1000 } }, { status: 'CLOSED' });
    const c = await reserve({ key: cl.key }, body(cl.tenant, { dry_run: true }));
    expect([c.status, c.body.decision, c.body.reason_code]).toEqual([200, 'DENY', 'TENANT_CLOSED']);
    expect(c.body.affected_scopes).toEqual([`tenant:${cl.tenant}`, `tenant:${cl.tenant}/agent:bot`]);
  });

  it('is idempotent: the stored evaluation replays even after the budget changed', async () => {
    const { tenant, key } = await setup({ 'tenant:$T': { allocated: 10 } });
    const req = body(tenant, { dry_run: true });
    const first = await reserve({ key }, req);
    expect(first.body.decision).toBe('DENY');
    await putBudget(redis(), tenant, `tenant:${tenant}`, U, { allocated: 1000 });
    const again = await reserve({ key }, req);
    expect(again.text).toBe(first.text);
    const other = await reserve({ key }, { ...req, estimate: { unit: U, amount: 1 } });
    expect([other.status, other.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });
});

describe('int64 boundaries', () => {
  const MAX = 9223372036854775807n;
  it('reserves 2^53+1 exactly against a budget of 2^63-1', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: MAX } });
    const est = 9007199254740993n;
    const r = await reserve({ key }, body(tenant, { estimate: { unit: U, amount: est } }));
    expect(r.status).toBe(200);
    expect(r.body.reserved.amount).toBe(est);
    expect(r.text).toContain('"reserved":{"unit":"USD_MICROCENTS","amount":9007199254740993}');
    expect(r.body.balances[0].remaining.amount).toBe(MAX - est);
    expect(r.body.balances[0].allocated.amount).toBe(MAX);
    const h = await b('tenant:$T');
    expect([h.reserved, h.remaining]).toEqual(['9007199254740993', (MAX - est).toString()]);
    expect(ledgerHolds(h)).toBe(true);
    const res = await readReservation(redis(), tenant, r.body.reservation_id);
    expect(res.estimate).toBe('9007199254740993');
  });

  it('estimate 2^63 → 400, nothing written', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: MAX } });
    const raw = JSON.stringify(body(tenant)).replace('"amount":100', '"amount":9223372036854775808');
    const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, rawBody: raw });
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect((await b('tenant:$T')).reserved).toBe('0');
  });

  it('a reserve that would overflow `reserved` beyond int64 → 409 BUDGET_EXCEEDED, no partial write', async () => {
    // negative spent (e.g. after a RESET_SPENT correction) leaves remaining > allocated - reserved,
    // so the remaining check passes and only the overflow pre-check stops the write
    const { tenant, key, b } = await setup({
      'tenant:$T': { allocated: 1000 },
      'tenant:$T/agent:bot': { allocated: MAX, spent: -100, reserved: MAX - 50n },
    });
    const before = [strip(await b('tenant:$T')), strip(await b('tenant:$T/agent:bot'))];
    const r = await reserve({ key }, body(tenant, { estimate: { unit: U, amount: 100 } }));
    expect([r.status, r.body.error]).toEqual([409, 'BUDGET_EXCEEDED']);
    expect([strip(await b('tenant:$T')), strip(await b('tenant:$T/agent:bot'))]).toEqual(before);
  });
});

describe('concurrency', () => {
  it('200 parallel reserves on a budget that fits exactly 100 → exactly 100 succeed; invariant holds everywhere', async () => {
    const agents = ['a1', 'a2', 'a3', 'a4'];
    const seeds: Record<string, BudgetSeed> = { 'tenant:$T': { allocated: 100 * 7 } };
    for (const a of agents) seeds[`tenant:$T/agent:${a}`] = { allocated: 1_000_000 };
    const { tenant, key, b } = await setup(seeds);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
      reserve({ key }, body(tenant, { subject: { tenant, agent: agents[i % 4] }, estimate: { unit: U, amount: 7 } }))));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(100);
    expect(statuses.filter((s) => s === 409)).toHaveLength(100);
    expect(results.filter((r) => r.status === 409).every((r) => r.body.error === 'BUDGET_EXCEEDED')).toBe(true);
    const parent = await b('tenant:$T');
    expect([parent.reserved, parent.remaining]).toEqual(['700', '0']);
    expect(ledgerHolds(parent)).toBe(true);
    let childReserved = 0n;
    for (const a of agents) {
      const c = await b(`tenant:$T/agent:${a}`);
      expect(ledgerHolds(c)).toBe(true);
      childReserved += BigInt(c.reserved);
      const wins = results.filter((r, i) => r.status === 200 && agents[i % 4] === a).length;
      expect(c.reserved).toBe(String(wins * 7));
    }
    expect(childReserved).toBe(700n);
    expect(await redis().zcard(keys.reservationIndex(tenant))).toBe(100);
    expect(new Set(results.filter((r) => r.status === 200).map((r) => r.body.reservation_id)).size).toBe(100);
  }, 60_000);

  it('concurrent requests with the same key converge on one reservation', async () => {
    const { tenant, key, b } = await setup({ 'tenant:$T': { allocated: 1000 } });
    const req = body(tenant);
    const rs = await Promise.all(Array.from({ length: 20 }, () => reserve({ key }, req)));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(new Set(rs.map((r) => r.body.reservation_id)).size).toBe(1);
    expect((await b('tenant:$T')).reserved).toBe('100');
  });
});
