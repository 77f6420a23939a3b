// Read side of reservations: getReservation and listReservations (runtime plane).
// Rows come from the reservation hashes documented in src/ledger/model.ts; nothing here
// writes. Isolation is structural: list reads only keys.reservationIndex(tenant) and
// keys.reservation(tenant, id) in the tenant's own slot.
import { requireScopeAllowed, scopeFilterAllows } from '../auth/scopeFilter';
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { parseJsonBody } from '../json';
import { keys } from '../store/keys';
import { amount } from './model';
import { scopeMatches } from './balances';
import { foreignOrMissing } from './reservationOps';
import { ownerOf } from './reservationId';
import { decodeReservationHash } from './reservationRecord';
import { evidenceUrl } from '../evidence/envelope';
import {
  comparePositions, openPage, paginate,
  type CursorPosition, type SortDir, type SortKey,
} from '../list/cursor';

export const STATUSES = ['ACTIVE', 'COMMITTED', 'RELEASED', 'EXPIRED'] as const;
export const SORT_KEYS = ['reservation_id', 'tenant', 'scope_path', 'status', 'reserved', 'created_at_ms', 'expires_at_ms'] as const;
export type SortBy = (typeof SORT_KEYS)[number];
export const INCLUDE_TOKENS = ['metadata', 'committed_metadata', 'evidence'] as const;

/** Rows hydrated (HGETALL) per list request, on every path (bounded work per request). */
export const MAX_ROWS_HYDRATED = 5_000;
/** Candidates a non-created_at sort may order in memory; beyond → 400 (narrow the window). */
export const MAX_SORT_CANDIDATES = MAX_ROWS_HYDRATED;
/** Index entries read per chunk on the created_at path; hashes hydrated per pipeline. */
const INDEX_CHUNK = 500;
const HYDRATE_BATCH = 250;

type Hash = Record<string, string>;

function json(h: Hash, field: string): unknown {
  const text = h[field];
  if (text === undefined || text === '') return undefined;
  try {
    return parseJsonBody(text).value;
  } catch {
    throw new ApiError('INTERNAL_ERROR', `Reservation ${h.reservation_id} has a malformed ${field} field`);
  }
}

const int = (v: string | undefined): bigint | undefined => (v !== undefined && /^-?\d+$/.test(v) ? BigInt(v) : undefined);

/** finalized_at_ms: set on COMMITTED / RELEASED rows only (spec ReservationSummary). */
export function finalizedAt(h: Hash): bigint | undefined {
  if (h.status === 'COMMITTED') return int(h.finalized_at_ms) ?? int(h.committed_at_ms);
  if (h.status === 'RELEASED') return int(h.finalized_at_ms) ?? int(h.released_at_ms);
  return undefined;
}

export interface RenderOptions {
  /** the evidence issuer base (EvidenceIdentity.serverId) the `cycles_evidence_url` of a
   *  ReservationEvidence entry is rendered with; unset (evidence off): entries stored as an
   *  id are left out, as the spec says for a server with evidence disabled */
  serverId?: string;
  /** the export's audit record: an entry stored as an id without a serverId is kept as
   *  `{evidence_id}` (the link is never lost from the audit trail) */
  keepBareIds?: boolean;
}

const EVIDENCE_ID = /^[0-9a-f]{64}$/;

/** One ReservationEvidence entry (CyclesEvidenceRef). Stored since DM5 as the bare 64-hex
 *  evidence id (the URL would push the hash out of listpack); records written before hold
 *  the whole reference as JSON and are rendered as stored. */
function evidenceLink(h: Hash, field: string, opts: RenderOptions): unknown {
  const v = h[field];
  if (v === undefined || v === '') return undefined;
  if (EVIDENCE_ID.test(v)) {
    if (opts.serverId !== undefined) return { evidence_id: v, cycles_evidence_url: evidenceUrl(opts.serverId, v) };
    return opts.keepBareIds ? { evidence_id: v } : undefined;
  }
  return json(h, field);
}

/**
 * ReservationSummary / ReservationDetail from a hash. `include` selects the heavy maps
 * (list rows); the detail view passes all of them.
 */
