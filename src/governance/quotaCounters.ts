// Operator view of the v0.1.26 action-quota counters (cycles-action-kinds-v0.1.26.yaml
// listActionQuotaCounters, resetActionQuotaCounter; docs/decisions.md DG20, DG21).
//
// Counters are written by reserve.lua (quota_common.lua); this module only reads them,
// resets one (quota_reset.lua) and renders ActionQuotaState. Storage (src/store/keys.ts):
//   quotaCounter(t, scope, kindPart, window, windowKey)  hash, fields per quota_common.lua
//   quotaIndex(t)  zset member = counter key, score = the key's expiry (ms)
// "Now" is Redis TIME, the clock the scripts stamp expiries with (DESIGN §4).
import type { Redis } from 'ioredis';
import { ApiError, invalid } from '../errors';
import { keys } from '../store/keys';
import { openPage, type SortKey } from '../list/cursor';
import { scopeFilterAllows } from '../auth/scopeFilter';
import { runAdminScript, type EventCtx } from '../admin/common';

export const RISK_KIND = '__risk__';
/** Counter keys one list request examines at most (HGETALL); past it the page is cut
 *  short with has_more = true and the cursor at the last key examined (DG20). */
export const QUOTA_LIST_EXAMINE_MAX = 5_000;
/** Live index members one request loads at most (per tenant). */
export const QUOTA_INDEX_MAX = 100_000;
const BATCH = 200;

export type Row = Record<string, unknown>;

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const toInt = (v: bigint): number | bigint => (v <= SAFE && v >= -SAFE ? Number(v) : v);
function big(v: string | undefined): bigint | undefined {
  if (v === undefined || !/^-?\d{1,19}$/.test(v)) return undefined;
  return BigInt(v);
}

/** Redis TIME in ms. */
export async function redisNowMs(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

const MINUTE_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/;
const HOUR_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})$/;
const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** End of a calendar window instance (the first ms of the next bucket), or undefined for
 *  per_run and for a window key that is not a bucket of its window. */
export function bucketEndMs(window: string, windowKey: string): number | undefined {
  const at = (re: RegExp, step: number): number | undefined => {
    const m = re.exec(windowKey);
    if (!m) return undefined;
    const [y, mo, d, hh = '0', mi = '0'] = m.slice(1);
    const start = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(hh), Number(mi));
    return Number.isFinite(start) ? start + step : undefined;
  };
  switch (window) {
    case 'per_minute_tumbling': return at(MINUTE_RE, 60_000);
    case 'per_hour_tumbling': return at(HOUR_RE, 3_600_000);
    case 'per_day_tumbling':
    case 'per_tenant_per_day': return at(DAY_RE, 86_400_000);
    default: return undefined;
  }
}

/**
 * ActionQuotaState of one counter hash. expires_at: the end of the calendar bucket (when
 * the window resets, not the later cleanup TTL), for per_run the key's expiry (`expiryMs`,
 * the index score). undefined when the hash lacks what the schema requires (a counter
 * written by something other than quota_common.lua).
 */
export function renderCounter(h: Record<string, string>, expiryMs?: number): Row | undefined {
  const used = big(h.used ?? '0');
  const limit = big(h.limit);
  if (!h.scope || !h.action_kind || !h.window || used === undefined || limit === undefined || limit < 1n) return undefined;
  const usedOut = used < 0n ? 0n : used;
  const out: Row = { action_kind: h.action_kind };
  if (h.action_kind === RISK_KIND && h.risk_class) out.risk_class = h.risk_class;
  out.scope = h.scope;
  out.scope_path = h.scope;
  out.window = h.window;
  if (h.window_key !== undefined) out.window_key = h.window_key;
  out.used = toInt(usedOut);
  out.limit = toInt(limit);
  out.remaining = toInt(limit > usedOut ? limit - usedOut : 0n);
  if (h.policy_id) out.policy_id = h.policy_id;
  const end = (h.window_key !== undefined ? bucketEndMs(h.window, h.window_key) : undefined) ?? expiryMs;
  if (end !== undefined && Number.isFinite(end) && end > 0) out.expires_at = new Date(end).toISOString();
  const last = Number(h.last_ms);
  if (h.last_ms && Number.isSafeInteger(last) && last > 0) out.last_incremented_at = new Date(last).toISOString();
  return out;
}

/** Live members of a tenant's quota index (expired ones are pruned first), with scores. */
export async function liveCounterKeys(redis: Redis, tenant: string, nowMs: number, max = QUOTA_INDEX_MAX): Promise<Map<string, number>> {
  const idx = keys.quotaIndex(tenant);
  await redis.zremrangebyscore(idx, '-inf', `(${nowMs}`);
  const flat = await redis.zrangebyscore(idx, nowMs, '+inf', 'WITHSCORES', 'LIMIT', 0, max);
  const out = new Map<string, number>();
  for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i], Number(flat[i + 1]));
  return out;
}

