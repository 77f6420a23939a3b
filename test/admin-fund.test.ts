// fundBudget: the five formulas with exact numbers, events, idempotency, status and
// tenancy errors, int64 boundaries, and the ledger invariant under concurrency.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { keys } from '../src/store/keys';
import { getBudget } from './helpers/fixtures';
import { ledgerHolds } from '../src/ledger/model';
import { uid } from './helpers/reservations';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); }, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const T = (n: number | bigint) => ({ unit: 'TOKENS', amount: n });
let seq = 0;

/** A fresh tenant + budget with the given state (spent/reserved/debt set directly, as the
 *  runtime would leave them), remaining derived from the invariant. */
async function budget(state: { allocated: bigint; spent?: bigint; reserved?: bigint; debt?: bigint; overdraft?: bigint }) {
  const t = `fd-${++seq}`;
  await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t });
  const scope = `tenant:${t}`;
  const r = await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope, unit: 'TOKENS', allocated: T(state.allocated), overdraft_limit: T(state.overdraft ?? 0n) });
  expect(r.status).toBe(201);
  const spent = state.spent ?? 0n, reserved = state.reserved ?? 0n, debt = state.debt ?? 0n;
  await s.redis.client.hset(keys.budget(t, scope, 'TOKENS'), {
    spent: String(spent), reserved: String(reserved), debt: String(debt),
    remaining: String(state.allocated - spent - reserved - debt),
    is_over_limit: debt > (state.overdraft ?? 0n) ? '1' : '0',
  });
  return { t, scope, path: `/v1/admin/budgets/fund?tenant_id=${t}&scope=${encodeURIComponent(scope)}&unit=TOKENS` };
}
const fund = (path: string, body: Record<string, unknown>) => admin('POST', path, body);
const stored = (b: { t: string; scope: string }) => getBudget(s.redis.client, b.t, b.scope, 'TOKENS');
const big = (x: any) => BigInt(x.amount);

// The operation's own event: derived signals of the same change (threshold crossings,
// over-limit transitions; test/signals-budget.test.ts) follow it in the outbox.
const DERIVED = new Set(['budget.threshold_crossed', 'budget.over_limit_entered', 'budget.over_limit_exited']);
async function lastEvent(t: string) {
  const e = (await s.redis.client.xrevrange(keys.outbox(t), '+', '-', 'COUNT', 10))
    .filter(([, x]) => !DERIVED.has(x[x.indexOf('type') + 1]));
  const f = e[0][1];
  return { type: f[f.indexOf('type') + 1], data: JSON.parse(f[f.indexOf('data') + 1]) };
}

