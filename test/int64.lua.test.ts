// Tests for src/store/lua/int64.lua (run inside a real private redis-server),
// the script loader (src/store/scripts.ts) and the process manager
// (src/store/redisProcess.ts).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LUA_DIR, loadScript, runScript } from '../src/store/scripts';
import { startRedisServer } from '../src/store/redisProcess';
import { startTestRedis, type TestRedis } from './helpers/redis';

const MAX = (1n << 63n) - 1n;
const MIN = -(1n << 63n);
const P53 = 1n << 53n;

const LIB = readFileSync(join(LUA_DIR, 'int64.lua'), 'utf8');

// Harness appended to the library: ARGV[1] picks the operation.
// `or false` because a nil inside a Lua table would truncate the reply array.
const HARNESS = `${LIB}
local op = ARGV[1]
if op == 'batch' then
  local out = {}
  for i = 2, #ARGV, 2 do
    local a, b = ARGV[i], ARGV[i + 1]
    out[#out + 1] = i64_add(a, b) or false
    out[#out + 1] = i64_sub(a, b) or false
    out[#out + 1] = i64_add(b, a) or false -- commutes
    out[#out + 1] = i64_sub(a, b) or false
    out[#out + 1] = i64_cmp(a, b)
    out[#out + 1] = i64_min(a, b)
    out[#out + 1] = i64_max(a, b)
  end
  return out
end
local fns = {
  norm = i64_norm, cmp = i64_cmp, add = i64_add, sub = i64_sub, min = i64_min, max = i64_max,
  is_neg = i64_is_neg, is_pos = i64_is_pos,
}
local r = fns[op](ARGV[2], ARGV[3])
if r == nil then return false end
if r == true then return 1 end
if r == false then return 0 end
return r
`;

let r: TestRedis;
beforeAll(async () => {
  r = await startTestRedis();
});
afterAll(async () => {
  await r?.stop();
});

async function call(op: string, a: string, b?: string): Promise<unknown> {
  const args = b === undefined ? [op, a] : [op, a, b];
  return r.client.eval(HARNESS, 0, ...args);
}

/** Expected int64 result as a string, or null when it overflows. */
const fit = (x: bigint): string | null => (x > MAX || x < MIN ? null : x.toString());

// Small deterministic PRNG (xorshift32) so failures are reproducible.
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

function randomInt64(rand: () => number): bigint {
  for (;;) {
    const kind = rand();
    let v: bigint;
    if (kind < 0.35) {
      // fast-path sized: up to 15 digits
      const len = 1 + Math.floor(rand() * 15);
      let d = '';
      for (let i = 0; i < len; i++) d += Math.floor(rand() * 10);
      v = BigInt(d);
    } else if (kind < 0.75) {
      // 16..19 digits: only the digit path handles these
      const len = 16 + Math.floor(rand() * 4);
      let d = String(1 + Math.floor(rand() * 9));
      for (let i = 1; i < len; i++) d += Math.floor(rand() * 10);
      v = BigInt(d);
    } else {
      // near interesting boundaries
      const anchors = [MAX, MIN, P53, -P53, 0n, 10n ** 15n, 10n ** 18n];
      v = anchors[Math.floor(rand() * anchors.length)] + BigInt(Math.floor(rand() * 7) - 3);
    }
    if (rand() < 0.5) v = -v;
    if (v <= MAX && v >= MIN) return v;
  }
}

describe('int64.lua library shape', () => {
  it('has no top-level return and no KEYS/ARGV use (it is prepended to scripts)', () => {
    const code = LIB.split('\n')
      .map((l) => l.replace(/--.*$/, ''))
      .join('\n');
    expect(code).not.toMatch(/^return\b/m);
    expect(code).not.toMatch(/\b(KEYS|ARGV)\b/);
    // Everything at column 0 is a local definition, `end`, or blank.
    for (const line of code.split('\n')) {
      if (/^\S/.test(line)) expect(line).toMatch(/^(local\b|end\b)/);
    }
  });
});

describe('i64_norm', () => {
  it('accepts canonical values and int64 boundaries', async () => {
    for (const s of ['0', '1', '-1', '42', '9007199254740991', '9007199254740992', '9007199254740993',
      '9223372036854775807', '-9223372036854775808', '-9223372036854775807']) {
      expect(await call('norm', s)).toBe(s);
    }
  });

  it('treats "-0" as "0" (valid JSON integer grammar)', async () => {
    expect(await call('norm', '-0')).toBe('0');
  });

  it('rejects malformed strings', async () => {
    for (const s of ['', '-', '01', '-01', '00', '+1', '1.0', '1e3', ' 1', '1 ', '0x10', 'abc', '1-', '--1', '-00']) {
      expect(await call('norm', s), JSON.stringify(s)).toBeNull();
    }
  });

  it('rejects values outside int64', async () => {
    for (const s of ['9223372036854775808', '-9223372036854775809', '10000000000000000000', '-99999999999999999999',
      '123456789012345678901234567890']) {
      expect(await call('norm', s), s).toBeNull();
    }
  });
});

