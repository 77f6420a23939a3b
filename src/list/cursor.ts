// Keyset pagination shared by every list endpoint (runtime and admin planes).
//
// A cursor is an opaque base64url token that records WHERE the previous page ended,
// never HOW MANY rows came before it: {sort key, sort direction, hash of the filter set,
// last sort value, last id}. The next page is "every matching row strictly after
// (last value, last id) in the sort order". Rows inserted or deleted between pages
// therefore never shift the window: no row is returned twice, and every row that existed
// for the whole walk is returned exactly once (offsets would do neither).
//
// Order: primary by the sort value in the requested direction, ties by id ASCENDING in
// both directions (so equal sort values have one total order that does not depend on
// storage order).
//
// A cursor is bound to the sort key, direction and the canonical filter set (whatever the
// endpoint declares as row-selecting: filters, time windows; NOT projections such as
// `include`). Reusing it under a different binding is a 400, as is any token that does
// not decode to a well-formed cursor. The embedded check tag catches corrupted or edited
// tokens; it is not a security boundary (a cursor grants nothing the caller could not
// already list), so no server secret is involved and every instance accepts every cursor.
import { createHash } from 'node:crypto';
import { ApiError } from '../errors';

export const CURSOR_VERSION = 1;
/** Bounds of the shared `Limit` parameter (runtime and admin specs: 1..200, default 50). */
export const LIMIT_MIN = 1;
export const LIMIT_MAX = 200;
export const LIMIT_DEFAULT = 50;
/** Most rows one list page returns. A `limit` above it is clamped, not refused: where the
 *  spec sets a maximum, spec validation has already enforced it; where it sets none
 *  (listBudgets, listPolicies, listApiKeys, listAuditLogs), any positive integer is valid
 *  and the rest comes through has_more/next_cursor (decision D18). */
export const PAGE_CAP = 1000;
/** Longer tokens are rejected before decoding (a cursor is ~200 bytes; ids are ≤ 256). */
export const CURSOR_MAX_CHARS = 2048;

export type SortDir = 'asc' | 'desc';
/** Sort values: strings compare by UTF-16 code units, integers exactly (int64 as bigint). */
export type SortValue = string | bigint;

export interface SortKey<T> {
  /** sort key name as it appears on the wire (`sort_by`), bound into the cursor */
  name: string;
  value(row: T): SortValue;
}

export interface CursorPosition {
  value: SortValue;
  id: string;
}

interface CursorBody {
  v: number;
  sb: string;
  sd: SortDir;
  fh: string;
  /** last sort value; `t` says how to read it back */
  lv: string;
  t: 's' | 'i';
  lid: string;
  k: string;
}

const bad = (why: string) => new ApiError('INVALID_REQUEST', `Invalid cursor: ${why}`);

/**
 * Canonical hash of the row-selecting parameters. Absent, null and '' are the same
 * (blank query values mean "unset"), key order does not matter.
 */
export function filterHash(filters: Record<string, unknown>): string {
  const canon: Record<string, string> = {};
  for (const k of Object.keys(filters).sort()) {
    const v = filters[k];
    if (v === undefined || v === null || v === '') continue;
    canon[k] = Array.isArray(v) ? v.map(String).join('\u0000') : String(v);
  }
  return createHash('sha256').update(JSON.stringify(canon)).digest('hex').slice(0, 16);
}

function checkTag(b: Omit<CursorBody, 'k'>): string {
  return createHash('sha256')
    .update(JSON.stringify([b.v, b.sb, b.sd, b.fh, b.lv, b.t, b.lid]))
    .digest('base64url')
    .slice(0, 12);
}

export function encodeCursor(sortBy: string, sortDir: SortDir, fh: string, pos: CursorPosition): string {
  const base = {
    v: CURSOR_VERSION,
    sb: sortBy,
    sd: sortDir,
    fh,
    lv: typeof pos.value === 'bigint' ? pos.value.toString() : pos.value,
    t: typeof pos.value === 'bigint' ? ('i' as const) : ('s' as const),
    lid: pos.id,
  };
  const body: CursorBody = { ...base, k: checkTag(base) };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
}

/**
 * Decodes a cursor and checks it was minted for this sort and filter set.
 * Every failure is 400 INVALID_REQUEST; an absent/blank cursor returns undefined.
 */