describe('fund formulas', () => {
  it('CREDIT: allocated += a, remaining += a', async () => {
    const b = await budget({ allocated: 1000n, spent: 200n, reserved: 100n, debt: 50n });
    const r = await fund(b.path, { operation: 'CREDIT', amount: T(500) });
    expect(r.status).toBe(200);
    expect([big(r.body.previous_allocated), big(r.body.new_allocated), big(r.body.previous_remaining), big(r.body.new_remaining)]).toEqual([1000n, 1500n, 650n, 1150n]);
    expect(await stored(b)).toMatchObject({ allocated: '1500', remaining: '1150', spent: '200', reserved: '100', debt: '50' });
    expect((await lastEvent(b.t)).type).toBe('budget.funded');
  });

  it('DEBIT: allocated -= a, remaining -= a; more than remaining → 409 BUDGET_EXCEEDED, nothing changes', async () => {
    const b = await budget({ allocated: 1000n, spent: 200n, reserved: 100n });
    const r = await fund(b.path, { operation: 'DEBIT', amount: T(700) });
    expect([big(r.body.new_allocated), big(r.body.new_remaining)]).toEqual([300n, 0n]);
    expect((await lastEvent(b.t)).type).toBe('budget.debited');
    const x = await fund(b.path, { operation: 'DEBIT', amount: T(1) });
    expect(x.status).toBe(409);
    expect(x.body.error).toBe('BUDGET_EXCEEDED');
    expect(await stored(b)).toMatchObject({ allocated: '300', remaining: '0' });
  });

  it('RESET: allocated = a, remaining = a - reserved - spent - debt (may go negative)', async () => {
    const b = await budget({ allocated: 1000n, spent: 400n, reserved: 100n, debt: 50n });
    const r = await fund(b.path, { operation: 'RESET', amount: T(300) });
    expect([big(r.body.new_allocated), big(r.body.new_remaining), big(r.body.new_spent), big(r.body.new_debt)]).toEqual([300n, -250n, 400n, 50n]);
    expect(await stored(b)).toMatchObject({ allocated: '300', remaining: '-250', spent: '400', reserved: '100', debt: '50' });
    expect((await lastEvent(b.t)).type).toBe('budget.reset');
  });

  it('RESET_SPENT: allocated = a, spent = s or 0, remaining = a - s - reserved - debt; event flag', async () => {
    const b = await budget({ allocated: 1000n, spent: 900n, reserved: 100n, debt: 20n });
    const r = await fund(b.path, { operation: 'RESET_SPENT', amount: T(2000) });
    expect([big(r.body.previous_spent), big(r.body.new_spent), big(r.body.new_allocated), big(r.body.new_remaining)]).toEqual([900n, 0n, 2000n, 1880n]);
    let ev = await lastEvent(b.t);
    expect(ev.type).toBe('budget.reset_spent');
    expect(ev.data.spent_override_provided).toBe(false);
    const r2 = await fund(b.path, { operation: 'RESET_SPENT', amount: T(100), spent: T(150) });
    expect([big(r2.body.new_spent), big(r2.body.new_remaining)]).toEqual([150n, -170n]);
    ev = await lastEvent(b.t);
    expect(ev.data.spent_override_provided).toBe(true);
    expect(ev.data.previous_state).toMatchObject({ spent: '0', reserved: '100' });
    const neg = await fund(b.path, { operation: 'RESET_SPENT', amount: T(100), spent: T(-1) });
    expect(neg.status).toBe(400);
    expect(await stored(b)).toMatchObject({ reserved: '100', debt: '20', spent: '150' });
  });

  it('REPAY_DEBT: debt -= min(debt, a), remaining += a, excess credited to allocated; is_over_limit recomputed', async () => {
    const b = await budget({ allocated: 1000n, spent: 1000n, debt: 300n, overdraft: 100n });
    expect((await stored(b)).is_over_limit).toBe('1');
    const r = await fund(b.path, { operation: 'REPAY_DEBT', amount: T(250) });
    expect([big(r.body.previous_debt), big(r.body.new_debt), big(r.body.previous_remaining), big(r.body.new_remaining), big(r.body.new_allocated)]).toEqual([300n, 50n, -300n, -50n, 1000n]);
    expect((await stored(b)).is_over_limit).toBe('0');
    expect((await lastEvent(b.t)).type).toBe('budget.debt_repaid');
    const r2 = await fund(b.path, { operation: 'REPAY_DEBT', amount: T(80) });
    expect([big(r2.body.new_debt), big(r2.body.new_remaining), big(r2.body.new_allocated)]).toEqual([0n, 30n, 1030n]);
    expect(ledgerHolds(await stored(b))).toBe(true);
  });
});

