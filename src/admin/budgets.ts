// Budget ledgers on the admin plane: create, read, list, update, freeze/unfreeze, fund.
// Every write is one Lua script (src/store/lua/budget_*.lua, fund.lua) on the hash
// layout of src/ledger/model.ts — the same hashes the runtime reserves against.
import { randomUUID, createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { keys } from '../store/keys';
import { amount, renderBalance } from '../ledger/model';
import { toBig } from '../json';
import { paginate, parseLimit } from '../list/cursor';
import type { Principal } from '../auth/authenticate';
import { canonicalJson, compact, hgetallMany, iso, runAdminScript, searchTerm, LIST_SCAN_MAX, type EventCtx } from './common';
import { parseBudgetScope, requireScopeAllowed, scopeFilterAllows } from './scope';

/** Fund idempotency records live this long (a replay inside the window returns the
 *  original response; docs/decisions.md). */
export const FUND_IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/** Budget hash → the admin spec's BudgetLedger (tenant_id always set). */
export function renderLedger(h: Record<string, string>): Record<string, unknown> {
  // The ledger amounts are exactly the runtime Balance's (one data model).
  return compact({
    ledger_id: h.ledger_id,
    tenant_id: h.tenant_id,
    unit: h.unit,
    ...renderBalance(h),
    commit_overage_policy: h.commit_overage_policy || undefined,
    status: h.status || 'ACTIVE',
    rollover_policy: h.rollover_policy || undefined,
    period_start: h.period_start || undefined,
    period_end: h.period_end || undefined,
    created_at: iso(h.created_at_ms) ?? new Date(0).toISOString(),
    updated_at: iso(h.updated_at_ms),
  });
}

/** The tenant a request acts for: the key's tenant, or (admin) the explicit one. */
export function routingTenant(p: Principal, explicit: string | undefined, where: string): string {
  if (p.kind === 'tenant') return p.tenantId;
  if (!explicit) throw new ApiError('INVALID_REQUEST', `${where} tenant_id is required with the admin key`);
  return explicit;
}

function scopeFilterOf(p: Principal): readonly string[] {
  return p.kind === 'tenant' ? p.scopeFilter : [];
}

/** Amount in the ledger's unit, else 400 UNIT_MISMATCH. */
function inUnit(a: { unit: string; amount: unknown } | undefined, unit: string, field: string): string | undefined {
  if (a === undefined) return undefined;
  if (a.unit !== unit) throw new ApiError('UNIT_MISMATCH', `${field}.unit ${a.unit} does not match the budget unit ${unit}`);
  const v = toBig(a.amount);
  if (v < 0n) throw new ApiError('INVALID_REQUEST', `${field}.amount must be >= 0`);
  return v.toString();
}

function isoOrThrow(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new ApiError('INVALID_REQUEST', `${field} is not a valid date-time`);
  return new Date(t).toISOString();
}

export async function createBudget(redis: Redis, p: Principal, body: Record<string, any>, ev: EventCtx) {
  if (p.kind === 'tenant' && body.tenant_id !== undefined) {
    throw new ApiError('INVALID_REQUEST', 'tenant_id must not be sent with a tenant API key (the key decides the tenant)');
  }
  const tenant = routingTenant(p, body.tenant_id, 'body');
  const parsed = parseBudgetScope(body.scope);
  if (parsed.tenant !== tenant) {
    throw new ApiError('INVALID_REQUEST', `scope must be rooted at tenant:${tenant} (got tenant:${parsed.tenant})`);
  }
  requireScopeAllowed(scopeFilterOf(p), parsed.scope);
  const unit = body.unit as string;
  const fields: Record<string, string> = {
    ledger_id: randomUUID(),
    tenant_id: tenant,
    scope: parsed.scope,
    unit,
    allocated: inUnit(body.allocated, unit, 'allocated')!,
    overdraft_limit: inUnit(body.overdraft_limit, unit, 'overdraft_limit') ?? '0',
    rollover_policy: body.rollover_policy ?? 'NONE',
  };
  if (body.commit_overage_policy) fields.commit_overage_policy = body.commit_overage_policy;
  const ps = isoOrThrow(body.period_start, 'period_start');
  const pe = isoOrThrow(body.period_end, 'period_end');
  if (ps && pe && Date.parse(pe) < Date.parse(ps)) throw new ApiError('INVALID_REQUEST', 'period_end is before period_start');
  if (ps) fields.period_start = ps;
  if (pe) fields.period_end = pe;
  if (body.metadata !== undefined) fields.metadata = canonicalJson(body.metadata);
  const res = await runAdminScript(redis, 'budget_create',
    [keys.budget(tenant, parsed.scope, unit), keys.budgetIndex(tenant), keys.tenant(tenant), keys.outbox(tenant)],
    [JSON.stringify(fields), `${parsed.scope}|${unit}`, JSON.stringify(ev)],
    {
      // The spec lists "tenant not found" under createBudget's 400 (docs/decisions.md).
      TENANT_NOT_FOUND: new ApiError('INVALID_REQUEST', `Tenant ${tenant} does not exist`, { reason: 'TENANT_NOT_FOUND' }),
    });
  return res.budget as Record<string, string>;
}

/** Resolves (scope, unit) to its tenant and key; checks tenancy and scope_filter. */
function target(p: Principal, rawScope: string, unit: string, explicitTenant?: string) {
  const parsed = parseBudgetScope(rawScope);
  if (p.kind === 'tenant') {
    // A tenant key never reaches another tenant's ledger (403, as fund's spec text says).
    if (parsed.tenant !== p.tenantId) throw new ApiError('FORBIDDEN', 'The scope belongs to another tenant');
    requireScopeAllowed(p.scopeFilter, parsed.scope);
  } else if (explicitTenant !== undefined && explicitTenant !== parsed.tenant) {
    throw new ApiError('BUDGET_NOT_FOUND', `No budget for ${parsed.scope} in tenant ${explicitTenant}`);
  }
  return { tenant: parsed.tenant, scope: parsed.scope, key: keys.budget(parsed.tenant, parsed.scope, unit) };
}

export async function lookupBudget(redis: Redis, p: Principal, scope: string, unit: string) {
  const t = target(p, scope, unit);
  const h = await redis.hgetall(t.key);
  if (!h || !h.ledger_id) throw new ApiError('BUDGET_NOT_FOUND', `No budget for (${t.scope}, ${unit})`);
  return h;
}

export async function changeBudget(
  redis: Redis, p: Principal, scope: string, unit: string, mode: 'update' | 'freeze' | 'unfreeze',
  body: Record<string, any> | undefined, ev: EventCtx,
) {
  const t = target(p, scope, unit);
  const patch: Record<string, string> = {};
  if (mode === 'update' && body) {
    const od = inUnit(body.overdraft_limit, unit, 'overdraft_limit');
    if (od !== undefined) patch.overdraft_limit = od;
    if (body.commit_overage_policy !== undefined) patch.commit_overage_policy = body.commit_overage_policy;
    if (body.metadata !== undefined) patch.metadata = canonicalJson(body.metadata);
  }
  const res = await runAdminScript(redis, 'budget_update', [t.key, keys.tenant(t.tenant), keys.outbox(t.tenant)],
    [mode, JSON.stringify(patch), JSON.stringify(ev), body?.reason ?? '']);
  return res.budget as Record<string, string>;
}

export async function fundBudget(
  redis: Redis, p: Principal, q: { scope: string; unit: string; tenant_id?: string }, body: Record<string, any>, ev: EventCtx,
) {
  if (p.kind === 'admin' && !q.tenant_id) {
    throw new ApiError('INVALID_REQUEST', 'tenant_id query parameter is required with the admin key');
  }
  const t = target(p, q.scope, q.unit, p.kind === 'admin' ? q.tenant_id : undefined);
  const amt = inUnit(body.amount, q.unit, 'amount')!;
  // `spent` is honoured only for RESET_SPENT and ignored otherwise (spec); negative → 400.
  const spent = body.operation === 'RESET_SPENT' ? inUnit(body.spent, q.unit, 'spent') : undefined;
  if (body.operation !== 'RESET_SPENT' && body.spent !== undefined && toBig(body.spent.amount) < 0n) {
    throw new ApiError('INVALID_REQUEST', 'spent.amount must be >= 0');
  }
  const idemKey: string | undefined = body.idempotency_key;
  const phash = idemKey === undefined ? '' : createHash('sha256')
    .update(canonicalJson({ scope: t.scope, unit: q.unit, body })).digest('hex');
  const ctxJson = JSON.stringify(ev);
  const raw = await runAdminScript(redis, 'fund',
    [t.key, keys.tenant(t.tenant), keys.outbox(t.tenant), keys.idem(t.tenant, 'fund', `${t.scope}|${q.unit}|${idemKey ?? ''}`)],
    [body.operation, amt, spent ?? '', phash, ctxJson, body.reason ?? '', FUND_IDEMPOTENCY_TTL_MS]);
  return renderFunding(raw);
}

export function renderFunding(r: Record<string, any>): Record<string, unknown> {
  const u = r.unit as string;
  return {
    operation: r.operation,
    previous_allocated: amount(u, r.previous_allocated),
    new_allocated: amount(u, r.new_allocated),
    previous_remaining: amount(u, r.previous_remaining),
    new_remaining: amount(u, r.new_remaining),
    previous_debt: amount(u, r.previous_debt),
    new_debt: amount(u, r.new_debt),
    previous_spent: amount(u, r.previous_spent),
    new_spent: amount(u, r.new_spent),
    timestamp: iso(r.timestamp_ms),
  };
}

/** Every budget hash of a tenant, in index order (scope|unit, lex). */
export async function tenantBudgets(redis: Redis, tenant: string): Promise<Record<string, string>[]> {
  const members = await redis.zrange(keys.budgetIndex(tenant), 0, LIST_SCAN_MAX - 1);
  return hgetallMany(redis, members.map((m) => {
    const i = m.lastIndexOf('|');
    return keys.budget(tenant, m.slice(0, i), m.slice(i + 1));
  }));
}

/** spent / allocated as a double (allocated 0 ⇒ 0), for filters and the sort key. */
export function utilization(h: Record<string, string>): number {
  const a = BigInt(h.allocated ?? '0');
  if (a <= 0n) return 0;
  // Scale in integers first so the ratio keeps 1e-12 resolution for any int64 pair.
  return Number((BigInt(h.spent ?? '0') * 1_000_000_000_000n) / a) / 1e12;
}

const BUDGET_SORTS: Record<string, (h: Record<string, string>) => string | bigint> = {
  tenant_id: (h) => h.tenant_id ?? '',
  scope: (h) => h.scope,
  unit: (h) => h.unit,
  status: (h) => h.status ?? 'ACTIVE',
  commit_overage_policy: (h) => h.commit_overage_policy ?? '',
  utilization: (h) => BigInt(Math.round(utilization(h) * 1e12)),
  debt: (h) => BigInt(h.debt ?? '0'),
};

const ledgerId = (h: Record<string, string>) => `${h.tenant_id}\u0000${h.scope}\u0000${h.unit}`;

export async function listBudgets(redis: Redis, p: Principal, q: Record<string, any>) {
  const search = searchTerm(q.search);
  const umin = q.utilization_min === undefined ? undefined : Number(q.utilization_min);
  const umax = q.utilization_max === undefined ? undefined : Number(q.utilization_max);
  for (const [n, v] of [['utilization_min', umin], ['utilization_max', umax]] as const) {
    if (v !== undefined && (!Number.isFinite(v) || v < 0 || v > 1)) throw new ApiError('INVALID_REQUEST', `${n} must be a number in [0, 1]`);
  }
  if (umin !== undefined && umax !== undefined && umin > umax) {
    throw new ApiError('INVALID_REQUEST', 'utilization_min must not exceed utilization_max');
  }
  const sortBy = String(q.sort_by ?? 'utilization');
  if (!BUDGET_SORTS[sortBy]) throw new ApiError('INVALID_REQUEST', `sort_by ${sortBy} is not supported`);
  const filter = scopeFilterOf(p);
  const prefix = q.scope_prefix ? String(q.scope_prefix).toLowerCase() : undefined;
  if (prefix && filter.length > 0) requireScopeAllowed(filter, prefix);
  const tenants = p.kind === 'tenant' ? [p.tenantId] : q.tenant_id ? [String(q.tenant_id)] : (await redis.smembers(keys.tenants())).sort();
  const rows: Record<string, string>[] = [];
  for (const t of tenants) {
    rows.push(...await tenantBudgets(redis, t));
    if (rows.length > LIST_SCAN_MAX) throw new ApiError('INVALID_REQUEST', `More than ${LIST_SCAN_MAX} budgets match; narrow the query with tenant_id`);
  }
  const bool = (v: unknown) => (v === undefined ? undefined : v === true || v === 'true');
  const overLimit = bool(q.over_limit);
  const hasDebt = bool(q.has_debt);
  const matches = rows.filter((h) => {
    if (prefix && !h.scope.startsWith(prefix)) return false;
    if (q.unit && h.unit !== q.unit) return false;
    if (q.status && (h.status || 'ACTIVE') !== q.status) return false;
    if (overLimit !== undefined && (h.is_over_limit === '1') !== overLimit) return false;
    if (hasDebt !== undefined && (BigInt(h.debt ?? '0') > 0n) !== hasDebt) return false;
    const u = utilization(h);
    if (umin !== undefined && u < umin) return false;
    if (umax !== undefined && u > umax) return false;
    if (search && !(h.tenant_id ?? '').toLowerCase().includes(search) && !h.scope.includes(search)) return false;
    return scopeFilterAllows(filter, h.scope);
  });
  const page = paginate(matches, {
    sort: { name: sortBy, value: BUDGET_SORTS[sortBy] },
    dir: q.sort_dir ?? 'desc',
    id: ledgerId,
    limit: parseLimit(q.limit),
    filters: {
      tenant_id: p.kind === 'tenant' ? p.tenantId : q.tenant_id, scope_prefix: prefix, unit: q.unit, status: q.status,
      over_limit: overLimit, has_debt: hasDebt, utilization_min: umin, utilization_max: umax, search,
    },
    cursor: q.cursor,
  });
  return compact({ ledgers: page.rows.map(renderLedger), has_more: page.hasMore, next_cursor: page.nextCursor });
}

/** Admin-plane GET /v1/balances: the key's tenant only, scope_prefix/unit filters. */
export async function adminBalances(redis: Redis, p: Principal, q: Record<string, any>) {
  if (p.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'This operation requires a tenant API key');
  const prefix = q.scope_prefix ? String(q.scope_prefix).toLowerCase() : undefined;
  if (prefix && p.scopeFilter.length > 0) requireScopeAllowed(p.scopeFilter, prefix);
  const limit = Number(q.limit ?? 50);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new ApiError('INVALID_REQUEST', 'limit must be between 1 and 100');
  const rows = (await tenantBudgets(redis, p.tenantId)).filter((h) =>
    (!prefix || h.scope.startsWith(prefix)) && (!q.unit || h.unit === q.unit) && scopeFilterAllows(p.scopeFilter, h.scope));
  const page = paginate(rows, {
    sort: { name: 'scope', value: (h) => `${h.scope}\u0000${h.unit}` },
    dir: 'asc',
    id: ledgerId,
    limit,
    filters: { tenant: p.tenantId, scope_prefix: prefix, unit: q.unit },
    cursor: q.cursor,
  });
  return compact({ balances: page.rows.map(renderLedger), has_more: page.hasMore, next_cursor: page.nextCursor });
}