export function renderReservation(stored: Hash, include: ReadonlySet<string>, opts: RenderOptions = {}): Record<string, unknown> {
  // the hash as read from Redis or already decoded (decoding is idempotent)
  const h = decodeReservationHash(stored);
  const created = int(h.created_at_ms);
  const expires = int(h.expires_at_ms);
  const estimate = int(h.estimate);
  if (!h.reservation_id || !h.status || !h.unit || created === undefined || expires === undefined || estimate === undefined) {
    throw new ApiError('INTERNAL_ERROR', `Reservation ${h.reservation_id ?? '?'} record is incomplete`);
  }
  const row: Record<string, unknown> = {
    reservation_id: h.reservation_id,
    status: h.status,
  };
  if (h.idempotency_key) row.idempotency_key = h.idempotency_key;
  row.subject = json(h, 'subject');
  row.action = json(h, 'action');
  row.reserved = amount(h.unit, estimate);
  if (h.status === 'COMMITTED' && int(h.charged) !== undefined) row.committed = amount(h.unit, int(h.charged)!);
  row.created_at_ms = created;
  row.expires_at_ms = expires;
  const fin = finalizedAt(h);
  if (fin !== undefined) row.finalized_at_ms = fin;
  row.scope_path = h.scope_path;
  row.affected_scopes = json(h, 'affected_scopes') ?? [];
  if (include.has('metadata')) {
    const m = json(h, 'metadata');
    if (m !== undefined) row.metadata = m;
  }
  if (include.has('committed_metadata') && h.status === 'COMMITTED') {
    const m = json(h, 'committed_metadata');
    if (m !== undefined) row.committed_metadata = m;
  }
  if (include.has('evidence')) {
    // ReservationEvidence: the evidence worker records each stored envelope's id on the
    // hash (`ev:reserve`, `ev:commit`, `ev:release`; src/evidence/worker.ts), so a row
    // shows an entry once its envelope is fetchable. The URL is rendered here (DM5).
    const e: Record<string, unknown> = {};
    for (const a of ['reserve', 'commit', 'release'] as const) {
      const ref = evidenceLink(h, `ev:${a}`, opts);
      if (ref !== undefined) e[a] = ref;
    }
    if (Object.keys(e).length > 0) row.evidence = e;
  }
  // Integers are serialised exactly by the pipeline (BigInt beyond 2^53).
  for (const k of ['created_at_ms', 'expires_at_ms', 'finalized_at_ms'] as const) {
    if (typeof row[k] === 'bigint') row[k] = toNum(row[k] as bigint);
  }
  return row;
}

const toNum = (v: bigint): number | bigint => (v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v);

/**
 * The audit-trail record of one reservation for the cold export (src/export/, decision DX4):
 * the ReservationDetail view (every include) plus what an auditor needs that the API view
 * leaves out — owning tenant, the budgeted scopes, effective overage policy, grace period,
 * extensions, governing policy, the commit's metrics and time, who released it and why,
 * when it expired. Replay payloads and payload hashes are not part of the record. This is
 * the only place (with renderReservation) that knows the hash layout: keep them together.
 */
export function reservationRecord(h: Hash, serverId?: string): Record<string, unknown> {
  const row = renderReservation(h, new Set(INCLUDE_TOKENS), { serverId, keepBareIds: true });
  const out: Record<string, unknown> = { ...row, tenant: h.tenant };
  const n = (v: string | undefined) => { const x = int(v); return x === undefined ? undefined : toNum(x); };
  const put = (k: string, v: unknown) => { if (v !== undefined && v !== '') out[k] = v; };
  put('budgeted', json(h, 'budgeted'));
  put('overage_policy', h.overage_policy);
  put('grace_period_ms', n(h.grace_ms));
  put('extension_count', n(h.extension_count));
  put('max_extensions', n(h.max_extensions));
  put('extend_metadata', json(h, 'extend_metadata'));
  put('policy_id', h.policy_id);
  put('committed_at_ms', n(h.committed_at_ms));
  put('committed_metrics', json(h, 'committed_metrics'));
  put('released_at_ms', n(h.released_at_ms));
  put('release_reason', h.release_reason);
  put('released_by', json(h, 'released_by'));
  put('expired_at_ms', n(h.expired_at_ms));
  return out;
}

/** When a finished reservation finished (commit, release or expiry), for retention. */
export function finishedAt(h: Hash): number | undefined {
  const v = finalizedAt(h) ?? int(h.expired_at_ms);
  return v === undefined ? undefined : Number(v);
}

