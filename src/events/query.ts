// Event queries: getEvent, listEvents (admin), listTenantEvents (tenant key).
//
// Where the rows come from (decision DV5), in order of preference:
//   request_id / correlation_id / trace_id given → that value's index zset (the smallest
//       when several are given), the tenant checked from the event id before any fetch;
//   a tenant known (tenant_id, the tenant a `scope` filter names, the caller's tenant)
//       → that tenant's outbox stream, XREVRANGE/XRANGE from the cursor;
//   otherwise → the global time index keys.eventIndex() (written by the relay).
// Every other filter is applied to the rendered event. Work per request is bounded: at
// most EVENTS_SCAN_MAX entries are examined; a page that runs out of budget before it is
// full ends early with has_more=true and a cursor at the last entry examined.
//
// Order for sort_by=timestamp (the default): the stream position (ms, seq, tenant) — the
// order Redis gave the tenant's events — descending by default, ascending is its exact
// reverse. The cursor (src/list/cursor.ts) holds (ms, event_id) of the last entry, so new
// events never shift a walk. Other sort keys order the newest SORT_WINDOW matching events
// in memory (src/list/cursor.ts paginate).
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { keys } from '../store/keys';
import { openPage, paginate, parseLimit, type SortDir } from '../list/cursor';
import { searchTerm } from '../admin/common';
import { scopeFilterAllows } from '../auth/scopeFilter';
import {
  categoryOf, comparePos, eventIdOf, fieldsOf, parseEventId, posOf, renderEvent,
  TENANT_VISIBLE_CATEGORIES, type Event, type EventPos,
} from './model';
import { indexValue } from './relay';

/** Most outbox entries / index members one list request examines. */
export const EVENTS_SCAN_MAX = 5000;
/** Non-timestamp sorts order at most this many (newest) matching events. */
export const SORT_WINDOW = 2000;
/** ... found within this many examined entries. */
const SORT_SCAN_MAX = 20_000;
/** Entries read per round trip. */
const CHUNK = 200;
/** Index members sharing one millisecond that are read as one group (more are cut). */
const GROUP_CAP = 10_000;

export const EVENT_SORTS = ['timestamp', 'event_type', 'category', 'scope', 'tenant_id'] as const;

export interface EventFilters {
  tenant?: string;
  eventType?: string;
  category?: string;
  /** lowercased scope path: the event's scope or anything below it */
  scope?: string;
  correlationId?: string;
  traceId?: string;
  requestId?: string;
  fromMs?: number;
  toMs?: number;
  /** lowercased search term (correlation_id, scope substring) */
  search?: string;
  /** listTenantEvents: only budget / reservation / tenant events */
  visibleOnly?: boolean;
  /** a tenant key's scope_filter: events outside it (and unscoped ones) are hidden */
  scopeFilter?: readonly string[];
}

export interface EventPage { events: Event[]; has_more: boolean; next_cursor?: string }

/** Raw entry checks that need no rendering. */
function rawMatches(type: string, f: EventFilters): boolean {
  if (!type) return false;
  if (f.eventType && type !== f.eventType) return false;
  const cat = categoryOf(type);
  if (f.category && cat !== f.category) return false;
  if (f.visibleOnly && !TENANT_VISIBLE_CATEGORIES.has(cat)) return false;
  return true;
}

