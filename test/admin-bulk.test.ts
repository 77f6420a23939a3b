// bulkActionTenants / bulkActionBudgets: gates (filter, COUNT_MISMATCH with nothing
// changed, LIMIT_EXCEEDED at 501 matches, idempotent replay / mismatch), per-row outcome
// classification, events with the bulk correlation id, one audit row, exact int64.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, getBudget } from './helpers/fixtures';
import { keys } from '../src/store/keys';

let s: TestServer;
let n = 0;
const uniq = (p: string) => `${p}-${process.pid}-${++n}`;

beforeAll(async () => { s = await startTestServer(); });
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });

/** Tenant records as createTenant writes them (hash + tenant index), in one pipeline. */
async function seedTenants(ids: string[], status = 'ACTIVE', extra: Record<string, string> = {}) {
  const now = Date.now();
  const p = s.redis.client.pipeline();
  for (const id of ids) {
    p.hset(keys.tenant(id), { tenant_id: id, name: `name ${id}`, status, created_at_ms: String(now), updated_at_ms: String(now),
      default_commit_overage_policy: 'ALLOW_IF_AVAILABLE', default_reservation_ttl_ms: '60000', max_reservation_ttl_ms: '3600000',
      max_reservation_extensions: '10', ...extra });
    p.zadd(keys.tenantIndex(), now, id);
    p.sadd(keys.tenants(), id);
  }
  await p.exec();
}

async function events(t: string) {
  const rows = await s.redis.client.xrange(keys.outbox(t), '-', '+');
  return rows.map(([, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) f[flat[i]] = flat[i + 1];
    return f;
  });
}

const status = (t: string) => s.redis.client.hget(keys.tenant(t), 'status');

