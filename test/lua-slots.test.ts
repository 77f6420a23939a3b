// Redis Cluster guard for the Lua scripts (docs/decisions.md DK1): every key a script touches
// must hash to the slot of its declared KEYS. Static part: every redis.call/pcall whose key
// argument is not literally KEYS[n] must be (a) a local bound from KEYS in the same file,
// (b) a parameter of a library function (its callers are checked in turn), or (c) listed
// below as reviewed — a key built from a prefix the caller passes, always under the same
// hash tag as KEYS (the tenant's `{t:<tenant>}`), which Redis ≥ 7 also enforces at run time
// ("Script attempted to access keys that do not hash to the same slot"). A new key
// expression fails this test until it is reviewed here. The run-time part is the cluster run
// (npm run test:cluster), where Redis refuses a cross-slot access.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KEY_GUARD_EXEMPT, LUA_DIR } from '../src/store/scripts';

interface Call { cmd: string; key: string; line: number }

/** redis.call / redis.pcall argument lists of a Lua source (comments skipped). */
function redisCalls(src: string): Call[] {
  const out: Call[] = [];
  const re = /redis\.p?call\(/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(src))) {
    const lineStart = src.lastIndexOf('\n', m.index) + 1;
    if (src.slice(lineStart, m.index).includes('--')) continue;
    let i = m.index + m[0].length;
    let depth = 1;
    let quote = '';
    let cur = '';
    const args: string[] = [];
    for (; i < src.length && depth > 0; i++) {
      const c = src[i]!;
      if (quote) {
        cur += c;
        if (c === '\\') { cur += src[++i]; continue; }
        if (c === quote) quote = '';
        continue;
      }
      if (c === "'" || c === '"') { quote = c; cur += c; continue; }
      if ('([{'.includes(c)) depth++;
      if (')]}'.includes(c)) { depth--; if (depth === 0) break; }
      if (c === ',' && depth === 1) { args.push(cur.trim()); cur = ''; continue; }
      cur += c;
    }
    args.push(cur.trim());
    out.push({ cmd: args[0]!, key: args[1] ?? '', line: src.slice(0, m.index).split('\n').length });
  }
  return out;
}

/** Commands whose first argument is not a key (or that take none). */
const KEYLESS = new Set(["'TIME'"]);
/** Commands whose key comes later: XGROUP CREATE <key>, XREADGROUP … STREAMS <key>. */
const LATER_KEY: Record<string, (src: string, c: Call) => boolean> = {
  "'XGROUP'": () => true, "'XREADGROUP'": () => true,
};

/** Reviewed key expressions that are neither KEYS[n] nor a KEYS alias nor a parameter:
 *  file → expression → why it is in the slot of the script's KEYS. */
const REVIEWED: Record<string, Record<string, string>> = {
  // the finishing scripts write the reservation record through res_write (DM1–DM4)
  'reservation_record.lua': { 'unpack(args)': 'HSET of the reservation hash `key` (its callers pass res_key = KEYS[1]) built as a list' },
  'reserve.lua': {
    'unpack(f)': 'HSET/HINCRBY of a quota counter key under p.quota_prefix = keys.quotaPrefix(tenant)',
    'p.budget_prefix .. p.scopes[i] .. \':\' .. u': 'budget key under keys.budget(tenant, …) prefix (DC7)',
    'p.res_prefix .. rid': 'the tenant\'s reservation hash (keys.reservation(tenant, …) prefix)',
    'key': 'quota counter key under p.quota_prefix (tenant slot)',
    'b.key': 'budget key from load_scope_budgets (tenant prefix)',
  },
  'event.lua': { 'budget_prefix .. scope .. \':\' .. u': 'budget key under the tenant\'s budget prefix (DC7)' },
  'tenant_update.lua': { 'ARGV[3] .. scope .. \':\' .. unit': 'budget key under keys.budget(tenant, …) prefix (close snapshot)' },
  'reservation_common.lua': { 'unpack(args)': 'HSET of a budget key from load_scope_budgets (tenant prefix)' },
  // Webhook delivery (DV20) spans subscriptions and the subscription's tenant: not on a
  // cluster (DK7; the dispatcher and fan-out are off in cluster mode).
  'whd_claim.lua': { lk: 'DK7 cross-slot (lease per subscription)', dk: 'DK7 cross-slot (queue per subscription)' },
  'whd_renew.lua': { lk: 'DK7 cross-slot (lease per subscription)' },
  'whd_finish.lua': { left_key: 'DK7 cross-slot (replay counter)', lock: 'DK7 cross-slot (replay lock)' },
};