// ---------------------------------------------------------------- list

export interface CounterListQuery {
  tenant: string;
  /** prefix of the counter's scope */
  scope?: string;
  actionKind?: string;
  window?: string;
  runId?: string;
  includeZero: boolean;
  limit: number;
  cursor?: string;
  /** the tenant key's scope_filter (empty: everything) */
  scopeFilter: readonly string[];
}

const bySuffix: SortKey<string> = { name: 'key', value: (k) => k };

/** One page of counters, ordered by counter key (DG20). */
export async function listQuotaCounters(redis: Redis, q: CounterListQuery): Promise<Row> {
  const prefix = keys.quotaPrefix(q.tenant);
  const page = openPage({
    sort: bySuffix,
    dir: 'asc',
    limit: q.limit,
    cursor: q.cursor,
    filters: {
      tenant: q.tenant, scope: q.scope, action_kind: q.actionKind, window: q.window, run_id: q.runId,
      include_zero: q.includeZero ? '1' : '', scope_filter: [...q.scopeFilter],
    },
  });
  const live = await liveCounterKeys(redis, q.tenant, await redisNowMs(redis));
  // The cursor and the order use the key without the tenant prefix (same order, shorter token).
  const after = page.after ? String(page.after.value) : undefined;
  const candidates = [...live.keys()]
    .filter((k) => k.startsWith(prefix))
    .map((k) => k.slice(prefix.length))
    .filter((s) => (after === undefined || s > after) && (q.scope === undefined || s.startsWith(q.scope)))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  const matches: { suffix: string; row: Row }[] = [];
  let examined = 0;
  let lastExamined: string | undefined;
  let i = 0;
  while (i < candidates.length && matches.length <= q.limit && examined < QUOTA_LIST_EXAMINE_MAX) {
    const chunk = candidates.slice(i, Math.min(i + BATCH, i + QUOTA_LIST_EXAMINE_MAX - examined));
    const hashes = await Promise.all(chunk.map((s) => redis.hgetall(prefix + s)));
    for (let j = 0; j < chunk.length; j++) {
      examined++;
      lastExamined = chunk[j];
      const row = matchCounter(hashes[j], q, live.get(prefix + chunk[j]));
      if (row) matches.push({ suffix: chunk[j], row });
      if (matches.length > q.limit) break;
    }
    i += chunk.length;
  }
  if (matches.length > q.limit) {
    const take = matches.slice(0, q.limit);
    const last = take[take.length - 1].suffix;
    return { counters: take.map((m) => m.row), has_more: true, next_cursor: page.mint({ value: last, id: last }) };
  }
  // Examined as far as the bound allows: every match so far, and a cursor past the last
  // key examined when keys remain (a short page, DG20).
  const remaining = lastExamined !== undefined && candidates[candidates.length - 1] !== lastExamined;
  const out: Row = { counters: matches.map((m) => m.row), has_more: remaining };
  if (remaining) out.next_cursor = page.mint({ value: lastExamined!, id: lastExamined! });
  return out;
}

function matchCounter(h: Record<string, string>, q: CounterListQuery, expiryMs: number | undefined): Row | undefined {
  if (!h || !h.scope) return undefined; // expired between the index read and HGETALL
  if (q.scope !== undefined && !h.scope.startsWith(q.scope)) return undefined;
  if (q.actionKind !== undefined && h.action_kind !== q.actionKind) return undefined;
  if (q.window !== undefined && h.window !== q.window) return undefined;
  if (q.runId !== undefined && (h.window !== 'per_run' || h.window_key !== q.runId)) return undefined;
  if (!q.includeZero && (h.used === undefined || /^-?0+$/.test(h.used) || h.used.startsWith('-'))) return undefined;
  if (!scopeFilterAllows(q.scopeFilter, h.scope)) return undefined;
  return renderCounter(h, expiryMs);
}

// ---------------------------------------------------------------- reset

export interface ResetRequest {
  tenant_id?: unknown;
  scope: string;
  action_kind: string;
  risk_class?: string;
  window: string;
  window_key: string;
  reason?: string;
}

