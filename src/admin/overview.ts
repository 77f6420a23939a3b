// getAdminOverview: one bounded pass over the indexes.
//   tenants  keys.tenants() ∪ keys.tenantIndex()  → HMGET status, observe_mode  (≤ OVERVIEW_TENANTS_MAX)
//   budgets  keys.budgetIndex(t) per tenant        → HMGET amounts/status       (≤ OVERVIEW_BUDGETS_MAX)
//   policies keys.policies(t) per tenant           → HVALS (allow/deny list counts)
//   events   keys.outbox(t) per tenant, XREVRANGE over the last EVENT_WINDOW_S seconds,
//            ≤ OVERVIEW_EVENTS_PER_TENANT entries per tenant
//   quotas   keys.quotaIndex(t) per tenant (v0.1.26) → live members, HMGET  (≤ OVERVIEW_QUOTA_COUNTERS_MAX)
// All reads are pipelined per batch of 500 keys. When a cap is hit the counts cover the
// first rows only and the response says so in the log (the schema has no field for it).
import type { Redis } from 'ioredis';
import type { Config } from '../config';
import { keys } from '../store/keys';
import { UNITS } from '../ledger/model';
import { fieldsOf, renderEvent, SYSTEM_TENANT } from '../events/model';
import { webhookOverview } from '../events/subscriptions';
import { quotaHealth, quotaHealthRows } from '../governance/quotaCounters';

export const EVENT_WINDOW_S = 3600;
export const OVERVIEW_TENANTS_MAX = 10_000;
export const OVERVIEW_BUDGETS_MAX = 100_000;
export const OVERVIEW_EVENTS_PER_TENANT = 10_000;
export const OVERVIEW_QUOTA_COUNTERS_MAX = 100_000;
const TOP = 10;
const BATCH = 500;

type Row = Record<string, unknown>;

async function batched<T>(items: string[], fn: (chunk: string[]) => Promise<T[]>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < items.length; i += BATCH) out.push(...(await fn(items.slice(i, i + BATCH))));
  return out;
}

/** An outbox stream entry rendered as the spec's Event (src/events/model.ts renderEvent). */
export function outboxEvent(tenant: string, id: string, flat: string[]): Row | undefined {
  const f = fieldsOf(flat);
  return f.type ? (renderEvent(tenant, id, f) as unknown as Row) : undefined;
}

const big = (v: string | null | undefined) => { try { return BigInt(v ?? '0'); } catch { return 0n; } };
const int = (v: bigint) => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v);

