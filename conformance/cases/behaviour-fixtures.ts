// Small black-box helpers shared by the behavioural case files (hierarchy, lifecycle, lists,
// isolation): a fresh tenant with budgets and tenant fields, reserve / commit / release /
// extend calls, and a balance row with the ledger identity checked. Everything goes through
// the admin and runtime APIs and the harness's response checks.
import type { HttpResponse } from '../client';
import type { BudgetSpec, Case, CaseContext, TenantFixture } from '../harness';
import { big, U } from './governance-fixtures';

export { big, U };
export const amount = (n: bigint | number, unit = U) => ({ unit, amount: n });

export interface Meta { level: 'MUST' | 'SHOULD' | 'MAY'; requirements: string[]; tags?: string[] }

/** A runtime-plane case with its catalogue tags. */
export function caseOf(prefix: string, id: string, title: string, meta: Meta, run: (ctx: CaseContext) => Promise<void>): Case {
  return { id: `${prefix}.${id}`, title, plane: 'runtime', skipOn501: true, ...meta, run };
}

/** A fresh tenant (tenant fields passed to createTenant) with budgets scoped under its id. */
export async function tenantWith(ctx: CaseContext, budgets: (t: string) => BudgetSpec[], tenantFields: Record<string, unknown> = {}): Promise<TenantFixture & { root: string }> {
  const f = await ctx.fixtures.newTenant(ctx, [], tenantFields);
  for (const b of budgets(f.tenantId)) await ctx.fixtures.budget(ctx, f.tenantId, b);
  return { ...f, root: `tenant:${f.tenantId}` };
}

export function reserveBody(ctx: CaseContext, subject: Record<string, unknown>, est: bigint | number, extra: Record<string, unknown> = {}) {
  return { idempotency_key: ctx.uid('idem'), subject, action: { kind: 'llm.completion', name: 'conformance' }, estimate: amount(est), ...extra };
}

export function reserve(ctx: CaseContext, f: TenantFixture, est: bigint | number, extra: Record<string, unknown> = {}, subject: Record<string, unknown> = {}): Promise<HttpResponse> {
  return ctx.callOp('runtime', 'createReservation', { key: f.key, body: reserveBody(ctx, { tenant: f.tenantId, ...subject }, est, extra) });
}

export async function reserveOk(ctx: CaseContext, f: TenantFixture, est: bigint | number, extra: Record<string, unknown> = {}, subject: Record<string, unknown> = {}): Promise<any> {
  const r = await reserve(ctx, f, est, extra, subject);
  ctx.require(r, 200);
  if (typeof r.body?.reservation_id !== 'string') ctx.fail(`reserve returned no reservation_id: ${r.text.slice(0, 200)}`);
  return r.body;
}

type Auth = { key: string } | { admin: true };
const auth = (a: TenantFixture | Auth): Auth => ('admin' in a ? { admin: true } : { key: a.key });

export function commit(ctx: CaseContext, a: TenantFixture | Auth, id: string, actual: bigint | number, idem = ctx.uid('idem')): Promise<HttpResponse> {
  return ctx.callOp('runtime', 'commitReservation', { ...auth(a), params: { reservation_id: id }, body: { idempotency_key: idem, actual: amount(actual) } });
}

export function release(ctx: CaseContext, a: TenantFixture | Auth, id: string, idem = ctx.uid('idem')): Promise<HttpResponse> {
  return ctx.callOp('runtime', 'releaseReservation', { ...auth(a), params: { reservation_id: id }, body: { idempotency_key: idem } });
}

export function extend(ctx: CaseContext, a: TenantFixture | Auth, id: string, by: number, idem = ctx.uid('idem')): Promise<HttpResponse> {
  return ctx.callOp('runtime', 'extendReservation', { ...auth(a), params: { reservation_id: id }, body: { idempotency_key: idem, extend_by_ms: by } });
}

export interface Bal { remaining: bigint; allocated?: bigint; spent: bigint; reserved: bigint; debt: bigint; overLimit: boolean }

/** The Balance row of a scope (runtime getBalances), ledger identity checked. */
export async function balanceOf(ctx: CaseContext, f: TenantFixture, scope: string): Promise<Bal> {
  const r = await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId, limit: 200 } });
  ctx.require(r, 200);
  const row = (r.body.balances as any[]).find((b) => b.scope === scope && b.remaining?.unit === U);
  if (!row) ctx.fail(`no Balance for ${scope} in ${r.text.slice(0, 300)}`);
  const v: Bal = {
    remaining: big(row.remaining.amount)!, allocated: big(row.allocated?.amount), spent: big(row.spent?.amount) ?? 0n,
    reserved: big(row.reserved?.amount) ?? 0n, debt: big(row.debt?.amount) ?? 0n, overLimit: row.is_over_limit === true,
  };
  if (v.allocated !== undefined) {
    const want = v.allocated - v.spent - v.reserved - v.debt;
    ctx.check(v.remaining === want, `ledger identity broken for ${scope}: remaining ${v.remaining} != ${want}`);
  }
  return v;
}

/** Every Balance row of the tenant as "scope" → amounts (a comparable snapshot). */
export async function ledgerSnapshot(ctx: CaseContext, f: TenantFixture): Promise<string> {
  const r = await ctx.callOp('runtime', 'getBalances', { key: f.key, query: { tenant: f.tenantId, limit: 200 } });
  ctx.require(r, 200);
  return JSON.stringify((r.body.balances as any[]).map((b) => [b.scope, b.remaining?.amount, b.reserved?.amount, b.spent?.amount, b.debt?.amount]).sort());
}
