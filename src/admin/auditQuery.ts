// listAuditLogs: filters, time-ordered keyset scan over the narrowest index, and the
// bounded window for the other sorts. Split from audit.ts (which builds and writes rows).
import type { Redis } from 'ioredis';
import { filterHash as sharedFilterHash, encodeCursor as sharedEncode, decodeCursor as sharedDecode, paginate, parseLimit } from '../list/cursor';
import { keys } from '../store/keys';
import { ApiError, invalid } from '../errors';
import { logIdFor, tenantIndexKey, type AuditEntry } from './audit';

// ---------------------------------------------------------------- listing

export interface AuditQuery {
  tenant_id?: string;
  key_id?: string;
  operation?: string[];
  status?: number;
  resource_type?: string[];
  resource_id?: string;
  error_code?: string[];
  error_code_exclude?: string[];
  status_min?: number;
  status_max?: number;
  from?: string;
  to?: string;
  search?: string;
  trace_id?: string;
  request_id?: string;
  sort_by?: string;
  sort_dir?: string;
  cursor?: string;
  limit?: number;
}

export const AUDIT_LIST_MAX_ITEMS = 25;
/** entries examined per listAuditLogs request for timestamp order (a page may come back
 *  short with has_more=true when the filters are very selective) */
export const AUDIT_SCAN_MAX = 5000;
/** candidate window for non-timestamp sorts: larger windows must be narrowed (400) */
export const AUDIT_SORT_WINDOW_MAX = 10000;
const BATCH = 250;

const SORT_FIELDS = ['timestamp', 'operation', 'resource_type', 'tenant_id', 'key_id', 'status'] as const;
type SortField = (typeof SORT_FIELDS)[number];

/** Comma IN-list, accepting the repeated form too; bounded at 25 members. */
export function inList(name: string, v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  const parts = (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter(Boolean);
  if (parts.length > AUDIT_LIST_MAX_ITEMS) {
    throw invalid(`${name} accepts at most ${AUDIT_LIST_MAX_ITEMS} values (got ${parts.length})`);
  }
  return parts.length ? parts : undefined;
}

interface Normalised {
  tenant_id?: string; key_id?: string; operation?: Set<string>; status?: number;
  resource_type?: Set<string>; resource_id?: string; error_code?: Set<string>;
  error_code_exclude?: Set<string>; status_min?: number; status_max?: number;
  fromMs: number; toMs: number; search?: string; trace_id?: string; request_id?: string;
  sortBy: SortField; dir: 'asc' | 'desc'; limit: number;
}

function parseTime(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw invalid(`${name} must be an RFC 3339 date-time`);
  return ms;
}

export function normaliseQuery(q: AuditQuery): Normalised {
  const one = (v: unknown) => (Array.isArray(v) ? v[0] : v);
  const status = q.status;
  if (status !== undefined && (q.status_min !== undefined || q.status_max !== undefined)) {
    throw invalid('status cannot be combined with status_min/status_max');
  }
  for (const [n, v] of [['status_min', q.status_min], ['status_max', q.status_max]] as const) {
    if (v !== undefined && (v < 100 || v > 599)) throw invalid(`${n} must be in [100, 599]`);
  }
  if (q.status_min !== undefined && q.status_max !== undefined && q.status_min > q.status_max) {
    throw invalid('status_min must not exceed status_max');
  }
  const search = typeof q.search === 'string' ? q.search.trim() : undefined;
  if (search && search.length > 128) throw invalid('search must be at most 128 characters');
  const fromMs = parseTime('from', one(q.from) as string | undefined);
  const toMs = parseTime('to', one(q.to) as string | undefined);
  if (fromMs !== undefined && toMs !== undefined && fromMs > toMs) throw invalid('from must not be after to');
  const sortBy = (q.sort_by ?? 'timestamp') as SortField;
  if (!SORT_FIELDS.includes(sortBy)) throw invalid(`sort_by must be one of ${SORT_FIELDS.join(', ')}`);
  const dir = (q.sort_dir ?? 'desc') as 'asc' | 'desc';
  if (dir !== 'asc' && dir !== 'desc') throw invalid('sort_dir must be asc or desc');
  const limit = parseLimit(q.limit);
  const set = (name: string, v: unknown) => { const l = inList(name, v); return l ? new Set(l) : undefined; };
  const s = (v: unknown) => { const x = one(v); return typeof x === 'string' && x !== '' ? x : undefined; };
  return {
    tenant_id: s(q.tenant_id), key_id: s(q.key_id), operation: set('operation', q.operation), status,
    resource_type: set('resource_type', q.resource_type), resource_id: s(q.resource_id),
    error_code: set('error_code', q.error_code), error_code_exclude: set('error_code_exclude', q.error_code_exclude),
    status_min: q.status_min, status_max: q.status_max,
    fromMs: fromMs ?? 0, toMs: toMs ?? 8.64e15, search: search ? search.toLowerCase() : undefined,
    trace_id: s(q.trace_id), request_id: s(q.request_id), sortBy, dir, limit,
  };
}

export function matches(e: AuditEntry, f: Normalised): boolean {
  if (f.tenant_id !== undefined && e.tenant_id !== f.tenant_id) return false;
  if (f.key_id !== undefined && e.key_id !== f.key_id) return false;
  if (f.operation && !f.operation.has(e.operation)) return false;
  if (f.status !== undefined && e.status !== f.status) return false;
  if (f.status_min !== undefined && !(typeof e.status === 'number' && e.status >= f.status_min)) return false;
  if (f.status_max !== undefined && !(typeof e.status === 'number' && e.status <= f.status_max)) return false;
  if (f.resource_type && !(e.resource_type && f.resource_type.has(e.resource_type))) return false;
  if (f.resource_id !== undefined && e.resource_id !== f.resource_id) return false;
  if (f.error_code && !(e.error_code && f.error_code.has(e.error_code))) return false;
  if (f.error_code_exclude && e.error_code && f.error_code_exclude.has(e.error_code)) return false;
  if (f.trace_id !== undefined && e.trace_id !== f.trace_id) return false;
  if (f.request_id !== undefined && e.request_id !== f.request_id) return false;
  const ts = Date.parse(e.timestamp);
  if (ts < f.fromMs || ts > f.toMs) return false;
  if (f.search) {
    const hay = [e.resource_id, e.log_id, e.error_code, e.operation];
    if (!hay.some((h) => typeof h === 'string' && h.toLowerCase().includes(f.search!))) return false;
  }
  return true;
}

// Cursor: the shared keyset cursor (src/list/cursor.ts), bound to sort + filter set.
// Timestamp order walks the index in Redis order (score, then log_id in the walk's own
// direction); the cursor carries the last (score, log_id) of the page.
interface CursorState { s: number; id: string }

function filterHash(f: Normalised): string {
  const { sortBy: _s, dir: _d, limit: _l, ...rest } = f;
  const flat: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) flat[k] = v instanceof Set ? [...v].sort() : v;
  return sharedFilterHash(flat);
}

