// getBalances: the Balance rows of one tenant whose scope path matches a subject filter.
//
// Isolation: the candidate set is the tenant's own budget index (a key in the tenant's
// hash-tag slot), so no other tenant's budget can ever be a candidate — `acme` never
// sees `acme-corp`, whatever the filter says.
// Matching: every given subject field must appear as a WHOLE segment `<field>:<value>`
// anywhere in the canonical (lowercase) scope path, so `workspace=prod` returns the
// workspace budget and all its descendants, and never `workspace:prod2`.
// Order: (scope, unit) ascending, keyset-paginated (src/list/cursor.ts). Filtering and
// ordering use only the index members; only the returned page is hydrated.
import { scopeFilterAllows } from '../auth/scopeFilter';
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { keys } from '../store/keys';
import { renderBalance } from './model';
import { paginate, type SortKey } from '../list/cursor';

export const SUBJECT_FIELDS = ['tenant', 'workspace', 'app', 'workflow', 'agent', 'toolset'] as const;
export type SubjectField = (typeof SUBJECT_FIELDS)[number];

/** Budget index members read per request; a tenant beyond this is outside the design envelope. */
export const MAX_BUDGETS_SCANNED = 100_000;
const INDEX_CHUNK = 2_000;

/** Given subject filters (blank = absent) → required canonical segments. */
export function subjectSegments(q: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const f of SUBJECT_FIELDS) {
    const v = q[f];
    if (typeof v === 'string' && v !== '') out.push(`${f}:${v.toLowerCase()}`);
  }
  return out;
}

/** True when every required segment is a whole segment of the scope path. */
export function scopeMatches(scopePath: string, segments: readonly string[]): boolean {
  if (segments.length === 0) return true;
  const have = new Set(scopePath.toLowerCase().split('/'));
  return segments.every((s) => have.has(s));
}

/**
 * The tenant a tenant-key caller may name: the `tenant` parameter is validation-only and
 * must equal the effective tenant (case-insensitive), else 403.
 */
export function checkTenantParam(param: unknown, effective: string): void {
  if (typeof param === 'string' && param !== '' && param.toLowerCase() !== effective.toLowerCase()) {
    throw new ApiError('FORBIDDEN', 'tenant query parameter does not match the tenant of the API key');
  }
}

interface BudgetRef { scope: string; unit: string }

const BY_SCOPE_UNIT: SortKey<BudgetRef> = {
  name: 'scope_unit',
  // scope and unit joined by a byte below every legal scope character keeps (scope, unit)
  // tuple order under plain string comparison.
  value: (r) => `${r.scope}\u0000${r.unit}`,
};

async function readIndex(redis: Redis, tenant: string): Promise<BudgetRef[]> {
  const key = keys.budgetIndex(tenant);
  const total = await redis.zcard(key);
  if (total > MAX_BUDGETS_SCANNED) {
    throw new ApiError('INTERNAL_ERROR', `Tenant has ${total} budgets; getBalances scans at most ${MAX_BUDGETS_SCANNED}`);
  }
  const out: BudgetRef[] = [];
  for (let start = 0; start < total; start += INDEX_CHUNK) {
    const members = await redis.zrange(key, start, start + INDEX_CHUNK - 1);
    for (const m of members) {
      const bar = m.lastIndexOf('|');
      if (bar <= 0) continue;
      out.push({ scope: m.slice(0, bar), unit: m.slice(bar + 1) });
    }
    if (members.length < INDEX_CHUNK) break;
  }
  return out;
}

export interface BalancesQuery {
  tenant: string;
  segments: string[];
  limit: number;
  cursor?: string;
  /** the API key's scope_filter: budgets outside it are invisible (empty = all) */
  scopeFilter?: readonly string[];
}

export interface BalancesPage {
  balances: Record<string, unknown>[];
  next_cursor?: string;
  has_more: boolean;
}

export async function listBalances(redis: Redis, q: BalancesQuery): Promise<BalancesPage> {
  const refs = (await readIndex(redis, q.tenant)).filter((r) =>
    scopeMatches(r.scope, q.segments) && (!q.scopeFilter || scopeFilterAllows(q.scopeFilter, r.scope)));
  const page = paginate(refs, {
    sort: BY_SCOPE_UNIT,
    dir: 'asc',
    id: (r) => `${r.scope}|${r.unit}`,
    limit: q.limit,
    filters: { tenant: q.tenant.toLowerCase(), segments: [...q.segments].sort(), scope_filter: [...(q.scopeFilter ?? [])].sort() },
    cursor: q.cursor,
  });
  const pipe = redis.pipeline();
  for (const r of page.rows) pipe.hgetall(keys.budget(q.tenant, r.scope, r.unit));
  const hashes = page.rows.length ? ((await pipe.exec()) ?? []) : [];
  const balances: Record<string, unknown>[] = [];
  for (const [err, h] of hashes) {
    if (err) throw err;
    const rec = h as Record<string, string>;
    // An index member whose hash vanished (deleted between the two reads) is skipped.
    if (!rec || !rec.unit) continue;
    balances.push(renderBalance(rec));
  }
  return {
    balances,
    has_more: page.hasMore,
    ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
  };
}