function scopeUnder(scope: string | undefined, prefix: string): boolean {
  if (!scope) return false;
  const s = scope.toLowerCase();
  return s === prefix || s.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

export function eventMatches(ev: Event, f: EventFilters): boolean {
  if (f.tenant !== undefined && ev.tenant_id !== f.tenant) return false;
  if (!rawMatches(ev.event_type, f)) return false;
  if (f.scope && !scopeUnder(ev.scope, f.scope)) return false;
  if (f.correlationId && ev.correlation_id !== f.correlationId) return false;
  if (f.traceId && ev.trace_id !== f.traceId) return false;
  if (f.requestId && ev.request_id !== f.requestId) return false;
  if (f.search) {
    const q = f.search;
    if (!(ev.correlation_id ?? '').toLowerCase().includes(q) && !(ev.scope ?? '').toLowerCase().includes(q)) return false;
  }
  if (f.scopeFilter && f.scopeFilter.length > 0 && !(ev.scope && scopeFilterAllows(f.scopeFilter, ev.scope))) return false;
  return true;
}

/** Called per examined entry, in walk order; returns true to stop the walk. */
type Visit = (ev: Event | undefined, pos: EventPos) => boolean;
interface WalkResult { exhausted: boolean; last?: EventPos; scanned: number }

const idOfPos = (p: EventPos) => eventIdOf(p.tenant, `${p.ms}-${p.seq}`);

/** Walks one tenant's outbox between the time bounds, after `after`, in `dir`. */
async function walkStream(redis: Redis, tenant: string, f: EventFilters, dir: SortDir, after: EventPos | undefined,
  budget: number, visit: Visit): Promise<WalkResult> {
  const key = keys.outbox(tenant);
  let lo = f.fromMs !== undefined ? String(f.fromMs) : '-';
  let hi = f.toMs !== undefined ? String(f.toMs) : '+';
  if (after) {
    // same ms, other tenant (a cursor minted by another source): compare by ms/seq only
    const edge = `(${after.ms}-${after.seq}`;
    if (dir === 'desc') hi = edge; else lo = edge;
  }
  let scanned = 0;
  let last: EventPos | undefined;
  for (;;) {
    const n = Math.min(CHUNK, budget - scanned);
    if (n <= 0) return { exhausted: false, last, scanned };
    const rows = dir === 'desc' ? await redis.xrevrange(key, hi, lo, 'COUNT', n) : await redis.xrange(key, lo, hi, 'COUNT', n);
    for (const [id, flat] of rows) {
      scanned++;
      const dash = id.indexOf('-');
      last = { ms: BigInt(id.slice(0, dash)), seq: BigInt(id.slice(dash + 1)), tenant };
      const fields = fieldsOf(flat);
      const ev = rawMatches(fields.type ?? '', f) ? renderEvent(tenant, id, fields) : undefined;
      if (visit(ev, last)) return { exhausted: false, last, scanned };
    }
    if (rows.length < n) return { exhausted: true, last, scanned };
    const edge = `(${rows[rows.length - 1][0]}`;
    if (dir === 'desc') hi = edge; else lo = edge;
  }
}

/** Walks a zset of event ids scored by ms (global or per-value index), fetching each
 *  candidate from its outbox (trimmed ones are skipped). */
async function walkIndex(redis: Redis, key: string, f: EventFilters, dir: SortDir, after: EventPos | undefined,
  budget: number, visit: Visit): Promise<WalkResult> {
  let scanned = 0;
  let last: EventPos | undefined;
  const cmp = (a: EventPos, b: EventPos) => (dir === 'asc' ? comparePos(a, b) : comparePos(b, a));

  /** Fetches and visits members (already in walk order); true = the visitor stopped. */
  const visitMembers = async (members: { id: string; pos: EventPos }[]): Promise<boolean> => {
    const wanted = members.filter((m) => f.tenant === undefined || m.pos.tenant === f.tenant);
    const entries = await Promise.all(wanted.map((m) => {
      const sid = `${m.pos.ms}-${m.pos.seq}`;
      return redis.xrange(keys.outbox(m.pos.tenant), sid, sid);
    }));
    const byId = new Map<string, [string, string[]] | undefined>(wanted.map((m, i) => [m.id, entries[i][0]]));
    for (const m of members) {
      scanned++;
      last = m.pos;
      const e = byId.get(m.id);
      let ev: Event | undefined;
      if (e) {
        const fields = fieldsOf(e[1]);
        if (rawMatches(fields.type ?? '', f)) ev = renderEvent(m.pos.tenant, e[0], fields);
      }
      if (visit(ev, m.pos)) return true;
    }
    return false;
  };
  const toMembers = (ids: string[]) => ids
    .map((id) => ({ id, pos: posOf(id) }))
    .filter((m): m is { id: string; pos: EventPos } => m.pos !== undefined)
    .sort((a, b) => cmp(a.pos, b.pos));

  let bound: string | undefined; // exclusive score bound of the next chunk
  if (after) {
    const group = toMembers(await redis.zrangebyscore(key, String(after.ms), String(after.ms), 'LIMIT', 0, GROUP_CAP))
      .filter((m) => cmp(m.pos, after) > 0);
    if (await visitMembers(group)) return { exhausted: false, last, scanned };
    bound = String(after.ms);
  }
  const lowest = f.fromMs !== undefined ? String(f.fromMs) : '-inf';
  const highest = f.toMs !== undefined ? String(f.toMs) : '+inf';
  for (;;) {
    const n = Math.min(CHUNK, budget - scanned);
    if (n <= 0) return { exhausted: false, last, scanned };
    const flat = dir === 'desc'
      ? await redis.zrevrangebyscore(key, bound !== undefined ? `(${bound}` : highest, lowest, 'WITHSCORES', 'LIMIT', 0, n)
      : await redis.zrangebyscore(key, bound !== undefined ? `(${bound}` : lowest, highest, 'WITHSCORES', 'LIMIT', 0, n);
    const rows: { id: string; score: string }[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) rows.push({ id: flat[i], score: flat[i + 1] });
    if (rows.length === 0) return { exhausted: true, last, scanned };
    const exhausted = rows.length < n;
    let ids: string[];
    let nextBound: string;
    const lastScore = rows[rows.length - 1].score;
    if (!exhausted && rows[0].score === lastScore) {
      // one millisecond fills the chunk: read that millisecond whole
      ids = await redis.zrangebyscore(key, lastScore, lastScore, 'LIMIT', 0, GROUP_CAP);
      nextBound = lastScore;
    } else if (!exhausted) {
      // the last millisecond may continue past the chunk: leave it to the next round
      const keep = rows.filter((r) => r.score !== lastScore);
      ids = keep.map((r) => r.id);
      nextBound = keep[keep.length - 1].score;
    } else {
      ids = rows.map((r) => r.id);
      nextBound = lastScore;
    }
    if (await visitMembers(toMembers(ids))) return { exhausted: false, last, scanned };
    if (exhausted) return { exhausted: true, last, scanned };
    bound = nextBound;
  }
}

/** Index zset to walk for the id filters, the smallest when several are given. */
async function pickIndex(redis: Redis, f: EventFilters): Promise<string | undefined> {
  const cands: string[] = [];
  if (f.requestId) cands.push(keys.eventIndexBy('req', indexValue(f.requestId)));
  if (f.correlationId) cands.push(keys.eventIndexBy('corr', indexValue(f.correlationId)));
  if (f.traceId) cands.push(keys.eventIndexBy('trace', indexValue(f.traceId)));
  if (cands.length <= 1) return cands[0];
  const sizes = await Promise.all(cands.map((k) => redis.zcard(k)));
  let best = 0;
  for (let i = 1; i < cands.length; i++) if (sizes[i] < sizes[best]) best = i;
  return cands[best];
}

async function walk(redis: Redis, f: EventFilters, dir: SortDir, after: EventPos | undefined, budget: number, visit: Visit): Promise<WalkResult> {
  const idx = await pickIndex(redis, f);
  if (idx) return walkIndex(redis, idx, f, dir, after, budget, visit);
  if (f.tenant !== undefined) return walkStream(redis, f.tenant, f, dir, after, budget, visit);
  return walkIndex(redis, keys.eventIndex(), f, dir, after, budget, visit);
}

/** A page of matching events. `filters` is what the cursor is bound to. */
export async function queryEvents(redis: Redis, f: EventFilters, page: {
  sortBy?: string; sortDir?: SortDir; limit: number; cursor?: string; bind: Record<string, unknown>;
}): Promise<EventPage> {
  const sortBy = page.sortBy ?? 'timestamp';
  const dir: SortDir = page.sortDir ?? 'desc';
  const empty = f.fromMs !== undefined && f.toMs !== undefined && f.fromMs > f.toMs;

  if (sortBy !== 'timestamp') {
    const window: Event[] = [];
    if (!empty) {
      await walk(redis, f, 'desc', undefined, SORT_SCAN_MAX, (ev) => {
        if (ev && eventMatches(ev, f)) window.push(ev);
        return window.length >= SORT_WINDOW;
      });
    }
    const value = (ev: Event) => String((ev as Record<string, unknown>)[sortBy] ?? '');
    const p = paginate(window, { sort: { name: sortBy, value }, dir, id: (ev) => ev.event_id, limit: page.limit, filters: page.bind, cursor: page.cursor });
    return { events: p.rows, has_more: p.hasMore, ...(p.nextCursor ? { next_cursor: p.nextCursor } : {}) };
  }

  const { after: raw, mint } = openPage({ sort: { name: 'timestamp', value: () => 0n }, dir, limit: page.limit, filters: page.bind, cursor: page.cursor });
  let after: EventPos | undefined;
  if (raw) {
    after = posOf(raw.id);
    if (!after || typeof raw.value !== 'bigint' || raw.value !== after.ms) throw new ApiError('INVALID_REQUEST', 'Invalid cursor: not an event position');
  }
  if (empty) return { events: [], has_more: false };
  const found: { ev: Event; pos: EventPos }[] = [];
  const res = await walk(redis, f, dir, after, EVENTS_SCAN_MAX, (ev, pos) => {
    if (ev && eventMatches(ev, f)) found.push({ ev, pos });
    return found.length > page.limit;
  });
  const cursorAt = (p: EventPos) => mint({ value: p.ms, id: idOfPos(p) });
  if (found.length > page.limit) {
    const rows = found.slice(0, page.limit);
    return { events: rows.map((x) => x.ev), has_more: true, next_cursor: cursorAt(rows[rows.length - 1].pos) };
  }
  if (!res.exhausted && res.last) {
    // scan budget spent before the page filled: continue after the last examined entry
    return { events: found.map((x) => x.ev), has_more: true, next_cursor: cursorAt(res.last) };
  }
  return { events: found.map((x) => x.ev), has_more: false };
}

function timeMs(v: unknown, name: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const ms = Date.parse(String(v));
  if (!Number.isFinite(ms)) throw new ApiError('INVALID_REQUEST', `${name} must be an ISO 8601 date-time`);
  return ms;
}

const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);

