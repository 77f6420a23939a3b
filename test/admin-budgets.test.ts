// Budgets on the admin plane: create (scope grammar, tenant_id rule, tenant state,
// duplicates, units, int64), lookup, update, freeze/unfreeze, list filters/sort/cursor.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { keys } from '../src/store/keys';
import { getBudget } from './helpers/fixtures';
import { ledgerHolds } from '../src/ledger/model';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); }, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const T = (n: number | bigint | string, unit = 'TOKENS') => ({ unit, amount: typeof n === 'string' ? BigInt(n) : n });
async function tenant(id: string) {
  const r = await admin('POST', '/v1/admin/tenants', { tenant_id: id, name: id });
  expect([200, 201]).toContain(r.status);
}
const q = (scope: string, unit = 'TOKENS') => `scope=${encodeURIComponent(scope)}&unit=${unit}`;

describe('createBudget', () => {
  it('201 with the initial state; hash follows model.ts; budget.created in the outbox', async () => {
    await tenant('bg-one');
    const r = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-one', scope: 'tenant:bg-one/Workspace:Eng', unit: 'TOKENS', allocated: T(1000) });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      tenant_id: 'bg-one', scope: 'tenant:bg-one/workspace:eng', scope_path: 'tenant:bg-one/workspace:eng', unit: 'TOKENS',
      allocated: T(1000), remaining: T(1000), reserved: T(0), spent: T(0), debt: T(0), overdraft_limit: T(0),
      is_over_limit: false, status: 'ACTIVE', rollover_policy: 'NONE',
    });
    expect(r.body.ledger_id).toBeTruthy();
    const h = await getBudget(s.redis.client, 'bg-one', 'tenant:bg-one/workspace:eng', 'TOKENS');
    expect(h).toMatchObject({ allocated: '1000', remaining: '1000', reserved: '0', spent: '0', debt: '0', is_over_limit: '0', status: 'ACTIVE', tenant_id: 'bg-one' });
    expect(await s.redis.client.zrange(keys.budgetIndex('bg-one'), 0, -1)).toEqual(['tenant:bg-one/workspace:eng|TOKENS']);
    const ev = await s.redis.client.xrange(keys.outbox('bg-one'), '-', '+');
    const last = ev[ev.length - 1][1];
    expect(last[last.indexOf('type') + 1]).toBe('budget.created');
    expect(JSON.parse(last[last.indexOf('actor') + 1])).toEqual({ type: 'admin_on_behalf_of' });
  });

  it('409 DUPLICATE_RESOURCE for the same (scope, unit) in any case; another unit is fine', async () => {
    await tenant('bg-dup');
    const body = { tenant_id: 'bg-dup', scope: 'tenant:bg-dup', unit: 'TOKENS', allocated: T(1) };
    expect((await admin('POST', '/v1/admin/budgets', body)).status).toBe(201);
    const d = await admin('POST', '/v1/admin/budgets', { ...body, scope: 'TENANT:BG-DUP' });
    expect(d.status).toBe(409);
    expect(d.body.error).toBe('DUPLICATE_RESOURCE');
    expect((await admin('POST', '/v1/admin/budgets', { ...body, unit: 'CREDITS', allocated: T(1, 'CREDITS') })).status).toBe(201);
  });

  it('400 INVALID_REQUEST on bad scope grammar, foreign tenant root, missing tenant_id (admin), unknown/suspended tenant', async () => {
    await tenant('bg-gram');
    const bad = ['workspace:eng', 'tenant:bg-gram/agent:a/workspace:b', 'tenant:bg-gram/planet:x', 'tenant:bg-gram/agent:*',
      'tenant:bg-gram//agent:a', 'tenant:bg-gram/agent:-a', 'tenant:other', `tenant:bg-gram/agent:${'a'.repeat(129)}`];
    for (const scope of bad) {
      const r = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-gram', scope, unit: 'TOKENS', allocated: T(1) });
      expect(r.status, scope).toBe(400);
      expect(r.body.error).toBe('INVALID_REQUEST');
    }
    const noTenant = await admin('POST', '/v1/admin/budgets', { scope: 'tenant:bg-gram', unit: 'TOKENS', allocated: T(1) });
    expect(noTenant.status).toBe(400);
    const unknown = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-ghost', scope: 'tenant:bg-ghost', unit: 'TOKENS', allocated: T(1) });
    expect(unknown.status).toBe(400);
    expect(unknown.body.details.reason).toBe('TENANT_NOT_FOUND');
    await tenant('bg-sus');
    await admin('PATCH', '/v1/admin/tenants/bg-sus', { status: 'SUSPENDED' });
    const sus = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-sus', scope: 'tenant:bg-sus', unit: 'TOKENS', allocated: T(1) });
    expect(sus.status).toBe(400);
    expect(await s.redis.client.exists(keys.budget('bg-sus', 'tenant:bg-sus', 'TOKENS'))).toBe(0);
  });

  it('tenant key: tenant_id in body → 400; own tenant → 201 with actor api_key', async () => {
    await tenant('bg-tk');
    const key = await s.tenantKey('bg-tk');
    const withId = await call(s.adminUrl, 'POST', '/v1/admin/budgets', { key, body: { tenant_id: 'bg-tk', scope: 'tenant:bg-tk', unit: 'TOKENS', allocated: T(5) } });
    expect(withId.status).toBe(400);
    const ok = await call(s.adminUrl, 'POST', '/v1/admin/budgets', { key, body: { scope: 'tenant:bg-tk', unit: 'TOKENS', allocated: T(5) } });
    expect(ok.status).toBe(201);
    expect(ok.body.tenant_id).toBe('bg-tk');
    const other = await call(s.adminUrl, 'POST', '/v1/admin/budgets', { key, body: { scope: 'tenant:bg-one/workspace:x', unit: 'TOKENS', allocated: T(5) } });
    expect(other.status).toBe(400);
  });

  it('400 UNIT_MISMATCH when allocated or overdraft_limit carry another unit', async () => {
    await tenant('bg-unit');
    const a = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-unit', scope: 'tenant:bg-unit', unit: 'TOKENS', allocated: T(1, 'CREDITS') });
    expect(a.status).toBe(400);
    expect(a.body.error).toBe('UNIT_MISMATCH');
    const o = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-unit', scope: 'tenant:bg-unit', unit: 'TOKENS', allocated: T(1), overdraft_limit: T(1, 'USD_MICROCENTS') });
    expect(o.status).toBe(400);
    expect(o.body.error).toBe('UNIT_MISMATCH');
  });

  it('int64: 2^53+1 and 2^63-1 are stored and returned exactly; 2^63 and negatives → 400', async () => {
    await tenant('bg-big');
    for (const [agent, v] of [['a53', 2n ** 53n + 1n], ['a63', 2n ** 63n - 1n]] as const) {
      const r = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-big', scope: `tenant:bg-big/agent:${agent}`, unit: 'TOKENS', allocated: T(v) });
      expect(r.status).toBe(201);
      expect(BigInt(r.body.allocated.amount)).toBe(v);
      expect(BigInt(r.body.remaining.amount)).toBe(v);
      expect(r.text).toContain(`"amount":${v}`);
    }
    const over = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-big', scope: 'tenant:bg-big/agent:o', unit: 'TOKENS', allocated: T(2n ** 63n) });
    expect(over.status).toBe(400);
    const neg = await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-big', scope: 'tenant:bg-big/agent:n', unit: 'TOKENS', allocated: T(-1) });
    expect(neg.status).toBe(400);
  });
});

