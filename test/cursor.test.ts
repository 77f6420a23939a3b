// src/list/cursor.ts: encoding, binding, tamper detection, keyset order and pagination.
import { describe, expect, it } from 'vitest';
import {
  comparePositions, decodeCursor, encodeCursor, filterHash, paginate, parseLimit, LIMIT_MAX, PAGE_CAP,
  type SortKey,
} from '../src/list/cursor';
import { ApiError } from '../src/errors';

interface Row { id: string; v: bigint; s: string }
const byV: SortKey<Row> = { name: 'v', value: (r) => r.v };
const byS: SortKey<Row> = { name: 's', value: (r) => r.s };

function expect400(f: () => unknown, msg?: RegExp) {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).status).toBe(400);
    expect((e as ApiError).code).toBe('INVALID_REQUEST');
    if (msg) expect((e as ApiError).message).toMatch(msg);
    return;
  }
  throw new Error('expected a 400');
}

function walkAll(rows: Row[], sort: SortKey<Row>, dir: 'asc' | 'desc', limit: number, filters = {}) {
  const out: Row[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 10_000; i++) {
    const p = paginate(rows, { sort, dir, id: (r) => r.id, limit, filters, cursor });
    out.push(...p.rows);
    expect(p.hasMore).toBe(p.nextCursor !== undefined);
    if (!p.nextCursor) return out;
    cursor = p.nextCursor;
  }
  throw new Error('did not terminate');
}

describe('cursor encoding and binding', () => {
  const fh = filterHash({ status: 'ACTIVE' });

  it('round-trips string and exact int64 positions', () => {
    const big = 2n ** 63n - 1n;
    const c = encodeCursor('v', 'desc', fh, { value: big, id: 'r|1' });
    expect(c).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(c, { sortBy: 'v', sortDir: 'desc', filterHash: fh })).toEqual({ value: big, id: 'r|1' });
    const s = encodeCursor('s', 'asc', fh, { value: 'tenant:a/x', id: 'x' });
    expect(decodeCursor(s, { sortBy: 's', sortDir: 'asc', filterHash: fh })).toEqual({ value: 'tenant:a/x', id: 'x' });
    expect(decodeCursor(undefined, { sortBy: 's', sortDir: 'asc', filterHash: fh })).toBeUndefined();
    expect(decodeCursor('', { sortBy: 's', sortDir: 'asc', filterHash: fh })).toBeUndefined();
  });

  it('rejects a cursor used with another sort key, direction or filter set', () => {
    const c = encodeCursor('v', 'desc', fh, { value: 5n, id: 'a' });
    expect400(() => decodeCursor(c, { sortBy: 's', sortDir: 'desc', filterHash: fh }), /sort/);
    expect400(() => decodeCursor(c, { sortBy: 'v', sortDir: 'asc', filterHash: fh }), /sort/);
    expect400(() => decodeCursor(c, { sortBy: 'v', sortDir: 'desc', filterHash: filterHash({ status: 'COMMITTED' }) }), /filters/);
  });

  it('filter hash: key order and blank/absent values do not matter; values do', () => {
    expect(filterHash({ a: '1', b: undefined, c: '' })).toBe(filterHash({ a: '1' }));
    expect(filterHash({ a: '1', z: '2' })).toBe(filterHash({ z: '2', a: '1' }));
    expect(filterHash({ a: '1' })).not.toBe(filterHash({ a: '2' }));
    expect(filterHash({ a: ['x', 'y'] })).not.toBe(filterHash({ a: ['xy'] }));
  });

  it('garbage, wrong version, edited payload and oversize tokens are 400', () => {
    const good = encodeCursor('v', 'asc', fh, { value: 1n, id: 'a' });
    const exp = { sortBy: 'v', sortDir: 'asc' as const, filterHash: fh };
    for (const bad of ['!!!', 'not json at all', Buffer.from('[]').toString('base64url'),
      Buffer.from('{"v":2}').toString('base64url'), 'A'.repeat(5000)]) {
      expect400(() => decodeCursor(bad, exp));
    }
    const body = JSON.parse(Buffer.from(good, 'base64url').toString());
    const edited = Buffer.from(JSON.stringify({ ...body, lid: 'b' })).toString('base64url');
    expect400(() => decodeCursor(edited, exp), /check tag/);
    const badInt = Buffer.from(JSON.stringify({ ...body, lv: '1e5' })).toString('base64url');
    expect400(() => decodeCursor(badInt, exp));
  });

  it('limit bounds follow the spec (1..200, default 50)', () => {
    expect(parseLimit(undefined)).toBe(50);
    expect(parseLimit(1)).toBe(1);
    expect(parseLimit(LIMIT_MAX)).toBe(200);
    expect(parseLimit('7')).toBe(7);
    // no upper bound of its own: spec maxima are enforced by spec validation (D18)
    expect(parseLimit(201)).toBe(201);
    expect(parseLimit(2000)).toBe(PAGE_CAP);
    expect(parseLimit(Number.MAX_SAFE_INTEGER)).toBe(PAGE_CAP);
    for (const bad of [0, -1, 1.5, 'x', 1e300]) expect400(() => parseLimit(bad));
  });
});

