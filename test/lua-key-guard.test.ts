// The declared-keys guard (docs/decisions.md DK19–DK21): with CYCLES_LUA_KEY_GUARD=1 (set for
// every suite by vitest.config.ts) a script that touches a key it did not declare in KEYS
// fails with "undeclared key <k> in <script>"; off, the scripts are byte-for-byte the
// production ones. Keys share one hash tag so the file also runs on a cluster.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KEY_GUARD_EXEMPT, LUA_DIR, loadScript, luaKeyGuardOn, runScript, setLuaKeyGuard } from '../src/store/scripts';
import { startTestRedis, type TestRedis } from './helpers/redis';

let r: TestRedis;
let dir: string;
const A = '{g}:a';
const B = '{g}:b';
const C = '{g}:c';

beforeAll(async () => {
  r = await startTestRedis();
  dir = mkdtempSync(join(tmpdir(), 'cycles-guard-'));
  // ARGV is the command: one script exercises every key position Redis knows
  writeFileSync(join(dir, 'g_call.lua'), 'return redis.call(unpack(ARGV))\n');
  writeFileSync(join(dir, 'g_pcall.lua'), [
    'local res = redis.pcall(unpack(ARGV))',
    "if type(res) == 'table' and res.err then return 'pcall error: ' .. res.err end",
    "return 'ok'",
  ].join('\n'));
  // a library function touching a key it was handed, as ledger_common's helpers do
  writeFileSync(join(dir, 'g_lib.lua'), "local function touch(k) return redis.call('INCR', k) end\n");
  writeFileSync(join(dir, 'g_include.lua'), "-- @include g_lib.lua\nreturn touch(ARGV[1])\n");
});
afterAll(async () => {
  setLuaKeyGuard(true);
  rmSync(dir, { recursive: true, force: true });
  await r?.stop();
});
afterEach(() => setLuaKeyGuard(true));

const run = (name: string, keys: string[], cmd: (string | number)[]) => runScript(r.client, loadScript(name, dir), keys, cmd);