describe('fund errors', () => {
  it('400 without tenant_id under the admin key; 400 UNIT_MISMATCH; 404 BUDGET_NOT_FOUND', async () => {
    const b = await budget({ allocated: 10n });
    const noT = await admin('POST', `/v1/admin/budgets/fund?scope=${encodeURIComponent(b.scope)}&unit=TOKENS`, { operation: 'CREDIT', amount: T(1) });
    expect(noT.status).toBe(400);
    expect(noT.body.error).toBe('INVALID_REQUEST');
    const mm = await fund(b.path, { operation: 'CREDIT', amount: { unit: 'CREDITS', amount: 1 } });
    expect(mm.status).toBe(400);
    expect(mm.body.error).toBe('UNIT_MISMATCH');
    const nf = await fund(b.path.replace('unit=TOKENS', 'unit=CREDITS'), { operation: 'CREDIT', amount: { unit: 'CREDITS', amount: 1 } });
    expect(nf.status).toBe(404);
    expect(nf.body.error).toBe('BUDGET_NOT_FOUND');
    const wrongTenant = await admin('POST', b.path.replace(`tenant_id=${b.t}`, 'tenant_id=someone-else'), { operation: 'CREDIT', amount: T(1) });
    expect(wrongTenant.status).toBe(404);
  });

  it('409 BUDGET_FROZEN, BUDGET_CLOSED, TENANT_CLOSED; nothing changes', async () => {
    const b = await budget({ allocated: 10n });
    await admin('POST', `/v1/admin/budgets/freeze?scope=${encodeURIComponent(b.scope)}&unit=TOKENS`);
    const fr = await fund(b.path, { operation: 'CREDIT', amount: T(1) });
    expect([fr.status, fr.body.error]).toEqual([409, 'BUDGET_FROZEN']);
    await s.redis.client.hset(keys.budget(b.t, b.scope, 'TOKENS'), 'status', 'CLOSED');
    const cl = await fund(b.path, { operation: 'CREDIT', amount: T(1) });
    expect([cl.status, cl.body.error]).toEqual([409, 'BUDGET_CLOSED']);
    await s.redis.client.hset(keys.tenant(b.t), 'status', 'CLOSED');
    const tc = await fund(b.path, { operation: 'CREDIT', amount: T(1) });
    expect([tc.status, tc.body.error]).toEqual([409, 'TENANT_CLOSED']);
    expect((await stored(b)).allocated).toBe('10');
  });

  it('a tenant key never funds another tenant (403), and its tenant_id param is ignored', async () => {
    const b = await budget({ allocated: 10n });
    const other = await budget({ allocated: 10n });
    const key = await s.tenantKey(other.t);
    const r = await call(s.adminUrl, 'POST', b.path, { key, body: { operation: 'CREDIT', amount: T(5) } });
    expect(r.status).toBe(403);
    expect((await stored(b)).allocated).toBe('10');
    const own = await call(s.adminUrl, 'POST', other.path.replace(`tenant_id=${other.t}`, `tenant_id=${b.t}`), { key, body: { operation: 'CREDIT', amount: T(5) } });
    expect(own.status).toBe(200);
    expect((await stored(other)).allocated).toBe('15');
  });
});

