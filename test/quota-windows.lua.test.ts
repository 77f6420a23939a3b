// The calendar buckets of the v0.1.26 quota windows (src/store/lua/quota_common.lua) are
// computed inside Redis from Redis TIME (one clock for every server process). They must
// equal the UTC calendar: checked here against JavaScript's Date for boundary instants
// (minute/hour/day/month/year ends, leap days, centuries) and many random ones.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LUA_DIR } from '../src/store/scripts';
import { startTestRedis, type TestRedis } from './helpers/redis';

const LIB = readFileSync(join(LUA_DIR, 'quota_common.lua'), 'utf8');
const HARNESS = `${LIB}
local out = {}
for i = 1, #ARGV do
  local ms = tonumber(ARGV[i])
  out[#out + 1] = quota_window_key('per_minute_tumbling', ms, '')
  out[#out + 1] = quota_window_key('per_hour_tumbling', ms, '')
  out[#out + 1] = quota_window_key('per_day_tumbling', ms, '')
  out[#out + 1] = quota_window_key('per_tenant_per_day', ms, '')
end
out[#out + 1] = quota_window_key('per_run', 0, 'run-7')
out[#out + 1] = tostring(quota_window_key('per_run', 0, ''))
return out`;

let r: TestRedis;
beforeAll(async () => { r = await startTestRedis(); }, 30_000);
afterAll(async () => { await r?.stop(); });

describe('quota_window_key', () => {
  it('matches the UTC calendar at boundaries and at random instants', async () => {
    const boundaries = [
      '1970-01-01T00:00:00.000Z', '1999-12-31T23:59:59.999Z', '2000-01-01T00:00:00.000Z', '2000-02-29T12:00:00.000Z',
      '2024-02-29T23:59:59.999Z', '2024-03-01T00:00:00.000Z', '2026-04-09T14:32:59.999Z', '2026-04-09T14:33:00.000Z',
      '2026-12-31T23:59:59.999Z', '2027-01-01T00:00:00.000Z', '2100-02-28T23:59:59.999Z', '2100-03-01T00:00:00.000Z',
      '2400-02-29T00:00:00.000Z', '9999-12-31T23:59:59.999Z',
    ].map((s) => Date.parse(s));
    let seed = 7;
    const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
    const random = Array.from({ length: 400 }, () => Math.floor(rnd() * Date.parse('2300-01-01T00:00:00Z')));
    const all = [...boundaries, ...random];
    const got = await r.client.eval(HARNESS, 0, ...all.map(String)) as string[];
    all.forEach((ms, i) => {
      const iso = new Date(ms).toISOString();
      expect(got.slice(i * 4, i * 4 + 4), iso).toEqual([iso.slice(0, 16), iso.slice(0, 13), iso.slice(0, 10), iso.slice(0, 10)]);
    });
    expect(got.slice(-2)).toEqual(['run-7', 'nil']);
  });
});