describe('i64 arithmetic', () => {
  it('adds and subtracts across the 2^53 boundary exactly', async () => {
    expect(await call('add', '9007199254740991', '1')).toBe('9007199254740992');
    expect(await call('add', '9007199254740992', '1')).toBe('9007199254740993');
    expect(await call('sub', '9007199254740993', '1')).toBe('9007199254740992');
    expect(await call('add', '-9007199254740993', '-1')).toBe('-9007199254740994');
    expect(await call('sub', '9007199254740993', '9007199254740992')).toBe('1');
  });

  it('reaches the int64 limits but never overflows (nil, never wraps)', async () => {
    expect(await call('add', '9223372036854775806', '1')).toBe('9223372036854775807');
    expect(await call('add', '9223372036854775807', '1')).toBeNull();
    expect(await call('add', '9223372036854775807', '9223372036854775807')).toBeNull();
    expect(await call('sub', '-9223372036854775807', '1')).toBe('-9223372036854775808');
    expect(await call('sub', '-9223372036854775808', '1')).toBeNull();
    expect(await call('add', '-9223372036854775808', '-1')).toBeNull();
    expect(await call('add', '-9223372036854775808', '-9223372036854775808')).toBeNull();
    expect(await call('sub', '0', '-9223372036854775808')).toBeNull(); // -MIN does not fit
    expect(await call('sub', '-1', '-9223372036854775808')).toBe('9223372036854775807');
    expect(await call('sub', '9223372036854775807', '-9223372036854775808')).toBeNull();
    expect(await call('add', '9223372036854775807', '-9223372036854775808')).toBe('-1');
    expect(await call('sub', '-9223372036854775808', '-9223372036854775808')).toBe('0');
  });

  it('handles signs and zero', async () => {
    expect(await call('add', '0', '0')).toBe('0');
    expect(await call('sub', '0', '0')).toBe('0');
    expect(await call('sub', '5', '5')).toBe('0');
    expect(await call('add', '-5', '5')).toBe('0');
    expect(await call('sub', '3', '5')).toBe('-2');
    expect(await call('sub', '-3', '-5')).toBe('2');
    expect(await call('add', '-100000000000000000', '99999999999999999')).toBe('-1');
    expect(await call('sub', '1000000000000000000', '1')).toBe('999999999999999999');
  });

  it('compares, min, max, sign predicates', async () => {
    expect(await call('cmp', '9007199254740993', '9007199254740992')).toBe(1);
    expect(await call('cmp', '-9223372036854775808', '9223372036854775807')).toBe(-1);
    expect(await call('cmp', '-5', '-40')).toBe(1);
    expect(await call('cmp', '0', '0')).toBe(0);
    expect(await call('cmp', '9', '10')).toBe(-1);
    expect(await call('min', '-1', '0')).toBe('-1');
    expect(await call('max', '9223372036854775806', '9223372036854775807')).toBe('9223372036854775807');
    expect(await call('is_neg', '-1')).toBe(1);
    expect(await call('is_neg', '0')).toBe(0);
    expect(await call('is_neg', '-9223372036854775808')).toBe(1);
    expect(await call('is_pos', '0')).toBe(0);
    expect(await call('is_pos', '1')).toBe(1);
    expect(await call('is_pos', '-1')).toBe(0);
    expect(await call('is_pos', '9223372036854775807')).toBe(1);
  });

  it('raises a script error on non-canonical operands instead of guessing', async () => {
    await expect(call('add', '01', '1')).rejects.toThrow(/not a canonical int64/);
    await expect(call('add', '1', '9223372036854775808')).rejects.toThrow(/not a canonical int64/);
    await expect(call('cmp', '-0', '0')).rejects.toThrow(/not a canonical int64/);
    await expect(call('sub', '1.5', '1')).rejects.toThrow(/not a canonical int64/);
  });

  it('matches BigInt on random pairs (short and long operands)', async () => {
    const rand = rng(0xc0ffee);
    const PAIRS = 4000;
    const BATCH = 500;
    let fastPairs = 0;
    for (let done = 0; done < PAIRS; done += BATCH) {
      const pairs: [bigint, bigint][] = [];
      const argv: string[] = ['batch'];
      for (let i = 0; i < BATCH; i++) {
        const a = randomInt64(rand);
        const b = randomInt64(rand);
        pairs.push([a, b]);
        argv.push(a.toString(), b.toString());
        if (a.toString().length <= 15 && b.toString().length <= 15) fastPairs++;
      }
      const out = (await r.client.eval(HARNESS, 0, ...argv)) as (string | number | null)[];
      expect(out.length).toBe(BATCH * 7);
      pairs.forEach(([a, b], i) => {
        const got = out.slice(i * 7, i * 7 + 7);
        const want = [fit(a + b), fit(a - b), fit(a + b), fit(a - b), a < b ? -1 : a > b ? 1 : 0,
          (a < b ? a : b).toString(), (a > b ? a : b).toString()];
        expect(got, `a=${a} b=${b}`).toEqual(want);
      });
    }
    // Make sure the random mix has both short (< 10^15) and long operands.
    expect(fastPairs).toBeGreaterThan(200);
    expect(fastPairs).toBeLessThan(PAIRS - 200);
  });
});