// ---------------------------------------------------------------- getReservation

/**
 * The id pins the owning tenant (src/ledger/reservationId.ts). Tenant caller: an id of
 * another tenant is 403 when that tenant holds it, else 404; otherwise the caller's own
 * tenant is read. Admin caller: the pinned tenant is read. EXPIRED → 410. Reads are
 * never blocked by the tenant's status.
 */
export async function getReservation(
  redis: Redis, id: string, caller: { tenant?: string; scopeFilter?: readonly string[] }, opts: RenderOptions = {},
): Promise<Record<string, unknown>> {
  const owner = ownerOf(id);
  let h: Hash | undefined;
  if (caller.tenant !== undefined && owner !== undefined && owner !== caller.tenant) {
    throw await foreignOrMissing(redis, owner, id);
  }
  const tenant = caller.tenant ?? owner;
  if (tenant !== undefined) {
    const found = decodeReservationHash(await redis.hgetall(keys.reservation(tenant, id)));
    if (found.reservation_id) h = found;
  }
  if (!h) throw new ApiError('NOT_FOUND', `Reservation not found: ${id}`);
  requireScopeAllowed(caller.scopeFilter ?? [], h.scope_path ?? '');
  if (h.status === 'EXPIRED') {
    throw new ApiError('RESERVATION_EXPIRED', `Reservation ${id} has expired`);
  }
  return renderReservation(h, new Set(INCLUDE_TOKENS), opts);
}

// ---------------------------------------------------------------- listReservations

export interface Window { lo?: bigint; hi?: bigint }

export interface ListQuery {
  tenant: string;
  idempotencyKey?: string;
  status?: string;
  segments: string[];
  created: Window;
  expires: Window;
  finalized: Window;
  sortBy: SortBy;
  sortDir: SortDir;
  include: ReadonlySet<string>;
  limit: number;
  cursor?: string;
  /** the API key's scope_filter: rows outside it are invisible (empty = all) */
  scopeFilter?: readonly string[];
  /** the evidence issuer base for include=evidence (RenderOptions.serverId) */
  evidenceServerId?: string;
}

export interface ListPage {
  reservations: Record<string, unknown>[];
  next_cursor?: string;
  has_more: boolean;
}

/** ISO 8601 date-time → epoch ms; blank → undefined; garbage → 400. */
export function parseInstant(name: string, v: unknown): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  const s = String(v).trim();
  if (s === '') return undefined;
  // RFC 3339 date-time (the spec's `format: date-time`), offset required.
  if (!/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s)) {
    throw new ApiError('INVALID_REQUEST', `${name} must be an ISO 8601 date-time (e.g. 2026-01-31T12:00:00Z)`);
  }
  const ms = Date.parse(s.replace(' ', 'T'));
  if (!Number.isFinite(ms)) throw new ApiError('INVALID_REQUEST', `${name} is not a valid date-time`);
  return BigInt(ms);
}

export function parseWindow(loName: string, hiName: string, q: Record<string, unknown>): Window {
  const lo = parseInstant(loName, q[loName]);
  const hi = parseInstant(hiName, q[hiName]);
  if (lo !== undefined && hi !== undefined && lo > hi) {
    throw new ApiError('INVALID_REQUEST', `${loName} must not be later than ${hiName}`);
  }
  return { lo, hi };
}

/** `include` CSV (or array from the validator) → recognised tokens; others ignored. */
export function parseInclude(v: unknown): Set<string> {
  const parts = Array.isArray(v) ? v.flatMap((x) => String(x).split(',')) : typeof v === 'string' ? v.split(',') : [];
  const out = new Set<string>();
  for (const p of parts) {
    const t = p.trim();
    if ((INCLUDE_TOKENS as readonly string[]).includes(t)) out.add(t);
  }
  return out;
}

const inWindow = (v: bigint | undefined, w: Window): boolean =>
  (w.lo === undefined || (v !== undefined && v >= w.lo)) && (w.hi === undefined || (v !== undefined && v <= w.hi));