/** The counter a reset request names, after the checks the schema cannot express. */
export function resetTarget(body: ResetRequest): { tenant: string; kindPart: string; riskClass: string } {
  if (typeof body.tenant_id !== 'string' || body.tenant_id === '') {
    throw invalid('missing_required_field: tenant_id (the reset endpoint is AdminKeyAuth-only; tenant_id names the tenant that owns the counter)');
  }
  const risk = body.action_kind === RISK_KIND;
  if (risk && !body.risk_class) {
    throw invalid('missing_required_field: risk_class (required when action_kind is "__risk__")');
  }
  if (!risk && body.risk_class !== undefined) {
    throw invalid('risk_class is only valid with action_kind "__risk__"');
  }
  return { tenant: body.tenant_id, kindPart: risk ? `${RISK_KIND}:${body.risk_class}` : body.action_kind, riskClass: risk ? body.risk_class! : '' };
}

export interface ResetResult {
  response: Row;
  previousUsed: string;
  correlationId: string;
}

/** Resets one counter (quota_reset.lua): used = 0, threshold flags cleared, TTL kept
 *  (calendar) or refreshed (per_run), quota.counter_reset in the same step. */
export async function resetQuotaCounter(redis: Redis, body: ResetRequest, ectx: EventCtx, actorId: string): Promise<ResetResult> {
  const t = resetTarget(body);
  const res = await runAdminScript<{ previous_used: string; counter: Record<string, string>; expiry_ms: string; correlation_id: string }>(
    redis, 'quota_reset',
    [keys.quotaCounter(t.tenant, body.scope, t.kindPart, body.window, body.window_key), keys.outbox(t.tenant), keys.quotaIndex(t.tenant)],
    [t.tenant, body.scope, body.action_kind, t.riskClass, body.window, body.window_key, actorId,
      typeof body.reason === 'string' ? body.reason : '',
      JSON.stringify({ trace_id: ectx.trace_id, request_id: ectx.request_id, actor_json: ectx.actor_json })],
  );
  const counter = renderCounter(res.counter, res.expiry_ms ? Number(res.expiry_ms) : undefined);
  const previous = big(res.previous_used);
  if (!counter || previous === undefined) {
    throw new ApiError('INTERNAL_ERROR', 'The quota counter record is malformed');
  }
  return {
    response: { counter, previous_used: toInt(previous < 0n ? 0n : previous) },
    previousUsed: res.previous_used,
    correlationId: res.correlation_id,
  };
}

// ---------------------------------------------------------------- overview

export interface QuotaHealthRow { scope: string; action_kind: string; window: string; used: bigint; limit: bigint }

/** AdminOverviewResponse.quota_health over the given live counters (DG21). */
export function quotaHealth(rows: readonly QuotaHealthRow[], top = 10): Row {
  let above80 = 0;
  let atLimit = 0;
  const offenders: QuotaHealthRow[] = [];
  for (const r of rows) {
    if (r.limit < 1n) continue;
    if (r.used * 5n >= r.limit * 4n) above80++;
    if (r.used >= r.limit) atLimit++;
    if (r.used > 0n) offenders.push(r);
  }
  const ratio = (r: QuotaHealthRow) => Number(r.used) / Number(r.limit);
  offenders.sort((a, b) => {
    // exact comparison of used/limit: a.used * b.limit vs b.used * a.limit
    const l = a.used * b.limit;
    const r = b.used * a.limit;
    if (l !== r) return l > r ? -1 : 1;
    return a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : 0;
  });
  return {
    counters_above_80pct: above80,
    counters_at_limit: atLimit,
    top_offenders: offenders.slice(0, top).map((r) => ({
      scope: r.scope, action_kind: r.action_kind, window: r.window,
      used: toInt(r.used), limit: toInt(r.limit), utilization_pct: Math.round(ratio(r) * 10_000) / 10_000,
    })),
  };
}

/** The health rows of the live counters of `tenants`, at most `max` counters in all. */
export async function quotaHealthRows(redis: Redis, tenants: readonly string[], max: number): Promise<QuotaHealthRow[]> {
  const nowMs = await redisNowMs(redis);
  const counterKeys: string[] = [];
  for (const t of tenants) {
    if (counterKeys.length >= max) break;
    const live = await liveCounterKeys(redis, t, nowMs, max - counterKeys.length);
    counterKeys.push(...live.keys());
  }
  const rows: QuotaHealthRow[] = [];
  for (let i = 0; i < counterKeys.length; i += 500) {
    const part = await Promise.all(counterKeys.slice(i, i + 500).map((k) => redis.hmget(k, 'scope', 'action_kind', 'window', 'used', 'limit')));
    for (const [scope, kind, window, used, limit] of part) {
      const u = big(used ?? undefined);
      const l = big(limit ?? undefined);
      if (!scope || !kind || !window || u === undefined || l === undefined) continue;
      rows.push({ scope, action_kind: kind, window, used: u < 0n ? 0n : u, limit: l });
    }
  }
  return rows;
}
