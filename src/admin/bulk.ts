// Bulk actions over tenants and budgets (admin spec bulkActionTenants / bulkActionBudgets).
// Gate order (docs/decisions.md D-BULK): validate body → idempotency (replay / mismatch /
// claim) → count matches → > BULK_MAX_ROWS ⇒ 400 LIMIT_EXCEEDED → expected_count ⇒ 409
// COUNT_MISMATCH → apply row by row on live state with admin part 1's domain functions
// (updateTenant + close cascade, fundBudget) → classify succeeded / failed / skipped.
// Only a 200 envelope is remembered for the idempotency window; a refused request
// (4xx) releases its claim so the operator can fix the filter and retry with the key.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError, invalid } from '../errors';
import { keys } from '../store/keys';
import { toBig } from '../json';
import type { Principal } from '../auth/authenticate';
import { canonicalJson, hgetallMany, LIST_SCAN_MAX, searchTerm, type EventCtx } from './common';
import { updateTenant } from './tenants';
import { markClosePending, runCloseCascade } from './cascade';
import { fundBudget, tenantBudgets, utilization } from './budgets';

export const BULK_MAX_ROWS = 500;
export const BULK_IDEMPOTENCY_TTL_MS = 15 * 60 * 1000;

export interface RowOutcome { id: string; error_code?: string; message?: string; reason?: string }
export interface BulkEnvelope {
  action: string;
  total_matched: number;
  succeeded: RowOutcome[];
  failed: RowOutcome[];
  skipped: RowOutcome[];
  idempotency_key: string;
}

export type Endpoint = 'tenants' | 'budgets' | 'webhooks';

// ------------------------------------------------------------------ idempotency
const bodyHash = (body: unknown) => createHash('sha256').update(canonicalJson(body)).digest('hex');

/** Returns the stored envelope for a replay, or claims the key (undefined). */
async function claim(redis: Redis, endpoint: Endpoint, body: Record<string, any>): Promise<BulkEnvelope | undefined> {
  const k = keys.bulkIdem(endpoint, body.idempotency_key);
  const hash = bodyHash(body);
  const mine = JSON.stringify({ hash, state: 'pending' });
  const ok = await redis.set(k, mine, 'PX', BULK_IDEMPOTENCY_TTL_MS, 'NX');
  if (ok === 'OK') return undefined;
  const raw = await redis.get(k);
  if (raw === null) return claim(redis, endpoint, body); // expired in between: claim again
  const rec = JSON.parse(raw) as { hash: string; state: string; response?: BulkEnvelope };
  if (rec.hash !== hash) {
    throw new ApiError('IDEMPOTENCY_MISMATCH', 'idempotency_key was already used with a different request body');
  }
  if (rec.state !== 'done' || !rec.response) {
    throw new ApiError('INTERNAL_ERROR', 'A bulk action with this idempotency_key is still running; retry shortly', undefined, 500, { 'Retry-After': '1' });
  }
  return rec.response;
}

async function remember(redis: Redis, endpoint: Endpoint, body: Record<string, any>, env: BulkEnvelope): Promise<void> {
  await redis.set(keys.bulkIdem(endpoint, body.idempotency_key),
    JSON.stringify({ hash: bodyHash(body), state: 'done', response: env }), 'PX', BULK_IDEMPOTENCY_TTL_MS);
}

async function release(redis: Redis, endpoint: Endpoint, body: Record<string, any>): Promise<void> {
  await redis.del(keys.bulkIdem(endpoint, body.idempotency_key));
}

/** Runs the gated bulk flow; `match` returns the matched rows, `apply` mutates them.
 *  `noun` names the rows in the gate messages. Shared by every bulk action endpoint. */
export async function gated<T>(
  redis: Redis, endpoint: Endpoint, body: Record<string, any>,
  match: () => Promise<T[]>, apply: (rows: T[], env: BulkEnvelope) => Promise<void>, noun = 'rows',
): Promise<{ envelope: BulkEnvelope; replayed: boolean }> {
  const replay = await claim(redis, endpoint, body);
  if (replay) return { envelope: replay, replayed: true };
  let env: BulkEnvelope;
  try {
    const rows = await match();
    if (rows.length > BULK_MAX_ROWS) {
      throw new ApiError('LIMIT_EXCEEDED', `The filter matches ${rows.length} ${noun}; at most ${BULK_MAX_ROWS} per bulk action — narrow the filter`,
        { total_matched: rows.length, limit: BULK_MAX_ROWS }, 400);
    }
    if (body.expected_count !== undefined && Number(body.expected_count) !== rows.length) {
      throw new ApiError('COUNT_MISMATCH', `expected_count ${body.expected_count} does not match the ${rows.length} ${noun} the filter matches now; nothing was changed`,
        { expected_count: Number(body.expected_count), total_matched: rows.length });
    }
    env = { action: body.action, total_matched: rows.length, succeeded: [], failed: [], skipped: [], idempotency_key: body.idempotency_key };
    await apply(rows, env);
  } catch (e) {
    await release(redis, endpoint, body).catch(() => 0);
    throw e;
  }
  await remember(redis, endpoint, body, env);
  return { envelope: env, replayed: false };
}