function matches(h: Hash, q: ListQuery): boolean {
  if (!h.reservation_id) return false; // index entry whose hash has been evicted
  if (q.status && h.status !== q.status) return false;
  if (q.idempotencyKey !== undefined && h.idempotency_key !== q.idempotencyKey) return false;
  if (!scopeMatches(h.scope_path ?? '', q.segments)) return false;
  if (q.scopeFilter && !scopeFilterAllows(q.scopeFilter, h.scope_path ?? '')) return false;
  if (!inWindow(int(h.created_at_ms), q.created)) return false;
  if (!inWindow(int(h.expires_at_ms), q.expires)) return false;
  const finBound = q.finalized.lo !== undefined || q.finalized.hi !== undefined;
  if (finBound && !inWindow(finalizedAt(h), q.finalized)) return false;
  return true;
}

const SORT: Record<SortBy, SortKey<Hash>> = {
  reservation_id: { name: 'reservation_id', value: (h) => h.reservation_id },
  // Every row of one listing belongs to one tenant; Subject.tenant may be absent on a
  // tenant-less subject, so the owning tenant is the sort value.
  tenant: { name: 'tenant', value: (h) => h.tenant ?? '' },
  scope_path: { name: 'scope_path', value: (h) => h.scope_path ?? '' },
  status: { name: 'status', value: (h) => h.status ?? '' },
  reserved: { name: 'reserved', value: (h) => int(h.estimate) ?? 0n },
  created_at_ms: { name: 'created_at_ms', value: (h) => int(h.created_at_ms) ?? 0n },
  expires_at_ms: { name: 'expires_at_ms', value: (h) => int(h.expires_at_ms) ?? 0n },
};

const winKey = (w: Window) => `${w.lo ?? ''}..${w.hi ?? ''}`;

/** What the cursor binds: every row-selecting parameter, never `include`. */
function cursorFilters(q: ListQuery): Record<string, unknown> {
  return {
    tenant: q.tenant,
    idempotency_key: q.idempotencyKey,
    status: q.status,
    segments: [...q.segments].sort(),
    scope_filter: [...(q.scopeFilter ?? [])].sort(),
    created: winKey(q.created),
    expires: winKey(q.expires),
    finalized: winKey(q.finalized),
  };
}

async function hydrate(redis: Redis, tenant: string, ids: string[]): Promise<Hash[]> {
  const out: Hash[] = [];
  for (let i = 0; i < ids.length; i += HYDRATE_BATCH) {
    const pipe = redis.pipeline();
    for (const id of ids.slice(i, i + HYDRATE_BATCH)) pipe.hgetall(keys.reservation(tenant, id));
    for (const [err, h] of (await pipe.exec()) ?? []) {
      if (err) throw err;
      out.push(decodeReservationHash(h as Hash));
    }
  }
  return out;
}

const scoreArg = (v: bigint | undefined, inf: string) => (v === undefined ? inf : v.toString());

export async function listReservations(redis: Redis, q: ListQuery): Promise<ListPage> {
  const page = q.sortBy === 'created_at_ms' ? await byCreated(redis, q) : await sortedInMemory(redis, q);
  return {
    reservations: page.rows.map((h) => renderReservation(h, q.include, { serverId: q.evidenceServerId })),
    has_more: page.hasMore,
    ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
  };
}

/**
 * created_at_ms order comes from the index itself: walk it from the cursor in score
 * order, one score-complete chunk at a time (so ties can be ordered by id), hydrate and
 * filter until limit+1 matches or MAX_ROWS_HYDRATED rows were examined. When the bound
 * stops the walk early, the page is returned with a cursor at the last EXAMINED row, so
 * the next request resumes there: pages may be short, but every row is still visited
 * exactly once and the work per request stays bounded.
 */