/** Scripts that may touch keys of several slots; not run on a cluster (DK7). */
const CROSS_SLOT_SCRIPTS = ['whd_claim.lua', 'whd_enqueue.lua', 'whd_finish.lua', 'whd_release.lua', 'whd_renew.lua'];

function isKeysAlias(src: string, id: string): boolean {
  // `local a, b = KEYS[1], KEYS[2]` or `local a = KEYS[3]`: the id's position on the left
  // holds a KEYS[...] on the right
  const re = new RegExp(`^\\s*(?:local\\s+)?([\\w\\s,]*\\b${id}\\b[\\w\\s,]*)=\\s*(.+)$`, 'gm');
  let m: RegExpExecArray | null;
  while ((m = re.exec(src))) {
    const left = m[1]!.split(',').map((s) => s.trim());
    const right = m[2]!.split(',').map((s) => s.trim());
    const r = right[left.indexOf(id)];
    if (r && /^KEYS\[[^\]]+\]$/.test(r)) return true;
  }
  return false;
}

function isParam(src: string, id: string): boolean {
  return new RegExp(`function\\s+\\w+\\s*\\(([^)]*\\b${id}\\b[^)]*)\\)`).test(src);
}

const files = readdirSync(LUA_DIR).filter((f) => f.endsWith('.lua'));

describe('Lua scripts touch only the slot of their KEYS', () => {
  it('finds the scripts', () => {
    expect(files.length).toBeGreaterThan(30);
  });

  for (const file of files) {
    it(file, () => {
      const src = readFileSync(LUA_DIR + file, 'utf8');
      const unreviewed: string[] = [];
      for (const c of redisCalls(src)) {
        if (KEYLESS.has(c.cmd) || LATER_KEY[c.cmd]?.(src, c)) continue;
        const k = c.key;
        if (/^KEYS\[[^\]]+\]$/.test(k)) continue; // a declared key, by number or loop index
        if (/^unpack\(KEYS(,[^()]*)?\)$/.test(k)) continue; // a range of declared keys
        if (/^\w+$/.test(k) && (isKeysAlias(src, k) || isParam(src, k))) continue;
        const expr = c.cmd.startsWith('unpack(') ? c.cmd : k;
        if (REVIEWED[file]?.[expr]) continue;
        unreviewed.push(`${file}:${c.line} redis.call(${c.cmd}, ${k}, …)`);
      }
      expect(unreviewed, 'key expressions that are not KEYS[n]: make them KEYS or review them in test/lua-slots.test.ts').toEqual([]);
      // no hard-coded key names: a literal key would sit in a fixed slot
      expect(src.split('\n').filter((l) => !/^\s*--/.test(l) && /['"](cycles:|\{[tk]:)/.test(l))).toEqual([]);
    });
  }

  it('the reviewed list has no stale entries', () => {
    for (const [file, exprs] of Object.entries(REVIEWED)) {
      const calls = redisCalls(readFileSync(LUA_DIR + file, 'utf8'));
      for (const expr of Object.keys(exprs)) {
        expect(calls.some((c) => c.key === expr || c.cmd === expr), `${file}: ${expr}`).toBe(true);
      }
    }
  });

  it('a script with a reviewed key expression (its own or an include\'s) is exempt from the run-time guard (DK21)', () => {
    const includesOf = (f: string): string[] => [...readFileSync(LUA_DIR + f, 'utf8').matchAll(/^--\s*@include\s+(\S+\.lua)\s*$/gm)].map((m) => m[1]!);
    const closure = (f: string, seen = new Set<string>()): Set<string> => {
      if (!seen.has(f)) { seen.add(f); for (const i of includesOf(f)) closure(i, seen); }
      return seen;
    };
    const included = new Set(files.flatMap(includesOf));
    const scripts = files.filter((f) => !included.has(f));
    const needsExempt = scripts.filter((f) => [...closure(f)].some((x) => REVIEWED[x]));
    expect(needsExempt.length).toBeGreaterThan(0);
    for (const f of needsExempt) expect(KEY_GUARD_EXEMPT.has(f.slice(0, -4)), f).toBe(true);
  });

  it('only the webhook delivery scripts are known to span slots (DK7)', () => {
    const cross = Object.entries(REVIEWED).filter(([, e]) => Object.values(e).some((why) => why.startsWith('DK7'))).map(([f]) => f);
    for (const f of cross) expect(CROSS_SLOT_SCRIPTS).toContain(f);
    expect(CROSS_SLOT_SCRIPTS.every((f) => f.startsWith('whd_'))).toBe(true);
  });
});