describe('bulkActionTenants', () => {
  it('400 for an empty filter and for a missing idempotency_key', async () => {
    const a = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: {}, action: 'SUSPEND', idempotency_key: uniq('k') });
    expect([a.status, a.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const b = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { status: 'ACTIVE' }, action: 'SUSPEND' });
    expect([b.status, b.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('SUSPEND: succeeded / skipped (ALREADY_IN_TARGET_STATE) / failed (INVALID_TRANSITION); events only for transitions', async () => {
    const tag = uniq('bsus');
    const [a1, a2, sus, closed] = [`${tag}-a1`, `${tag}-a2`, `${tag}-s`, `${tag}-c`];
    await seedTenants([a1, a2]);
    await seedTenants([sus], 'SUSPENDED');
    await seedTenants([closed], 'CLOSED');
    const r = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: tag }, action: 'SUSPEND', expected_count: 4, idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect(r.body.total_matched).toBe(4);
    expect(r.body.succeeded.map((x: any) => x.id).sort()).toEqual([a1, a2]);
    expect(r.body.skipped).toEqual([{ id: sus, reason: 'ALREADY_IN_TARGET_STATE' }]);
    expect(r.body.failed).toHaveLength(1);
    expect(r.body.failed[0]).toMatchObject({ id: closed, error_code: 'INVALID_TRANSITION' });
    expect([await status(a1), await status(a2), await status(sus), await status(closed)]).toEqual(['SUSPENDED', 'SUSPENDED', 'SUSPENDED', 'CLOSED']);
    const reqId = r.headers.get('x-request-id');
    for (const t of [a1, a2]) {
      const ev = await events(t);
      expect(ev.map((e) => e.type)).toEqual(['tenant.suspended']);
      expect(ev[0].correlation_id).toBe(`tenant_bulk_action:suspend:${reqId}`);
      expect(ev[0].request_id).toBe(reqId);
    }
    expect(await events(sus)).toEqual([]);
    expect(await events(closed)).toEqual([]);
  });

  it('409 COUNT_MISMATCH changes nothing; the key is released so a corrected retry applies', async () => {
    const tag = uniq('bcnt');
    await seedTenants([`${tag}-1`, `${tag}-2`]);
    const key = uniq('k');
    const r = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: tag }, action: 'SUSPEND', expected_count: 3, idempotency_key: key });
    expect([r.status, r.body.error]).toEqual([409, 'COUNT_MISMATCH']);
    expect(r.body.details).toMatchObject({ expected_count: 3, total_matched: 2 });
    expect([await status(`${tag}-1`), await status(`${tag}-2`)]).toEqual(['ACTIVE', 'ACTIVE']);
    expect(await events(`${tag}-1`)).toEqual([]);
    const ok = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: tag }, action: 'SUSPEND', expected_count: 2, idempotency_key: key });
    expect(ok.status).toBe(200);
    expect(ok.body.succeeded).toHaveLength(2);
  });

  it('400 LIMIT_EXCEEDED with details.total_matched at 501 matches (nothing changed); 500 matches pass the limit gate', async () => {
    const tag = uniq('blim');
    const ids = Array.from({ length: 501 }, (_, i) => `${tag}-${String(i).padStart(3, '0')}`);
    await seedTenants(ids);
    const r = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: tag }, action: 'SUSPEND', idempotency_key: uniq('k') });
    expect([r.status, r.body.error]).toEqual([400, 'LIMIT_EXCEEDED']);
    expect(r.body.details.total_matched).toBe(501);
    expect(await status(ids[0])).toBe('ACTIVE');
    expect(await s.redis.client.xlen(keys.outbox(ids[0]))).toBe(0);
    // 500 matches: past the limit gate, stopped by the count gate (no writes either)
    await s.redis.client.hset(keys.tenant(ids[500]), 'status', 'SUSPENDED');
    const r2 = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: tag, status: 'ACTIVE' }, action: 'SUSPEND', expected_count: 1, idempotency_key: uniq('k') });
    expect([r2.status, r2.body.error, r2.body.details?.total_matched]).toEqual([409, 'COUNT_MISMATCH', 500]);
  });

  it('idempotent replay returns the original envelope without re-applying; a different body is 409 IDEMPOTENCY_MISMATCH', async () => {
    const tag = uniq('bidem');
    await seedTenants([`${tag}-1`], 'SUSPENDED');
    const key = uniq('k');
    const body = { filter: { search: tag }, action: 'REACTIVATE', idempotency_key: key };
    const r1 = await admin('POST', '/v1/admin/tenants/bulk-action', body);
    expect(r1.status).toBe(200);
    expect(r1.body.succeeded).toEqual([{ id: `${tag}-1` }]);
    // state drifts; the replay still answers the original envelope and applies nothing
    await s.redis.client.hset(keys.tenant(`${tag}-1`), 'status', 'SUSPENDED');
    const r2 = await admin('POST', '/v1/admin/tenants/bulk-action', body);
    expect(r2.status).toBe(200);
    expect(r2.body).toEqual(r1.body);
    expect(await status(`${tag}-1`)).toBe('SUSPENDED');
    expect((await events(`${tag}-1`)).map((e) => e.type)).toEqual(['tenant.reactivated']);
    const r3 = await admin('POST', '/v1/admin/tenants/bulk-action', { ...body, action: 'SUSPEND' });
    expect([r3.status, r3.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('CLOSE runs the close cascade per row; exactly one audit row for the invocation', async () => {
    const tag = uniq('bclose');
    const t = `${tag}-1`;
    await seedTenants([t]);
    await putBudget(s.redis.client, t, `tenant:${t}`, 'TOKENS', { allocated: 100 });
    const before = await s.redis.client.zcard(keys.auditAll());
    const r = await admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: tag }, action: 'CLOSE', idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect(r.body.succeeded).toEqual([{ id: t }]);
    expect(await status(t)).toBe('CLOSED');
    expect((await getBudget(s.redis.client, t, `tenant:${t}`, 'TOKENS')).status).toBe('CLOSED');
    const log = await admin('GET', `/v1/admin/audit/logs?request_id=${r.headers.get('x-request-id')}`);
    expect(log.body.logs).toHaveLength(1);
    expect(log.body.logs[0]).toMatchObject({ operation: 'bulkActionTenants', status: 200, resource_type: 'tenant' });
    expect(log.body.logs[0].metadata).toMatchObject({ succeeded_ids: [t], actor_type: 'admin_on_behalf_of' });
    expect(await s.redis.client.zcard(keys.auditAll())).toBe(before + 2); // the bulk call + the lookup
    // The parent tenant.closed carries the bulk id; the cascade children keep the cascade id.
    const reqId = r.headers.get('x-request-id');
    const ev = await events(t);
    const parent = ev.filter((e) => e.type === 'tenant.closed');
    expect(parent).toHaveLength(1);
    expect(parent[0].correlation_id).toBe(`tenant_bulk_action:close:${reqId}`);
    const children = ev.filter((e) => e.type.endsWith('_via_tenant_cascade'));
    expect(children.length).toBeGreaterThan(0);
    for (const c of children) expect(c.correlation_id).toBe(`tenant_close_cascade:${t}:${reqId}`);
  });
});

describe('bulkActionBudgets', () => {
  const url = '/v1/admin/budgets/bulk-action';
  const amt = (amount: number | bigint, unit = 'TOKENS') => ({ unit, amount });

  it('400: missing filter.tenant_id, missing amount, negative amount, utilization_min > max', async () => {
    const t = uniq('bb');
    await seedTenants([t]);
    for (const body of [
      { filter: { scope_prefix: 'tenant:x' }, action: 'CREDIT', amount: amt(1), idempotency_key: uniq('k') },
      { filter: { tenant_id: t }, action: 'CREDIT', idempotency_key: uniq('k') },
      { filter: { tenant_id: t }, action: 'DEBIT', amount: amt(-1), idempotency_key: uniq('k') },
      { filter: { tenant_id: t, utilization_min: 0.9, utilization_max: 0.1 }, action: 'CREDIT', amount: amt(1), idempotency_key: uniq('k') },
    ]) {
      const r = await admin('POST', url, body);
      expect([r.status, r.body.error], JSON.stringify(body)).toEqual([400, 'INVALID_REQUEST']);
    }
  });

  it('404 TENANT_NOT_FOUND for an unknown filter tenant', async () => {
    const r = await admin('POST', url, { filter: { tenant_id: 'no-such-tenant-bb' }, action: 'CREDIT', amount: amt(1), idempotency_key: uniq('k') });
    expect([r.status, r.body.error]).toEqual([404, 'TENANT_NOT_FOUND']);
  });

  it('CREDIT under a scope_prefix: rows succeed by ledger_id; budget.funded events carry the bulk correlation id', async () => {
    const t = uniq('bcr');
    await seedTenants([t]);
    await putBudget(s.redis.client, t, `tenant:${t}/workspace:eng`, 'TOKENS', { allocated: 100 });
    await putBudget(s.redis.client, t, `tenant:${t}/workspace:eng/app:a`, 'TOKENS', { allocated: 10, spent: 4 });
    await putBudget(s.redis.client, t, `tenant:${t}/workspace:ops`, 'TOKENS', { allocated: 7 });
    const r = await admin('POST', url, { filter: { tenant_id: t, scope_prefix: `tenant:${t}/workspace:eng` }, action: 'CREDIT', amount: amt(5), expected_count: 2, idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect(r.body.total_matched).toBe(2);
    expect(r.body.succeeded).toHaveLength(2);
    const eng = await getBudget(s.redis.client, t, `tenant:${t}/workspace:eng`, 'TOKENS');
    expect(r.body.succeeded.map((x: any) => x.id)).toContain(eng.ledger_id);
    expect([eng.allocated, eng.remaining]).toEqual(['105', '105']);
    const app = await getBudget(s.redis.client, t, `tenant:${t}/workspace:eng/app:a`, 'TOKENS');
    expect([app.allocated, app.remaining, app.spent]).toEqual(['15', '11', '4']);
    expect((await getBudget(s.redis.client, t, `tenant:${t}/workspace:ops`, 'TOKENS')).allocated).toBe('7');
    const ev = await events(t);
    expect(ev.map((e) => e.type)).toEqual(['budget.funded', 'budget.funded']);
    expect(new Set(ev.map((e) => e.correlation_id))).toEqual(new Set([`budget_bulk_action:credit:${r.headers.get('x-request-id')}`]));
    const log = await admin('GET', `/v1/admin/audit/logs?request_id=${r.headers.get('x-request-id')}`);
    expect(log.body.logs[0]).toMatchObject({ tenant_id: t, operation: 'bulkActionBudgets', resource_type: 'budget' });
  });

  it('DEBIT: BUDGET_EXCEEDED and FROZEN / unit-mismatch rows fail without changes; others succeed', async () => {
    const t = uniq('bdeb');
    await seedTenants([t]);
    await putBudget(s.redis.client, t, `tenant:${t}/app:big`, 'TOKENS', { allocated: 100 });
    await putBudget(s.redis.client, t, `tenant:${t}/app:small`, 'TOKENS', { allocated: 3 });
    await putBudget(s.redis.client, t, `tenant:${t}/app:frozen`, 'TOKENS', { allocated: 100, status: 'FROZEN' });
    await putBudget(s.redis.client, t, `tenant:${t}/app:usd`, 'USD_MICROCENTS', { allocated: 100 });
    const r = await admin('POST', url, { filter: { tenant_id: t }, action: 'DEBIT', amount: amt(10), idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect(r.body.succeeded).toHaveLength(1);
    const byId = Object.fromEntries(r.body.failed.map((f: any) => [f.id, f.error_code]));
    const id = async (scope: string, unit = 'TOKENS') => (await getBudget(s.redis.client, t, `tenant:${t}/${scope}`, unit)).ledger_id;
    expect(byId[await id('app:small')]).toBe('BUDGET_EXCEEDED');
    expect(byId[await id('app:frozen')]).toBe('INVALID_TRANSITION');
    expect(byId[await id('app:usd', 'USD_MICROCENTS')]).toBe('INVALID_TRANSITION');
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:small`, 'TOKENS')).remaining).toBe('3');
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:frozen`, 'TOKENS')).remaining).toBe('100');
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:big`, 'TOKENS')).remaining).toBe('90');
    expect((await events(t)).map((e) => e.type)).toEqual(['budget.debited']);
  });

  it('REPAY_DEBT on a ledger without debt is skipped', async () => {
    const t = uniq('brep');
    await seedTenants([t]);
    await putBudget(s.redis.client, t, `tenant:${t}/app:a`, 'TOKENS', { allocated: 10 });
    await putBudget(s.redis.client, t, `tenant:${t}/app:b`, 'TOKENS', { allocated: 10, debt: 4 });
    const r = await admin('POST', url, { filter: { tenant_id: t }, action: 'REPAY_DEBT', amount: amt(3), idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect(r.body.skipped).toEqual([{ id: (await getBudget(s.redis.client, t, `tenant:${t}/app:a`, 'TOKENS')).ledger_id, reason: 'ALREADY_IN_TARGET_STATE' }]);
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:b`, 'TOKENS')).debt).toBe('1');
  });

  it('COUNT_MISMATCH and LIMIT_EXCEEDED (501 ledgers) change nothing; replay does not re-apply', async () => {
    const t = uniq('bbl');
    await seedTenants([t]);
    const p = s.redis.client.pipeline();
    for (let i = 0; i < 501; i++) {
      const scope = `tenant:${t}/app:a${i}`;
      p.hset(keys.budget(t, scope, 'TOKENS'), { ledger_id: `l-${t}-${i}`, tenant_id: t, scope, unit: 'TOKENS', allocated: '1', remaining: '1',
        reserved: '0', spent: '0', debt: '0', overdraft_limit: '0', is_over_limit: '0', status: 'ACTIVE', created_at_ms: '1', updated_at_ms: '1' });
      p.zadd(keys.budgetIndex(t), 0, `${scope}|TOKENS`);
    }
    await p.exec();
    const lim = await admin('POST', url, { filter: { tenant_id: t }, action: 'CREDIT', amount: amt(1), idempotency_key: uniq('k') });
    expect([lim.status, lim.body.error, lim.body.details.total_matched]).toEqual([400, 'LIMIT_EXCEEDED', 501]);
    const cnt = await admin('POST', url, { filter: { tenant_id: t, scope_prefix: `tenant:${t}/app:a1` }, action: 'CREDIT', amount: amt(1), expected_count: 5, idempotency_key: uniq('k') });
    expect([cnt.status, cnt.body.error]).toEqual([409, 'COUNT_MISMATCH']);
    expect(await s.redis.client.xlen(keys.outbox(t))).toBe(0);
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:a1`, 'TOKENS')).allocated).toBe('1');
    const body = { filter: { tenant_id: t, scope_prefix: `tenant:${t}/app:a7` }, action: 'CREDIT', amount: amt(2), idempotency_key: uniq('k') };
    const r1 = await admin('POST', url, body);
    expect(r1.body.succeeded).toHaveLength(11); // a7, a70..a79
    const r2 = await admin('POST', url, body);
    expect(r2.body).toEqual(r1.body);
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:a7`, 'TOKENS')).allocated).toBe('3');
    const r3 = await admin('POST', url, { ...body, amount: amt(3) });
    expect([r3.status, r3.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('exact int64: RESET to 2^63-1 and 2^53+1; a CREDIT that would overflow fails its row and changes nothing', async () => {
    const t = uniq('bi64');
    await seedTenants([t]);
    await putBudget(s.redis.client, t, `tenant:${t}/app:max`, 'TOKENS', { allocated: 0 });
    const max = 2n ** 63n - 1n;
    const r = await admin('POST', url, { filter: { tenant_id: t }, action: 'RESET', amount: amt(max), idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:max`, 'TOKENS')).allocated).toBe(max.toString());
    const over = await admin('POST', url, { filter: { tenant_id: t }, action: 'CREDIT', amount: amt(1), idempotency_key: uniq('k') });
    expect(over.status).toBe(200);
    expect(over.body.failed).toHaveLength(1);
    expect(over.body.failed[0].error_code).toBe('INVALID_TRANSITION');
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:max`, 'TOKENS')).allocated).toBe(max.toString());
    const big = 2n ** 53n + 1n;
    const r2 = await admin('POST', url, { filter: { tenant_id: t }, action: 'RESET', amount: amt(big), idempotency_key: uniq('k') });
    expect(r2.status).toBe(200);
    expect((await getBudget(s.redis.client, t, `tenant:${t}/app:max`, 'TOKENS')).allocated).toBe(big.toString());
  });
});