describe('lookup / update / freeze / unfreeze', () => {
  it('lookup is exact and case-normalised; 404 BUDGET_NOT_FOUND otherwise', async () => {
    await tenant('bg-look');
    await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-look', scope: 'tenant:bg-look/workspace:w', unit: 'CREDITS', allocated: T(3, 'CREDITS') });
    const r = await admin('GET', `/v1/admin/budgets/lookup?${q('tenant:bg-look/WORKSPACE:W', 'CREDITS')}`);
    expect(r.status).toBe(200);
    expect(r.body.scope).toBe('tenant:bg-look/workspace:w');
    const nf = await admin('GET', `/v1/admin/budgets/lookup?${q('tenant:bg-look/workspace:w', 'TOKENS')}`);
    expect(nf.status).toBe(404);
    expect(nf.body.error).toBe('BUDGET_NOT_FOUND');
    expect((await admin('GET', `/v1/admin/budgets/lookup?${q('tenant:bg-look', 'CREDITS')}`)).status).toBe(404);
  });

  it('update recomputes is_over_limit from debt vs overdraft_limit; 400 UNIT_MISMATCH; 404', async () => {
    await tenant('bg-upd');
    await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-upd', scope: 'tenant:bg-upd', unit: 'TOKENS', allocated: T(100), overdraft_limit: T(50) });
    // debt 30 within limit 50, as a commit with overdraft would leave it
    await s.redis.client.hset(keys.budget('bg-upd', 'tenant:bg-upd', 'TOKENS'), { debt: '30', remaining: '70' });
    const lower = await admin('PATCH', `/v1/admin/budgets?${q('tenant:bg-upd')}`, { overdraft_limit: T(10), commit_overage_policy: 'REJECT' });
    expect(lower.status).toBe(200);
    expect(lower.body).toMatchObject({ is_over_limit: true, overdraft_limit: T(10), commit_overage_policy: 'REJECT', remaining: T(70) });
    const raise = await admin('PATCH', `/v1/admin/budgets?${q('tenant:bg-upd')}`, { overdraft_limit: T(30) });
    expect(raise.body.is_over_limit).toBe(false);
    const mm = await admin('PATCH', `/v1/admin/budgets?${q('tenant:bg-upd')}`, { overdraft_limit: T(1, 'CREDITS') });
    expect(mm.status).toBe(400);
    expect(mm.body.error).toBe('UNIT_MISMATCH');
    const nf = await admin('PATCH', `/v1/admin/budgets?${q('tenant:bg-upd/agent:x')}`, { overdraft_limit: T(1) });
    expect(nf.status).toBe(404);
    expect(nf.body.error).toBe('BUDGET_NOT_FOUND');
  });

  it('freeze/unfreeze transitions and 409s; FROZEN still updatable; events emitted', async () => {
    await tenant('bg-frz');
    await admin('POST', '/v1/admin/budgets', { tenant_id: 'bg-frz', scope: 'tenant:bg-frz', unit: 'TOKENS', allocated: T(10) });
    const f = await admin('POST', `/v1/admin/budgets/freeze?${q('tenant:bg-frz')}`, { reason: 'audit' });
    expect(f.status).toBe(200);
    expect(f.body.status).toBe('FROZEN');
    const f2 = await admin('POST', `/v1/admin/budgets/freeze?${q('tenant:bg-frz')}`);
    expect(f2.status).toBe(409);
    expect((await admin('PATCH', `/v1/admin/budgets?${q('tenant:bg-frz')}`, { metadata: { a: 1 } })).status).toBe(200);
    const u = await admin('POST', `/v1/admin/budgets/unfreeze?${q('tenant:bg-frz')}`, {});
    expect(u.body.status).toBe('ACTIVE');
    const u2 = await admin('POST', `/v1/admin/budgets/unfreeze?${q('tenant:bg-frz')}`);
    expect(u2.status).toBe(409);
    expect((await admin('POST', `/v1/admin/budgets/freeze?${q('tenant:bg-frz')}`, { reason: 'x'.repeat(513) })).status).toBe(400);
    expect((await admin('POST', `/v1/admin/budgets/freeze?${q('tenant:bg-frz')}`, { colour: 'red' })).status).toBe(400);
    expect((await admin('POST', `/v1/admin/budgets/freeze?${q('tenant:bg-frz/agent:none')}`)).status).toBe(404);
    await s.redis.client.hset(keys.budget('bg-frz', 'tenant:bg-frz', 'TOKENS'), 'status', 'CLOSED');
    for (const path of ['freeze', 'unfreeze']) {
      const c = await admin('POST', `/v1/admin/budgets/${path}?${q('tenant:bg-frz')}`);
      expect(c.status).toBe(409);
      expect(c.body.error).toBe('BUDGET_CLOSED');
    }
    const cu = await admin('PATCH', `/v1/admin/budgets?${q('tenant:bg-frz')}`, { metadata: {} });
    expect(cu.body.error).toBe('BUDGET_CLOSED');
    const types = (await s.redis.client.xrange(keys.outbox('bg-frz'), '-', '+')).map(([, x]) => x[x.indexOf('type') + 1]);
    expect(types).toEqual(['tenant.created', 'budget.created', 'budget.frozen', 'budget.updated', 'budget.unfrozen']);
  });
});