describe('keyset order and pagination', () => {
  it('ties break by id ascending in both directions; integers compare exactly beyond 2^53', () => {
    const a = { value: 2n ** 53n + 1n, id: 'b' };
    const b = { value: 2n ** 53n, id: 'a' };
    expect(comparePositions(a, b, 'asc')).toBeGreaterThan(0);
    expect(comparePositions(a, b, 'desc')).toBeLessThan(0);
    const t1 = { value: 5n, id: 'a' };
    const t2 = { value: 5n, id: 'b' };
    expect(comparePositions(t1, t2, 'asc')).toBeLessThan(0);
    expect(comparePositions(t1, t2, 'desc')).toBeLessThan(0);
  });

  // Seeded pseudo-random cases (mulberry32), so failures reproduce.
  function rng(seed: number) {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const pick = <T,>(r: () => number, xs: readonly T[]) => xs[Math.floor(r() * xs.length)];

  it('random static sets, any limit: every row exactly once, in sorted order', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const count = Math.floor(r() * 40);
      const rows: Row[] = Array.from({ length: count }, (_, i) => ({
        id: `${pick(r, ['a', 'b', 'c'])}${i}`, v: BigInt(Math.floor(r() * 7) - 3), s: pick(r, ['a', 'b', 'a/b']),
      }));
      const limit = 1 + Math.floor(r() * 7);
      const dir = pick(r, ['asc', 'desc'] as const);
      const sort = r() < 0.5 ? byS : byV;
      const got = walkAll(rows, sort, dir, limit);
      const want = [...rows].sort((x, y) => comparePositions(
        { value: sort.value(x), id: x.id }, { value: sort.value(y), id: y.id }, dir));
      expect(got.map((x) => x.id), `seed ${seed}`).toEqual(want.map((x) => x.id));
    }
  });

  it('rows inserted and deleted between pages never cause duplicates; survivors are all visited', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      let rows: Row[] = Array.from({ length: 1 + Math.floor(r() * 30) }, (_, i) => ({
        id: `i${String(i).padStart(2, '0')}`, v: BigInt(Math.floor(r() * 6)), s: '',
      }));
      const survivors = new Set(rows.map((x) => x.id));
      const limit = 1 + Math.floor(r() * 4);
      const dir = pick(r, ['asc', 'desc'] as const);
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let step = 0; ; step++) {
        const p = paginate(rows, { sort: byV, dir, id: (x) => x.id, limit, filters: {}, cursor });
        seen.push(...p.rows.map((x) => x.id));
        if (!p.nextCursor) break;
        cursor = p.nextCursor;
        for (let k = Math.floor(r() * 3); k > 0; k--) {
          if (r() < 0.3 && rows.length > 0) {
            const victim = pick(r, rows);
            rows = rows.filter((x) => x !== victim);
            survivors.delete(victim.id);
          } else rows = [...rows, { id: `n${step}-${k}`, v: BigInt(Math.floor(r() * 8) - 1), s: '' }];
        }
      }
      expect(new Set(seen).size, `seed ${seed}`).toBe(seen.length);
      for (const id of survivors) expect(seen, `seed ${seed}`).toContain(id);
    }
  });
});
