// Pure parts of the cold export: UTC day arithmetic and closure (src/export/days.ts), and the
// SCAN-free pager over a time index (zsetPages) — complete and in (score, member) order even
// when runs of equal scores cross page boundaries (src/export/classes.ts, DX4).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { zsetPages } from '../src/export/classes';
import { CLOSE_MARGIN_MS, DAY_MS, dayOf, dayStart, daysOf, isClosed, nextDay } from '../src/export/days';

let r: TestRedis;
beforeAll(async () => { r = await startTestRedis(); }, 30_000);
afterAll(async () => { await r?.stop(); });

describe('UTC days', () => {
  it('parses, formats and walks days; refuses non-dates', () => {
    expect(dayStart('2026-03-01')).toBe(Date.UTC(2026, 2, 1));
    expect(dayOf(Date.UTC(2026, 2, 1) - 1)).toBe('2026-02-28');
    expect(nextDay('2024-02-28')).toBe('2024-02-29');
    expect([...daysOf('2025-12-30', '2026-01-02')]).toEqual(['2025-12-30', '2025-12-31', '2026-01-01', '2026-01-02']);
    for (const bad of ['2026-02-30', '2026-13-01', '26-01-01', '2026-1-1', '']) expect(() => dayStart(bad), bad).toThrow(/not a date/);
  });
  it('a day is closed only CLOSE_MARGIN_MS after its end', () => {
    const end = dayStart('2026-01-02');
    expect(isClosed('2026-01-01', end)).toBe(false);
    expect(isClosed('2026-01-01', end + CLOSE_MARGIN_MS - 1)).toBe(false);
    expect(isClosed('2026-01-01', end + CLOSE_MARGIN_MS)).toBe(true);
    expect(DAY_MS).toBe(86_400_000);
  });
});

describe('zsetPages', () => {
  it('yields every entry of [lo, hi) once, ordered by (score, member), across runs of equal scores', async () => {
    const key = 'pager';
    const want: [number, string][] = [];
    // scores 100..109, each with 1..7 members; a page of 3 cuts through most runs
    for (let s = 100; s < 110; s++) {
      for (let i = 0; i < (s % 7) + 1; i++) want.push([s, `m${String.fromCharCode(122 - i)}${s}`]);
    }
    await r.client.zadd(key, ...want.flatMap(([s, m]) => [s, m]));
    await r.client.zadd(key, 99, 'before', 110, 'at-hi');
    const got: [number, string][] = [];
    for await (const page of zsetPages(r.client, key, 100, 110, 3)) for (const e of page) got.push([e.score, e.member]);
    const sorted = [...want].sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    expect(got).toEqual(sorted);
    // an empty range yields nothing
    const none = [];
    for await (const page of zsetPages(r.client, key, 200, 300)) none.push(page);
    expect(none).toEqual([]);
  });
});