/** Tenant named by a scope path (`tenant:<id>/...`), if any. */
function scopeTenant(scope: string): string | undefined {
  const m = /^tenant:([^/]+)/.exec(scope);
  return m ? m[1] : undefined;
}

function sortDirOf(q: Record<string, unknown>): SortDir {
  const d = q.sort_dir ?? 'desc';
  if (d !== 'asc' && d !== 'desc') throw new ApiError('INVALID_REQUEST', 'sort_dir must be asc or desc');
  return d;
}

/** listEvents (admin key). */
export async function listEvents(redis: Redis, q: Record<string, unknown>): Promise<EventPage> {
  const sortBy = str(q.sort_by) ?? 'timestamp';
  if (!(EVENT_SORTS as readonly string[]).includes(sortBy)) throw new ApiError('INVALID_REQUEST', `sort_by must be one of ${EVENT_SORTS.join(', ')}`);
  const dir = sortDirOf(q);
  const scope = str(q.scope)?.trim().toLowerCase() || undefined;
  const tenantId = str(q.tenant_id);
  const fromScope = scope ? scopeTenant(scope) : undefined;
  const f: EventFilters = {
    tenant: tenantId ?? fromScope,
    eventType: str(q.event_type),
    category: str(q.category),
    scope,
    correlationId: str(q.correlation_id),
    traceId: str(q.trace_id),
    requestId: str(q.request_id),
    fromMs: timeMs(q.from, 'from'),
    toMs: timeMs(q.to, 'to'),
    search: searchTerm(q.search),
  };
  const bind = { tenant_id: tenantId, event_type: f.eventType, category: f.category, scope, correlation_id: f.correlationId,
    trace_id: f.traceId, request_id: f.requestId, from: f.fromMs, to: f.toMs, search: f.search };
  const limit = parseLimit(q.limit);
  if (tenantId && fromScope && tenantId !== fromScope) {
    openPage({ sort: { name: sortBy, value: () => '' }, dir, limit, filters: bind, cursor: str(q.cursor) }); // still reject bad cursors
    return { events: [], has_more: false };
  }
  return queryEvents(redis, f, { sortBy, sortDir: dir, limit, cursor: str(q.cursor), bind });
}