export async function adminOverview(redis: Redis, config: Config): Promise<Row> {
  const nowMs = Date.now();
  const tenantIds = [...new Set([
    ...(await redis.smembers(keys.tenants())),
    ...(await redis.zrange(keys.tenantIndex(), 0, OVERVIEW_TENANTS_MAX - 1)),
  ])].sort().slice(0, OVERVIEW_TENANTS_MAX);

  // tenants
  const tenantRows = await batched(tenantIds, (c) => Promise.all(c.map((t) => redis.hmget(keys.tenant(t), 'status', 'observe_mode'))));
  const tenant_counts = { total: 0, active: 0, suspended: 0, closed: 0, in_observe_mode: 0 };
  for (const [status, mode] of tenantRows) {
    if (!status) continue; // budget-only tenant without a tenant record
    tenant_counts.total++;
    if (status === 'ACTIVE') tenant_counts.active++;
    else if (status === 'SUSPENDED') tenant_counts.suspended++;
    else if (status === 'CLOSED') tenant_counts.closed++;
    if (mode && mode !== 'ENFORCE') tenant_counts.in_observe_mode++;
  }

  // budgets
  const budgetKeys: string[] = [];
  for (const t of tenantIds) {
    if (budgetKeys.length >= OVERVIEW_BUDGETS_MAX) break;
    const members = await redis.zrange(keys.budgetIndex(t), 0, OVERVIEW_BUDGETS_MAX - budgetKeys.length - 1);
    for (const m of members) {
      const bar = m.lastIndexOf('|');
      budgetKeys.push(keys.budget(t, m.slice(0, bar), m.slice(bar + 1)));
    }
  }
  const fields = ['scope', 'unit', 'status', 'allocated', 'remaining', 'debt', 'overdraft_limit', 'is_over_limit'] as const;
  const budgets = await batched(budgetKeys, (c) => Promise.all(c.map((k) => redis.hmget(k, ...fields))));
  const by_unit: Record<string, number> = Object.fromEntries(UNITS.map((u) => [u, 0]));
  const budget_counts = { total: 0, active: 0, frozen: 0, closed: 0, over_limit: 0, with_debt: 0, by_unit };
  const over: { scope: string; unit: string; allocated: bigint; remaining: bigint; debt: bigint }[] = [];
  const debts: { scope: string; unit: string; debt: bigint; overdraft_limit: bigint }[] = [];
  for (const [scope, unit, status, allocated, remaining, debt, od, isOver] of budgets) {
    if (!scope || !unit) continue;
    budget_counts.total++;
    if (status === 'ACTIVE') budget_counts.active++;
    else if (status === 'FROZEN') budget_counts.frozen++;
    else if (status === 'CLOSED') budget_counts.closed++;
    by_unit[unit] = (by_unit[unit] ?? 0) + 1;
    const d = big(debt);
    if (isOver === '1') {
      budget_counts.over_limit++;
      over.push({ scope, unit, allocated: big(allocated), remaining: big(remaining), debt: d });
    }
    if (d > 0n) {
      budget_counts.with_debt++;
      debts.push({ scope, unit, debt: d, overdraft_limit: big(od) });
    }
  }
  const byDebt = (a: { debt: bigint; scope: string }, b: { debt: bigint; scope: string }) =>
    (a.debt === b.debt ? (a.scope < b.scope ? -1 : 1) : a.debt > b.debt ? -1 : 1);
  over.sort(byDebt);
  debts.sort(byDebt);

  // policies (v0.1.26 access-control stats)
  let withAllow = 0, withDeny = 0;
  const policyVals = await batched(tenantIds, (c) => Promise.all(c.map((t) => redis.hvals(keys.policies(t)))));
  for (const vals of policyVals) {
    for (const raw of vals) {
      try {
        const p = JSON.parse(raw);
        if (Array.isArray(p.allowed_action_kinds) && p.allowed_action_kinds.length) withAllow++;
        if (Array.isArray(p.denied_action_kinds) && p.denied_action_kinds.length) withDeny++;
      } catch { /* a corrupt row is not counted */ }
    }
  }

  // events in the window, from the per-tenant outboxes
  const since = nowMs - EVENT_WINDOW_S * 1000;
  const by_category: Record<string, number> = {};
  let total_recent = 0;
  const denials: Row[] = [];
  const expiries: Row[] = [];
  const denialsByReason: Record<string, number> = {};
  // __system__ holds the system-level events (system.*, webhook.* of system subscriptions)
  const streams = await batched([...tenantIds, SYSTEM_TENANT], (c) => Promise.all(c.map((t) =>
    redis.xrevrange(keys.outbox(t), '+', String(since), 'COUNT', OVERVIEW_EVENTS_PER_TENANT).then((r) => ({ t, r })))));
  for (const { t, r } of streams) {
    for (const [id, flat] of r) {
      const ev = outboxEvent(t, id, flat);
      if (!ev) continue;
      total_recent++;
      const cat = String(ev.category);
      by_category[cat] = (by_category[cat] ?? 0) + 1;
      if (ev.event_type === 'reservation.denied') {
        denials.push(ev);
        const reason = (ev.data as Row | undefined)?.reason_code;
        if (typeof reason === 'string') denialsByReason[reason] = (denialsByReason[reason] ?? 0) + 1;
      } else if (ev.event_type === 'reservation.expired') expiries.push(ev);
    }
  }
  const newest = (a: Row, b: Row) => (String(b.timestamp) < String(a.timestamp) ? -1 : String(b.timestamp) > String(a.timestamp) ? 1 : 0);
  denials.sort(newest);
  expiries.sort(newest);

  const v126 = config.features.has('v0.1.26');
  const tc: Row = { total: tenant_counts.total, active: tenant_counts.active, suspended: tenant_counts.suspended, closed: tenant_counts.closed };
  if (v126) tc.in_observe_mode = tenant_counts.in_observe_mode;
  const out: Row = {
    as_of: new Date(nowMs).toISOString(),
    event_window_seconds: EVENT_WINDOW_S,
    tenant_counts: tc,
    budget_counts,
    over_limit_scopes: over.slice(0, TOP).map((b) => ({ scope: b.scope, unit: b.unit, allocated: int(b.allocated), remaining: int(b.remaining), debt: int(b.debt) })),
    debt_scopes: debts.slice(0, TOP).map((b) => ({ scope: b.scope, unit: b.unit, debt: int(b.debt), overdraft_limit: int(b.overdraft_limit) })),
    // webhook_counts, failing_webhooks (src/events/subscriptions.ts)
    ...(await webhookOverview(redis)),
    event_counts: { total_recent, by_category },
    recent_denials: denials.slice(0, TOP),
    recent_expiries: expiries.slice(0, TOP),
    recent_denials_by_reason: denialsByReason,
  };
  if (v126) out.access_control_stats = { policies_with_allow_list: withAllow, policies_with_deny_list: withDeny };
  // quota_health: live action-quota counters of every listed tenant (DG21)
  if (v126) out.quota_health = quotaHealth(await quotaHealthRows(redis, tenantIds, OVERVIEW_QUOTA_COUNTERS_MAX), TOP);
  return out;
}