describe('scripts.ts', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cycles-lua-'));
    writeFileSync(join(dir, 'helper.lua'), 'local function helper_double(x) return i64_add(x, x) end\n');
    writeFileSync(
      join(dir, 'calc.lua'),
      '-- test script\n-- @include helper.lua\n\nreturn { i64_add(ARGV[1], ARGV[2]) or false, helper_double(ARGV[1]) or false, KEYS[1] }\n',
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prepends int64.lua and includes, caches per process', () => {
    const s = loadScript('calc', dir);
    expect(s.name).toBe('calc');
    expect(s.sha).toMatch(/^[0-9a-f]{40}$/);
    const iLib = s.source.indexOf('local function i64_add');
    const iHelper = s.source.indexOf('helper_double(x)');
    const iMain = s.source.indexOf('return { i64_add');
    expect(iLib).toBeGreaterThanOrEqual(0);
    expect(iLib).toBeLessThan(iHelper);
    expect(iHelper).toBeLessThan(iMain);
    expect(loadScript('calc', dir)).toBe(s);
    expect(() => loadScript('../etc/passwd')).toThrow(/invalid Lua script name/);
  });

  it('runs via EVALSHA and recovers from NOSCRIPT after SCRIPT FLUSH', async () => {
    const s = loadScript('calc', dir);
    expect(await r.client.script('LOAD', s.source)).toBe(s.sha); // our SHA1 = Redis' SHA1
    expect(await runScript(r.client, s, ['k'], ['9007199254740993', 1])).toEqual([
      '9007199254740994',
      '18014398509481986',
      'k',
    ]);

    await r.client.script('FLUSH');
    await r.client.config('RESETSTAT');
    expect(await r.client.script('EXISTS', s.sha)).toEqual([0]);
    expect(await runScript(r.client, s, ['k2'], ['9223372036854775807', '1'])).toEqual([
      null,
      null,
      'k2',
    ]);
    expect(await r.client.script('EXISTS', s.sha)).toEqual([1]);
    // Second run needs no reload.
    await runScript(r.client, s, ['k3'], ['1', '2']);
    const stats = (await r.client.info('commandstats')) as string;
    expect(stats).toMatch(/cmdstat_script\|load:calls=1,/);
  });

  it('propagates script errors other than NOSCRIPT', async () => {
    const s = loadScript('calc', dir);
    await expect(runScript(r.client, s, ['k'], ['01', '1'])).rejects.toThrow(/not a canonical int64/);
  });
});

describe('redisProcess.ts', () => {
  it('starts a private server that answers PING', async () => {
    expect(await r.client.ping()).toBe('PONG');
    expect(r.url).toBe(`redis://127.0.0.1:${r.port}`);
    expect(r.server.pid).toBeGreaterThan(0);
    expect(r.port).not.toBe(6379);
  });

  it('keeps data across stop/start with AOF', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cycles-aof-'));
    try {
      const a = await startRedisServer({ dataDir, port: 0 });
      const c1 = new Redis(a.url);
      await c1.set('ledger', '9223372036854775807');
      await c1.quit();
      await a.stop();
      expect(await a.exited).toBe(0);
      await a.stop(); // idempotent

      const b = await startRedisServer({ dataDir, port: 0 });
      const c2 = new Redis(b.url);
      expect(await c2.get('ledger')).toBe('9223372036854775807');
      await c2.quit();
      await b.stop();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('keeps fsynced data across kill -9 (restart helper)', async () => {
    const t = await startTestRedis({ appendfsync: 'always' });
    try {
      await t.client.set('crash', '1');
      const oldPid = t.server.pid;
      await t.restart();
      expect(t.server.pid).not.toBe(oldPid);
      expect(t.server.port).toBe(t.port);
      expect(await t.client.get('crash')).toBe('1');
    } finally {
      await t.stop();
    }
  });

  it('explains how to get redis-server when the binary is missing', async () => {
    const saved = process.env.REDIS_SERVER_BIN;
    const dataDir = mkdtempSync(join(tmpdir(), 'cycles-nobin-'));
    process.env.REDIS_SERVER_BIN = '/nonexistent/redis-server';
    try {
      const err = await startRedisServer({ dataDir }).then(
        () => null,
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toMatch(/redis-server was not found/);
      expect(err!.message).toMatch(/apt-get install redis-server/);
      expect(err!.message).toMatch(/brew install redis/);
      expect(err!.message).toMatch(/REDIS_URL/);
    } finally {
      if (saved === undefined) delete process.env.REDIS_SERVER_BIN;
      else process.env.REDIS_SERVER_BIN = saved;
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('fails with the log tail when a fixed port is taken', async () => {
    // Drop connections at once so our PING probes never hang on the blocker.
    const blocker: Server = createServer((sock) => sock.destroy());
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', () => res()));
    const port = (blocker.address() as { port: number }).port;
    const dataDir = mkdtempSync(join(tmpdir(), 'cycles-busy-'));
    try {
      await expect(startRedisServer({ dataDir, port })).rejects.toThrow(/Address already in use/i);
    } finally {
      await new Promise((res) => blocker.close(res));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