async function byCreated(redis: Redis, q: ListQuery): Promise<{ rows: Hash[]; nextCursor?: string; hasMore: boolean }> {
  const { after, mint } = openPage<Hash>({ sort: SORT.created_at_ms, dir: q.sortDir, limit: q.limit, filters: cursorFilters(q), cursor: q.cursor });
  const idx = keys.reservationIndex(q.tenant);
  const desc = q.sortDir === 'desc';
  // Score bounds of the walk: the created window, narrowed by the cursor position.
  let lo = q.created.lo;
  let hi = q.created.hi;
  if (after) {
    const v = after.value as bigint;
    if (desc) hi = hi === undefined || v < hi ? v : hi;
    else lo = lo === undefined || v > lo ? v : lo;
  }
  const found: { h: Hash; p: CursorPosition }[] = [];
  let examined = 0;
  let lastExamined: CursorPosition | undefined;
  let exhausted = false;
  let exclusiveEdge = false; // after the first chunk, the edge score has been fully consumed
  while (found.length <= q.limit) {
    if (lo !== undefined && hi !== undefined && lo > hi) { exhausted = true; break; }
    const min = lo === undefined ? '-inf' : (exclusiveEdge && !desc ? '(' : '') + lo.toString();
    const max = hi === undefined ? '+inf' : (exclusiveEdge && desc ? '(' : '') + hi.toString();
    const flat = desc
      ? await redis.zrange(idx, max, min, 'BYSCORE', 'REV', 'LIMIT', 0, INDEX_CHUNK, 'WITHSCORES')
      : await redis.zrange(idx, min, max, 'BYSCORE', 'LIMIT', 0, INDEX_CHUNK, 'WITHSCORES');
    if (flat.length === 0) { exhausted = true; break; }
    let entries: { id: string; score: bigint }[] = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ id: flat[i], score: BigInt(flat[i + 1]) });
    const edge = entries[entries.length - 1].score;
    if (flat.length / 2 === INDEX_CHUNK) {
      // Complete the last score so the chunk holds every member of each score it touches.
      const same = await redis.zrange(idx, edge.toString(), edge.toString(), 'BYSCORE');
      entries = entries.filter((e) => e.score !== edge).concat(same.map((id) => ({ id, score: edge })));
    }
    const positioned = entries
      .map((e) => ({ id: e.id, p: { value: e.score, id: e.id } as CursorPosition }))
      .sort((a, b) => comparePositions(a.p, b.p, q.sortDir))
      .filter((e) => !after || comparePositions(e.p, after, q.sortDir) > 0);
    let stop = false;
    for (let i = 0; i < positioned.length && !stop; i += HYDRATE_BATCH) {
      const batch = positioned.slice(i, i + HYDRATE_BATCH);
      const hashes = await hydrate(redis, q.tenant, batch.map((b) => b.id));
      for (let j = 0; j < batch.length; j++) {
        examined++;
        lastExamined = batch[j].p;
        if (matches(hashes[j], q)) found.push({ h: hashes[j], p: batch[j].p });
        if (found.length > q.limit || examined >= MAX_ROWS_HYDRATED) { stop = true; break; }
      }
    }
    if (stop) break;
    // Next chunk starts strictly beyond this chunk's edge score.
    if (desc) hi = edge; else lo = edge;
    exclusiveEdge = true;
  }
  if (found.length > q.limit) {
    const rows = found.slice(0, q.limit);
    return { rows: rows.map((f) => f.h), hasMore: true, nextCursor: mint(rows[rows.length - 1].p) };
  }
  if (!exhausted && lastExamined) {
    // Scan bound reached: resume after the last examined row.
    return { rows: found.map((f) => f.h), hasMore: true, nextCursor: mint(lastExamined) };
  }
  return { rows: found.map((f) => f.h), hasMore: false };
}

/**
 * Any other sort key needs the whole candidate set in memory: the candidates are the
 * index entries inside the created window; more than MAX_SORT_CANDIDATES → 400 asking
 * the caller to narrow `from`/`to` (or sort by created_at_ms, which has no such bound).
 */
async function sortedInMemory(redis: Redis, q: ListQuery): Promise<{ rows: Hash[]; nextCursor?: string; hasMore: boolean }> {
  const idx = keys.reservationIndex(q.tenant);
  const min = scoreArg(q.created.lo, '-inf');
  const max = scoreArg(q.created.hi, '+inf');
  const count = await redis.zcount(idx, min, max);
  if (count > MAX_SORT_CANDIDATES) {
    throw new ApiError('INVALID_REQUEST',
      `sort_by=${q.sortBy} orders at most ${MAX_SORT_CANDIDATES} reservations per request and ${count} fall in the created-at window; narrow it with from/to, or sort by created_at_ms`,
      { candidates: count, max_candidates: MAX_SORT_CANDIDATES });
  }
  const ids = await redis.zrange(idx, min, max, 'BYSCORE');
  const rows = (await hydrate(redis, q.tenant, ids)).filter((h) => matches(h, q));
  return paginate(rows, {
    sort: SORT[q.sortBy],
    dir: q.sortDir,
    id: (h) => h.reservation_id,
    limit: q.limit,
    filters: cursorFilters(q),
    cursor: q.cursor,
  });
}