// ------------------------------------------------------------------ tenants
const TENANT_TARGET: Record<string, string> = { SUSPEND: 'SUSPENDED', REACTIVATE: 'ACTIVE', CLOSE: 'CLOSED' };

/** Same predicate as listTenants (status, parent_tenant_id, observe_mode, search). */
export function tenantMatches(h: Record<string, string>, f: Record<string, any>, search: string | undefined): boolean {
  return (!f.status || h.status === f.status)
    && (!f.parent_tenant_id || h.parent_tenant_id === f.parent_tenant_id)
    && (!f.observe_mode || (h.observe_mode || 'ENFORCE') === f.observe_mode)
    && (!search || h.tenant_id.toLowerCase().includes(search) || (h.name ?? '').toLowerCase().includes(search));
}

/** `v126` off: filter.observe_mode is accepted and ignored, as TenantBulkFilter says servers
 *  without the v0.1.26 extension MUST; a filter left with nothing else is refused like an empty
 *  one, so an ignored property never turns into an all-tenants action (decision DG1). */
export async function bulkTenants(redis: Redis, body: Record<string, any>, ev: EventCtx, v126: boolean, retain?: string) {
  const named: Record<string, any> = body.filter ?? {};
  const f = v126 ? named : Object.fromEntries(Object.entries(named).filter(([k]) => k !== 'observe_mode'));
  if (Object.keys(f).length === 0) {
    throw invalid(Object.keys(named).length === 0
      ? 'filter must name at least one property (an empty filter would select every tenant)'
      : 'filter must name at least one property besides observe_mode, which this server ignores (CYCLES_FEATURES without v0.1.26); it would select every tenant');
  }
  const search = searchTerm(f.search);
  if (f.observe_mode && !['DISABLED', 'OBSERVE', 'ENFORCE'].includes(f.observe_mode)) {
    throw invalid('filter.observe_mode must be one of DISABLED, OBSERVE, ENFORCE');
  }
  const target = TENANT_TARGET[body.action];
  const rowEv: EventCtx = { ...ev, correlation_id: `tenant_bulk_action:${String(body.action).toLowerCase()}:${ev.request_id}` };
  return gated(redis, 'tenants', body,
    async () => {
      const ids = await redis.zrange(keys.tenantIndex(), 0, LIST_SCAN_MAX - 1);
      const rows = await hgetallMany(redis, ids.map((id) => keys.tenant(id)));
      return rows.filter((h) => tenantMatches(h, f, search)).sort((a, b) => (a.tenant_id < b.tenant_id ? -1 : 1));
    },
    async (rows, env) => {
      for (const h of rows) {
        const id = h.tenant_id;
        try {
          const live = await redis.hget(keys.tenant(id), 'status');
          if (live === null) { env.failed.push({ id, error_code: 'NOT_FOUND', message: 'Tenant no longer exists' }); continue; }
          if (live === target) { env.skipped.push({ id, reason: 'ALREADY_IN_TARGET_STATE' }); continue; }
          if (live === 'CLOSED') {
            env.failed.push({ id, error_code: 'INVALID_TRANSITION', message: `Tenant is CLOSED; ${body.action} is not possible` });
            continue;
          }
          if (target === 'CLOSED') {
            await markClosePending(redis, id);
            await updateTenant(redis, id, { status: 'CLOSED' }, rowEv);
            const report = await runCloseCascade(redis, id, ev, retain);
            if (report.failed_resources.length > 0) {
              env.failed.push({ id, error_code: 'INTERNAL_ERROR', message: 'Tenant is CLOSED but its close cascade is incomplete; re-issue the close to resume' });
              continue;
            }
          } else {
            await updateTenant(redis, id, { status: target }, rowEv);
          }
          env.succeeded.push({ id });
        } catch (e) {
          env.failed.push(rowFailure(id, e));
        }
      }
    });
}