describe('declared-keys guard', () => {
  it('is on in the test harness', () => {
    expect(luaKeyGuardOn()).toBe(true);
    expect(loadScript('g_call', dir).source).toMatch(/^-- ==== declared-keys guard/);
  });

  it('lets declared keys through and refuses an undeclared one, naming key and script', async () => {
    expect(await run('g_call', [A], ['SET', A, '1'])).toBe('OK');
    await expect(run('g_call', [A], ['SET', B, '1'])).rejects.toThrow(`undeclared key ${B} in g_call.lua (SET)`);
    expect(await r.client.exists(B)).toBe(0); // refused before Redis ran the command
    expect(await run('g_call', [A], ['TIME'])).toHaveLength(2); // keyless commands pass
  });

  it('checks every key of multi-key commands', async () => {
    await r.client.set(A, '1');
    await r.client.set(B, '2');
    expect(await run('g_call', [A, B], ['DEL', A, B])).toBe(2);
    await expect(run('g_call', [A, B], ['DEL', A, B, C])).rejects.toThrow(`undeclared key ${C}`);
    await expect(run('g_call', [A], ['EXISTS', A, B])).rejects.toThrow(`undeclared key ${B}`);
    await expect(run('g_call', [B], ['MGET', A, B])).rejects.toThrow(`undeclared key ${A}`);
    await expect(run('g_call', [A], ['UNLINK', A, B])).rejects.toThrow(`undeclared key ${B}`);
    await expect(run('g_call', [A], ['PFCOUNT', A, B])).rejects.toThrow(`undeclared key ${B}`);
    expect(await run('g_call', [A, B], ['PFCOUNT', A, B])).toBe(0);
    await expect(run('g_call', [A, B], ['SINTERSTORE', C, A, B])).rejects.toThrow(`undeclared key ${C}`);
    expect(await run('g_call', [A, B, C], ['SINTERSTORE', C, A, B])).toBe(0);
    // destination and sources; numkeys and WEIGHTS are not keys
    await expect(run('g_call', [C, A], ['ZUNIONSTORE', C, 2, A, B, 'WEIGHTS', 1, 2])).rejects.toThrow(`undeclared key ${B}`);
    expect(await run('g_call', [C, A, B], ['ZUNIONSTORE', C, 2, A, B, 'WEIGHTS', 1, 2])).toBe(0);
    // MSET: every other argument
    await expect(run('g_call', [A], ['MSET', A, B, B, A])).rejects.toThrow(`undeclared key ${B}`);
    expect(await run('g_call', [A, B], ['MSET', A, C, B, C])).toBe('OK');
  });

  it('finds the key of XGROUP and the STREAMS keys of XREADGROUP, not group or consumer names', async () => {
    await r.client.del(A, B);
    await r.client.xadd(A, '*', 'f', 'v');
    expect(await run('g_call', [A], ['XGROUP', 'CREATE', A, 'grp', '0'])).toBe('OK');
    await expect(run('g_call', [B], ['XGROUP', 'CREATE', A, 'grp2', '0'])).rejects.toThrow(`undeclared key ${A} in g_call.lua (XGROUP)`);
    await r.client.xadd(B, '*', 'f', 'v');
    await r.client.xgroup('CREATE', B, 'grp', '0');
    await expect(run('g_call', [A], ['XREADGROUP', 'GROUP', 'grp', 'c', 'COUNT', 1, 'STREAMS', A, B, '>', '>']))
      .rejects.toThrow(`undeclared key ${B}`);
    expect(await run('g_call', [A, B], ['XREADGROUP', 'GROUP', 'grp', 'c', 'COUNT', 1, 'STREAMS', A, B, '>', '>'])).toHaveLength(2);
    await expect(run('g_call', [B], ['XADD', A, '*', 'f', 'v'])).rejects.toThrow(`undeclared key ${A} in g_call.lua (XADD)`);
  });

  it('raises through redis.pcall too: an undeclared key is a bug, not an outcome', async () => {
    await expect(run('g_pcall', [A], ['GET', B])).rejects.toThrow(`undeclared key ${B} in g_pcall.lua`);
    // an ordinary command error still comes back as pcall's error value
    await r.client.set(A, 'x');
    expect(await run('g_pcall', [A], ['HGET', A, 'f'])).toMatch(/^pcall error: WRONGTYPE/);
  });

  it('covers included library code (one chunk, one shadowed redis)', async () => {
    expect(await run('g_include', [C], [C])).toBeGreaterThan(0);
    await expect(run('g_include', [A], [C])).rejects.toThrow(`undeclared key ${C} in g_include.lua (INCR)`);
  });

  it('off: nothing prepended, the production SHA; exempt scripts are unchanged in guard mode', () => {
    const guarded = loadScript('g_call', dir);
    setLuaKeyGuard(false);
    const plain = loadScript('g_call', dir);
    expect(plain.source).not.toContain('declared-keys guard');
    expect(plain.sha).not.toBe(guarded.sha);
    expect(plain.sha).toBe(createHash('sha1').update(plain.source, 'utf8').digest('hex'));
    expect(guarded.source.endsWith(plain.source)).toBe(true);
    const exemptOff = loadScript('reserve');
    setLuaKeyGuard(true);
    expect(loadScript('reserve').sha).toBe(exemptOff.sha);
    expect(loadScript('fund').source).toContain('declared-keys guard');
  });

  it('every built-in script still compiles with the prelude', async () => {
    const names = readdirSync(LUA_DIR).filter((f) => f.endsWith('.lua')).map((f) => f.slice(0, -4));
    for (const name of names) {
      const s = loadScript(name);
      expect(await r.client.script('LOAD', s.source), name).toBe(s.sha);
    }
    for (const name of KEY_GUARD_EXEMPT) expect(names, name).toContain(name);
  });
});