describe('fund idempotency', () => {
  it('replay → the original response, one mutation; different payload → 409 IDEMPOTENCY_MISMATCH; keys are per scope', async () => {
    const b = await budget({ allocated: 100n });
    const body = { operation: 'CREDIT', amount: T(7), idempotency_key: 'k-1', reason: 'top up' };
    const a = await fund(b.path, body);
    const again = await fund(b.path, body);
    expect(again.status).toBe(200);
    expect(again.text).toBe(a.text);
    expect((await stored(b)).allocated).toBe('107');
    const diff = await fund(b.path, { ...body, amount: T(8) });
    expect([diff.status, diff.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
    const other = await budget({ allocated: 100n });
    const same = await fund(other.path, body);
    expect(same.status).toBe(200);
    expect((await stored(other)).allocated).toBe('107');
    const evs = await s.redis.client.xrange(keys.outbox(b.t), '-', '+');
    expect(evs.filter(([, f]) => f[f.indexOf('type') + 1] === 'budget.funded')).toHaveLength(1);
  });
});

describe('fund int64', () => {
  it('2^53+1 amounts are exact; a result beyond 2^63-1 is refused with 400 and nothing changes', async () => {
    const b = await budget({ allocated: 2n ** 53n });
    const r = await fund(b.path, { operation: 'CREDIT', amount: T(2n ** 53n + 1n) });
    expect(r.status).toBe(200);
    expect(big(r.body.new_allocated)).toBe(2n ** 54n + 1n);
    const max = await budget({ allocated: 2n ** 63n - 2n });
    const ok = await fund(max.path, { operation: 'CREDIT', amount: T(1) });
    expect(big(ok.body.new_allocated)).toBe(2n ** 63n - 1n);
    const over = await fund(max.path, { operation: 'CREDIT', amount: T(1) });
    expect(over.status).toBe(400);
    expect((await stored(max)).allocated).toBe(String(2n ** 63n - 1n));
    const neg = await budget({ allocated: 0n, spent: 2n ** 62n, debt: 2n ** 62n });
    const reset = await fund(neg.path, { operation: 'RESET', amount: T(0) });
    expect(big(reset.body.new_remaining)).toBe(-(2n ** 63n));
    const tooLow = await budget({ allocated: 0n, spent: 2n ** 62n, debt: 2n ** 62n, reserved: 1n });
    const r2 = await fund(tooLow.path, { operation: 'RESET', amount: T(0) });
    expect(r2.status).toBe(400);
  });
});

describe('concurrency', () => {
  it('200 concurrent CREDIT/DEBIT/REPAY_DEBT on one scope keep the invariant and the exact totals', async () => {
    const b = await budget({ allocated: 10_000n, spent: 1000n, debt: 500n });
    const ops = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? { operation: 'CREDIT', amount: T(10) }
      : i % 3 === 1 ? { operation: 'DEBIT', amount: T(3) } : { operation: 'REPAY_DEBT', amount: T(1) }));
    const rs = await Promise.all(ops.map((o) => fund(b.path, o)));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    const h = await stored(b);
    expect(ledgerHolds(h)).toBe(true);
    const credits = 67n * 10n, debits = 67n * 3n, repays = 66n;
    expect(h.allocated).toBe(String(10_000n + credits - debits));
    expect(h.debt).toBe(String(500n - repays));
  });

  it('concurrent funds and live reservations on one scope keep the invariant; reserved equals the sum of accepted holds', async () => {
    const b = await budget({ allocated: 5_000n });
    const key = await s.tenantKey(b.t);
    const reserveBody = () => ({ idempotency_key: uid('rv'), subject: { tenant: b.t }, action: { kind: 'llm.completion', name: 't' }, estimate: T(40) });
    const tasks: Promise<{ kind: string; status: number; body: any }>[] = [];
    for (let i = 0; i < 120; i++) {
      if (i % 2 === 0) tasks.push(call(s.runtimeUrl, 'POST', '/v1/reservations', { key, body: reserveBody() }).then((r) => ({ kind: 'r', ...r })));
      else tasks.push(fund(b.path, i % 4 === 1 ? { operation: 'CREDIT', amount: T(25) } : { operation: 'DEBIT', amount: T(30) }).then((r) => ({ kind: 'f', ...r })));
    }
    const rs = await Promise.all(tasks);
    const reserved = rs.filter((r) => r.kind === 'r' && r.status === 200 && r.body.decision !== 'DENY').length;
    expect(rs.filter((r) => r.kind === 'r').every((r) => r.status === 200 || r.status === 409)).toBe(true);
    expect(rs.filter((r) => r.kind === 'f').every((r) => r.status === 200 || (r.status === 409 && r.body.error === 'BUDGET_EXCEEDED'))).toBe(true);
    const h = await stored(b);
    expect(ledgerHolds(h)).toBe(true);
    expect(h.reserved).toBe(String(BigInt(reserved) * 40n));
    expect(BigInt(h.remaining) >= 0n).toBe(true);
  });
});