function encodeCursor(f: Normalised, hash: string, c: CursorState): string {
  return sharedEncode('timestamp', f.dir, hash, { value: BigInt(c.s), id: c.id });
}

function decodeCursor(raw: string | undefined, f: Normalised, hash: string): CursorState | undefined {
  const pos = sharedDecode(raw, { sortBy: 'timestamp', sortDir: f.dir, filterHash: hash });
  if (!pos) return undefined;
  if (typeof pos.value !== 'bigint') throw new ApiError('INVALID_REQUEST', 'Invalid cursor: malformed sort value');
  return { s: Number(pos.value), id: pos.id };
}

function entryScore(e: AuditEntry): number { return Date.parse(e.timestamp); }

async function fetchEntries(redis: Redis, ids: string[]): Promise<(AuditEntry | null)[]> {
  if (ids.length === 0) return [];
  const raw = await redis.mget(ids.map((id) => keys.auditEntry(id)));
  return raw.map((r) => (r ? (JSON.parse(r) as AuditEntry) : null));
}

/** The narrowest index for the filter set. */
function sourceIndex(f: Normalised): string {
  if (f.trace_id) return keys.auditByTrace(f.trace_id);
  if (f.key_id) return keys.auditByKey(f.key_id);
  // An id outside the grammar reads the shared zset; matches() keeps only its own rows.
  if (f.tenant_id) return tenantIndexKey(f.tenant_id);
  return keys.auditAll();
}

export interface AuditPage { logs: AuditEntry[]; has_more: boolean; next_cursor?: string }

export async function listAuditLogs(redis: Redis, q: AuditQuery): Promise<AuditPage> {
  const f = normaliseQuery(q);
  const hash = filterHash(f);
  if (f.request_id) {
    // log_id is derived from request_id: one GET, 0 or 1 row.
    if (q.cursor) throw invalid('Invalid cursor: a request_id query has a single page');
    const [e] = await fetchEntries(redis, [logIdFor(f.request_id)]);
    return { logs: e && matches(e, f) ? [e] : [], has_more: false };
  }
  if (f.sortBy === 'timestamp') return scanByTime(redis, f, hash, decodeCursor(q.cursor, f, hash));
  return sortWindow(redis, f, hash, q.cursor);
}