export function decodeCursor(
  raw: string | undefined,
  expect: { sortBy: string; sortDir: SortDir; filterHash: string },
): CursorPosition | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (raw.length > CURSOR_MAX_CHARS) throw bad('too long');
  if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw bad('not a base64url token');
  let body: CursorBody;
  try {
    body = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as CursorBody;
  } catch {
    throw bad('not decodable');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('not decodable');
  const { v, sb, sd, fh, lv, t, lid, k } = body;
  if (v !== CURSOR_VERSION) throw bad('unsupported version');
  if (typeof sb !== 'string' || (sd !== 'asc' && sd !== 'desc') || typeof fh !== 'string'
    || typeof lv !== 'string' || (t !== 's' && t !== 'i') || typeof lid !== 'string' || typeof k !== 'string') {
    throw bad('malformed');
  }
  if (t === 'i' && !/^-?\d{1,19}$/.test(lv)) throw bad('malformed sort value');
  if (checkTag({ v, sb, sd, fh, lv, t, lid }) !== k) throw bad('check tag mismatch (corrupted or edited)');
  if (sb !== expect.sortBy || sd !== expect.sortDir) {
    throw bad(`it was issued for sort ${sb} ${sd}, this request sorts by ${expect.sortBy} ${expect.sortDir}`);
  }
  if (fh !== expect.filterHash) {
    throw bad('it was issued for a different set of filters or time windows; restart pagination without a cursor');
  }
  return { value: t === 'i' ? BigInt(lv) : lv, id: lid };
}

function cmpValue(a: SortValue, b: SortValue): number {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  // Mixed kinds never happen for one sort key; order strings after integers to stay total.
  if (typeof a === 'bigint') return -1;
  if (typeof b === 'bigint') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Total order of (value, id) positions: value in `dir`, ties by id ascending. */
export function comparePositions(a: CursorPosition, b: CursorPosition, dir: SortDir): number {
  const c = cmpValue(a.value, b.value);
  if (c !== 0) return dir === 'asc' ? c : -c;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export interface PageRequest<T> {
  sort: SortKey<T>;
  dir: SortDir;
  id(row: T): string;
  limit: number;
  /** row-selecting parameters bound into the cursor */
  filters: Record<string, unknown>;
  cursor?: string;
}

export interface Page<T> {
  rows: T[];
  nextCursor?: string;
  hasMore: boolean;
}

/** Cursor validation + the comparator an endpoint needs to page a candidate set itself. */
export function openPage<T>(req: Omit<PageRequest<T>, 'id'>) {
  const fh = filterHash(req.filters);
  const after = decodeCursor(req.cursor, { sortBy: req.sort.name, sortDir: req.dir, filterHash: fh });
  return {
    fh,
    after,
    mint: (pos: CursorPosition) => encodeCursor(req.sort.name, req.dir, fh, pos),
  };
}

/**
 * Pages an in-memory candidate set (already filtered): sort, skip to the cursor, take
 * `limit`. `has_more` is true only when a further matching row exists, and then
 * `next_cursor` is set.
 */
export function paginate<T>(rows: readonly T[], req: PageRequest<T>): Page<T> {
  const { after, mint } = openPage(req);
  const pos = (r: T): CursorPosition => ({ value: req.sort.value(r), id: req.id(r) });
  const sorted = rows.map((r) => ({ r, p: pos(r) })).sort((a, b) => comparePositions(a.p, b.p, req.dir));
  const rest = after ? sorted.filter((x) => comparePositions(x.p, after, req.dir) > 0) : sorted;
  const take = rest.slice(0, req.limit);
  const hasMore = rest.length > req.limit;
  return {
    rows: take.map((x) => x.r),
    hasMore,
    ...(hasMore ? { nextCursor: mint(take[take.length - 1].p) } : {}),
  };
}

/** Query `limit` after spec validation (default when absent): not a positive integer → 400;
 *  above PAGE_CAP → PAGE_CAP. */
export function parseLimit(v: unknown): number {
  if (v === undefined || v === null || v === '') return LIMIT_DEFAULT;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isSafeInteger(n) || n < LIMIT_MIN) {
    throw new ApiError('INVALID_REQUEST', `limit must be a positive integer (got ${String(v).slice(0, 32)})`);
  }
  return Math.min(n, PAGE_CAP);
}