describe('listBudgets', () => {
  it('filters (scope_prefix, unit, status, over_limit, has_debt, utilization, search), sorts, pages; cross-tenant with tenant_id on rows', async () => {
    await tenant('lb-a');
    await tenant('lb-b');
    for (let i = 0; i < 5; i++) {
      await admin('POST', '/v1/admin/budgets', { tenant_id: 'lb-a', scope: `tenant:lb-a/agent:a${i}`, unit: 'TOKENS', allocated: T(100) });
      await s.redis.client.hset(keys.budget('lb-a', `tenant:lb-a/agent:a${i}`, 'TOKENS'), { spent: String(i * 20), remaining: String(100 - i * 20) });
    }
    await admin('POST', '/v1/admin/budgets', { tenant_id: 'lb-b', scope: 'tenant:lb-b', unit: 'CREDITS', allocated: T(0, 'CREDITS') });
    await s.redis.client.hset(keys.budget('lb-a', 'tenant:lb-a/agent:a4', 'TOKENS'), { debt: '5', remaining: '15', is_over_limit: '1' });

    const util = await admin('GET', '/v1/admin/budgets?tenant_id=lb-a&utilization_min=0.2&utilization_max=0.6');
    expect(util.body.ledgers.map((l: any) => l.scope)).toEqual(['tenant:lb-a/agent:a3', 'tenant:lb-a/agent:a2', 'tenant:lb-a/agent:a1']);
    const debt = await admin('GET', '/v1/admin/budgets?tenant_id=lb-a&has_debt=true');
    expect(debt.body.ledgers.map((l: any) => l.scope)).toEqual(['tenant:lb-a/agent:a4']);
    const notOver = await admin('GET', '/v1/admin/budgets?tenant_id=lb-a&over_limit=false');
    expect(notOver.body.ledgers).toHaveLength(4);
    const srch = await admin('GET', '/v1/admin/budgets?search=LB-B');
    expect(srch.body.ledgers.map((l: any) => [l.tenant_id, l.unit])).toEqual([['lb-b', 'CREDITS']]);
    const pref = await admin('GET', `/v1/admin/budgets?scope_prefix=${encodeURIComponent('tenant:lb-a/agent:a1')}&unit=TOKENS&status=ACTIVE`);
    expect(pref.body.ledgers.map((l: any) => l.scope)).toEqual(['tenant:lb-a/agent:a1']);

    const all: string[] = [];
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await admin('GET', `/v1/admin/budgets?sort_by=scope&sort_dir=asc&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      for (const l of r.body.ledgers) { expect(l.tenant_id).toBeTruthy(); all.push(l.scope); ids.push(l.ledger_id); }
      cursor = r.body.has_more ? r.body.next_cursor : undefined;
    } while (cursor);
    expect(all.filter((x) => x.startsWith('tenant:lb-'))).toEqual([...Array.from({ length: 5 }, (_, i) => `tenant:lb-a/agent:a${i}`), 'tenant:lb-b']);
    expect(new Set(ids).size).toBe(ids.length);

    const tk = await s.tenantKey('lb-b');
    const mine = await call(s.adminUrl, 'GET', '/v1/admin/budgets?tenant_id=lb-a', { key: tk });
    expect(mine.body.ledgers.map((l: any) => l.tenant_id)).toEqual(['lb-b']);
  });

  it('400 on utilization_min > max, out of range, bad sort_by/sort_dir', async () => {
    for (const qs of ['utilization_min=0.8&utilization_max=0.2', 'utilization_min=1.5', 'sort_by=colour', 'sort_dir=up']) {
      const r = await admin('GET', `/v1/admin/budgets?${qs}`);
      expect(r.status, qs).toBe(400);
      expect(r.body.error).toBe('INVALID_REQUEST');
    }
  });

  it('ledger invariant holds on every created budget', async () => {
    const h = await getBudget(s.redis.client, 'bg-one', 'tenant:bg-one/workspace:eng', 'TOKENS');
    expect(ledgerHolds(h)).toBe(true);
  });
});