async function scanByTime(redis: Redis, f: Normalised, hash: string, cursor?: CursorState): Promise<AuditPage> {
  const key = sourceIndex(f);
  const desc = f.dir === 'desc';
  const out: AuditEntry[] = [];
  // Position = (bound score, how many members AT that score were already consumed), so
  // runs of equal timestamps longer than a batch still make progress.
  let bound = desc ? f.toMs : f.fromMs;
  let skip = 0;
  if (cursor) {
    bound = cursor.s;
    const ties = await redis.zrange(key, String(cursor.s), String(cursor.s), 'BYSCORE');
    if (desc) ties.reverse();
    const at = ties.indexOf(cursor.id);
    skip = at >= 0 ? at + 1 : ties.filter((id) => (desc ? id > cursor.id : id < cursor.id)).length;
  }
  let scanned = 0;
  for (;;) {
    const raw = desc
      ? await redis.zrange(key, String(bound), String(f.fromMs), 'BYSCORE', 'REV', 'LIMIT', skip, BATCH, 'WITHSCORES')
      : await redis.zrange(key, String(bound), String(f.toMs), 'BYSCORE', 'LIMIT', skip, BATCH, 'WITHSCORES');
    const pairs: { id: string; s: number }[] = [];
    for (let i = 0; i < raw.length; i += 2) pairs.push({ id: raw[i], s: Number(raw[i + 1]) });
    const entries = await fetchEntries(redis, pairs.map((p) => p.id));
    for (let i = 0; i < pairs.length; i++) {
      scanned++;
      const e = entries[i];
      if (e && matches(e, f)) {
        out.push(e);
        if (out.length > f.limit) {
          const page = out.slice(0, f.limit);
          const tail = page[page.length - 1];
          return { logs: page, has_more: true, next_cursor: encodeCursor(f, hash, { s: entryScore(tail), id: tail.log_id }) };
        }
      }
      if (scanned >= AUDIT_SCAN_MAX && (i < pairs.length - 1 || pairs.length === BATCH)) {
        // Bounded work per request: return what we have and continue from here next time.
        return { logs: out, has_more: true, next_cursor: encodeCursor(f, hash, { s: pairs[i].s, id: pairs[i].id }) };
      }
    }
    if (pairs.length < BATCH) return { logs: out, has_more: false };
    const tailS = pairs[pairs.length - 1].s;
    const atTail = pairs.filter((p) => p.s === tailS).length;
    skip = tailS === bound ? skip + atTail : atTail;
    bound = tailS;
  }
}

/** Non-timestamp sorts: (value, log_id) via the shared paginate; absent values sort as ''. */
async function sortWindow(redis: Redis, f: Normalised, hash: string, cursor: string | undefined): Promise<AuditPage> {
  const key = sourceIndex(f);
  const total = await redis.zcount(key, String(f.fromMs), String(f.toMs));
  if (total > AUDIT_SORT_WINDOW_MAX) {
    throw new ApiError('INVALID_REQUEST', `sort_by=${f.sortBy} needs a window of at most ${AUDIT_SORT_WINDOW_MAX} entries (this one has ${total}); narrow it with from/to, tenant_id, key_id or trace_id`, { window_entries: total, window_max: AUDIT_SORT_WINDOW_MAX });
  }
  const all: AuditEntry[] = [];
  for (let off = 0; off < total; off += 1000) {
    const ids = await redis.zrange(key, String(f.fromMs), String(f.toMs), 'BYSCORE', 'LIMIT', off, 1000);
    for (const e of await fetchEntries(redis, ids)) if (e && matches(e, f)) all.push(e);
    if (ids.length < 1000) break;
  }
  const field = f.sortBy;
  const page = paginate(all, {
    sort: {
      name: field,
      value: (e) => {
        const v = (e as unknown as Record<string, unknown>)[field];
        return typeof v === 'number' ? BigInt(v) : typeof v === 'string' ? v : '';
      },
    },
    dir: f.dir,
    id: (e) => e.log_id,
    limit: f.limit,
    filters: { h: hash },
    cursor,
  });
  return { logs: page.rows, has_more: page.hasMore, ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}) };
}