// ------------------------------------------------------------------ budgets
function rowFailure(id: string, e: unknown): RowOutcome {
  if (!(e instanceof ApiError)) return { id, error_code: 'INTERNAL_ERROR', message: 'Internal error' };
  switch (e.code) {
    case 'BUDGET_EXCEEDED': return { id, error_code: 'BUDGET_EXCEEDED', message: e.message };
    case 'BUDGET_NOT_FOUND': case 'TENANT_NOT_FOUND': case 'NOT_FOUND': return { id, error_code: 'NOT_FOUND', message: e.message };
    case 'FORBIDDEN': case 'INSUFFICIENT_PERMISSIONS': return { id, error_code: 'PERMISSION_DENIED', message: e.message };
    case 'INTERNAL_ERROR': return { id, error_code: 'INTERNAL_ERROR', message: 'Internal error' };
    default: return { id, error_code: 'INVALID_TRANSITION', message: e.message };
  }
}

export interface BudgetFilter {
  tenant_id: string; scope_prefix?: string; unit?: string; status?: string; over_limit?: boolean;
  has_debt?: boolean; utilization_min?: number; utilization_max?: number; search?: string;
}

/** Same predicate as listBudgets. */
export function budgetMatches(h: Record<string, string>, f: BudgetFilter, search: string | undefined): boolean {
  const prefix = f.scope_prefix?.toLowerCase();
  if (prefix && !h.scope.startsWith(prefix)) return false;
  if (f.unit && h.unit !== f.unit) return false;
  if (f.status && (h.status || 'ACTIVE') !== f.status) return false;
  if (f.over_limit !== undefined && (h.is_over_limit === '1') !== f.over_limit) return false;
  if (f.has_debt !== undefined && (BigInt(h.debt ?? '0') > 0n) !== f.has_debt) return false;
  const u = utilization(h);
  if (f.utilization_min !== undefined && u < f.utilization_min) return false;
  if (f.utilization_max !== undefined && u > f.utilization_max) return false;
  if (search && !(h.tenant_id ?? '').toLowerCase().includes(search) && !h.scope.includes(search)) return false;
  return true;
}

export async function bulkBudgets(redis: Redis, body: Record<string, any>, ev: EventCtx) {
  const f = (body.filter ?? {}) as BudgetFilter;
  if (!f.tenant_id) throw invalid('filter.tenant_id is required');
  if (body.amount === undefined) throw invalid(`amount is required for ${body.action}`);
  if (toBig(body.amount.amount) < 0n) throw invalid('amount.amount must be >= 0');
  if (body.action === 'RESET_SPENT' && body.spent !== undefined) {
    if (toBig(body.spent.amount) < 0n) throw invalid('spent.amount must be >= 0');
    if (body.spent.unit !== body.amount.unit) throw new ApiError('UNIT_MISMATCH', 'spent.unit must equal amount.unit');
  }
  if (f.utilization_min !== undefined && f.utilization_max !== undefined && f.utilization_min > f.utilization_max) {
    throw invalid('filter.utilization_min must not exceed filter.utilization_max');
  }
  const search = searchTerm(f.search);
  const tenant = f.tenant_id;
  const rowEv: EventCtx = { ...ev, correlation_id: `budget_bulk_action:${String(body.action).toLowerCase()}:${ev.request_id}` };
  const admin: Principal = { kind: 'admin' };
  return gated(redis, 'budgets', body,
    async () => {
      const known = (await redis.exists(keys.tenant(tenant))) === 1 || (await redis.sismember(keys.tenants(), tenant)) === 1;
      if (!known) throw new ApiError('TENANT_NOT_FOUND', `Tenant ${tenant} not found`);
      const rows = await tenantBudgets(redis, tenant);
      return rows.filter((h) => budgetMatches(h, f, search));
    },
    async (rows, env) => {
      for (const h of rows) {
        const id = h.ledger_id || `${h.scope}|${h.unit}`;
        try {
          if (h.unit !== body.amount.unit) {
            env.failed.push({ id, error_code: 'INVALID_TRANSITION', message: `amount.unit ${body.amount.unit} does not match the budget unit ${h.unit}` });
            continue;
          }
          if (body.action === 'REPAY_DEBT' && BigInt((await redis.hget(keys.budget(tenant, h.scope, h.unit), 'debt')) ?? '0') === 0n) {
            env.skipped.push({ id, reason: 'ALREADY_IN_TARGET_STATE' });
            continue;
          }
          const fundBody: Record<string, unknown> = { operation: body.action, amount: body.amount };
          if (body.action === 'RESET_SPENT' && body.spent !== undefined) fundBody.spent = body.spent;
          if (body.reason !== undefined) fundBody.reason = body.reason;
          await fundBudget(redis, admin, { scope: h.scope, unit: h.unit, tenant_id: tenant }, fundBody, rowEv);
          env.succeeded.push({ id });
        } catch (e) {
          env.failed.push(rowFailure(id, e));
        }
      }
    });
}