/** listTenantEvents (tenant key): the caller's tenant, tenant-visible categories only. */
export async function listTenantEvents(redis: Redis, tenant: string, scopeFilter: readonly string[], q: Record<string, unknown>): Promise<EventPage> {
  const eventType = str(q.event_type);
  const category = str(q.category);
  if (eventType && !TENANT_VISIBLE_CATEGORIES.has(categoryOf(eventType))) {
    throw new ApiError('INVALID_REQUEST', `event_type ${eventType} is not tenant-accessible (only budget.*, reservation.*, tenant.* events)`);
  }
  if (category && !TENANT_VISIBLE_CATEGORIES.has(category)) {
    throw new ApiError('INVALID_REQUEST', `category ${category} is not tenant-accessible (only budget, reservation, tenant)`);
  }
  const scope = str(q.scope)?.trim().toLowerCase() || undefined;
  const f: EventFilters = {
    tenant,
    eventType,
    category,
    scope,
    correlationId: str(q.correlation_id),
    fromMs: timeMs(q.from, 'from'),
    toMs: timeMs(q.to, 'to'),
    visibleOnly: true,
    scopeFilter,
  };
  const bind = { tenant, event_type: eventType, category, scope, correlation_id: f.correlationId, from: f.fromMs, to: f.toMs };
  return queryEvents(redis, f, { limit: parseLimit(q.limit), cursor: str(q.cursor), bind, sortDir: 'desc' });
}

/** getEvent: the entry the id names, or 404 EVENT_NOT_FOUND. */
export async function getEvent(redis: Redis, eventId: string): Promise<Event> {
  const p = parseEventId(eventId);
  const notFound = () => new ApiError('EVENT_NOT_FOUND', `Event ${String(eventId).slice(0, 256)} not found`);
  if (!p) throw notFound();
  const rows = await redis.xrange(keys.outbox(p.tenant), p.streamId, p.streamId);
  const fields = rows[0] ? fieldsOf(rows[0][1]) : undefined;
  if (!fields?.type) throw notFound();
  return renderEvent(p.tenant, p.streamId, fields);
}
