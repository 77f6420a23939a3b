// Lua script loader for the Redis store.
//
// Every script in src/store/lua/<name>.lua is sent to Redis with the int64
// library (int64.lua) textually prepended, plus any files named by
// `-- @include other.lua` lines in its leading comment block. Redis has no
// module system for scripts, so concatenation is the simplest way to share
// helper functions. The SHA1 of the final text is what EVALSHA needs.
//
// With CYCLES_LUA_KEY_GUARD=1 (tests; docs/decisions.md DK19) a prelude that checks every
// key a redis.call/pcall touches against the script's KEYS goes first (keyGuardPrelude).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { isCluster } from './cluster';

export interface LoadedScript {
  name: string;
  source: string;
  sha: string;
}

/** Directory holding the built-in scripts (next to this module). */
export const LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

const LIBRARY = 'int64.lua';
const NAME_RE = /^[A-Za-z0-9_-]+$/;
const INCLUDE_RE = /^--\s*@include\s+([A-Za-z0-9_-]+\.lua)\s*$/;

// Loaded once per process: scripts never change while the server runs.
const cache = new Map<string, LoadedScript>();

// Operator-configured constants (src/events/signals/config.ts): a script line
// `local NAME = <default> -- @const` gets the configured Lua value instead of <default>.
const constants = new Map<string, string>();
const CONST_RE = /^local ([A-Z][A-Z0-9_]*) = .* -- @const$/gm;

// Declared-keys guard (DK19–DK20). Read once at start: off, nothing is prepended, so the
// sources and SHAs are the production ones and the hot path pays nothing.
let keyGuard = process.env.CYCLES_LUA_KEY_GUARD === '1';

/** Scripts that still touch keys outside their KEYS, so the guard leaves them alone (DK21).
 *  Each entry goes when its script declares every key it touches. */
export const KEY_GUARD_EXEMPT: ReadonlySet<string> = new Set([
  // ledger scripts: budget, quota and reservation keys built from tenant prefixes (DK1);
  // the branch that moves them into KEYS (issue 14, ledger keys) removes these entries
  // (quota_reset already declares its keys: guarded)
  'reserve', 'commit', 'release', 'extend', 'expire', 'event', 'tenant_update',
  // webhook delivery (DK7): the branch reworking whd_* (issue 14, delivery) removes these
  'whd_claim', 'whd_enqueue', 'whd_finish', 'whd_release', 'whd_renew', 'whd_unlock',
]);

/** Turns the declared-keys guard on or off for scripts loaded from now on (tests). */
export function setLuaKeyGuard(on: boolean): void {
  if (keyGuard !== on) { keyGuard = on; cache.clear(); }
}

export function luaKeyGuardOn(): boolean {
  return keyGuard;
}

/**
 * Lua prepended to a script in guard mode: a local `redis` that shadows the global one for
 * the whole script (includes too, they are the same chunk). Its call/pcall ask Redis which
 * arguments are keys (COMMAND GETKEYS: every command's key positions, multi-key and
 * STREAMS forms included, as the server itself reads them) and raise
 * "undeclared key <k> in <script>" for a key that is not one of KEYS. Raised by pcall too:
 * an undeclared key is a bug in the script, not an outcome to handle.
 */
export function keyGuardPrelude(script: string): string {
  return `-- ==== declared-keys guard (CYCLES_LUA_KEY_GUARD) ====
local redis = (function(r, script)
  local declared = {}
  for _, k in ipairs(KEYS) do declared[k] = true end
  local function check(cmd, ...)
    if type(cmd) ~= 'string' or string.upper(cmd) == 'TIME' then return end
    local ks = r.pcall('COMMAND', 'GETKEYS', cmd, ...)
    if type(ks) ~= 'table' or ks.err then return end -- no key arguments (or bad arguments: the call itself says so)
    for _, k in ipairs(ks) do
      if not declared[k] then
        error({err = 'ERR undeclared key ' .. tostring(k) .. ' in ' .. script .. ' (' .. string.upper(cmd) .. ')'})
      end
    end
  end
  return setmetatable({
    call = function(...) check(...); return r.call(...) end,
    pcall = function(...) check(...); return r.pcall(...) end,
  }, {__index = r})
end)(redis, ${JSON.stringify(script)})
`;
}

/** Sets `@const` values (Lua expressions) for scripts loaded from now on; call at start,
 *  before serving. Every process of one deployment must use the same values. */
export function setScriptConstants(values: Record<string, string>): void {
  let changed = false;
  for (const [name, value] of Object.entries(values)) {
    if (constants.get(name) !== value) { constants.set(name, value); changed = true; }
  }
  if (changed) cache.clear();
}

/** File names listed by `-- @include x.lua` in the leading comment/blank lines. */
function includesOf(source: string): string[] {
  const out: string[] = [];
  for (const raw of source.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (!line.startsWith('--')) break; // includes only count at the top
    const m = INCLUDE_RE.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/**
 * Load `<name>.lua` and build its final source: int64.lua first, then its
 * includes (depth-first, each file at most once), then the script itself.
 * `dir` overrides where the script and its includes are found (tests);
 * int64.lua always comes from the built-in directory.
 */
export function loadScript(name: string, dir: string = LUA_DIR): LoadedScript {
  const key = `${dir}\0${name}`; // the cache is cleared when the guard mode changes
  const hit = cache.get(key);
  if (hit) return hit;
  if (!NAME_RE.test(name)) throw new Error(`invalid Lua script name: ${JSON.stringify(name)}`);

  const parts: string[] = [];
  const seen = new Set<string>();
  const visiting = new Set<string>();
  const add = (file: string, fromDir: string): void => {
    if (seen.has(file)) return;
    if (visiting.has(file)) throw new Error(`Lua @include cycle at ${file}`);
    visiting.add(file);
    const text = readFileSync(join(fromDir, file), 'utf8')
      .replace(CONST_RE, (line, name: string) => (constants.has(name) ? `local ${name} = ${constants.get(name)} -- @const` : line));
    for (const inc of includesOf(text)) add(inc, dir);
    visiting.delete(file);
    seen.add(file);
    // A marker line makes Redis error line numbers traceable to a file.
    parts.push(`-- ==== ${file} ====\n${text.endsWith('\n') ? text : text + '\n'}`);
  };
  if (keyGuard && !KEY_GUARD_EXEMPT.has(name)) parts.push(keyGuardPrelude(`${name}.lua`));
  add(LIBRARY, LUA_DIR);
  add(`${name}.lua`, dir);

  const source = parts.join('');
  const script: LoadedScript = { name, source, sha: createHash('sha1').update(source, 'utf8').digest('hex') };
  cache.set(key, script);
  return script;
}

/** Told the duration of every runScript (src/metrics.ts; unset with CYCLES_METRICS=0). */
export type ScriptObserver = (name: string, seconds: number) => void;
let observer: ScriptObserver | undefined;

export function setScriptObserver(o: ScriptObserver | undefined): void {
  observer = o;
}

/**
 * EVALSHA the script; if Redis does not know it (NOSCRIPT: server restarted,
 * SCRIPT FLUSH, failover), SCRIPT LOAD it and retry exactly once.
 */
export async function runScript(
  redis: Redis,
  script: LoadedScript,
  keys: string[],
  args: (string | number)[],
): Promise<unknown> {
  if (!observer) return evalScript(redis, script, keys, args);
  const o = observer;
  const started = performance.now();
  try {
    return await evalScript(redis, script, keys, args);
  } finally {
    o(script.name, (performance.now() - started) / 1000);
  }
}

async function evalScript(redis: Redis, script: LoadedScript, keys: string[], args: (string | number)[]): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
  }
  // On a cluster SCRIPT LOAD would reach an arbitrary node: EVAL runs (and caches) the
  // script on the node that owns the keys (a replica promoted by a failover starts empty).
  if (isCluster(redis)) return await redis.eval(script.source, keys.length, ...keys, ...args);
  await redis.script('LOAD', script.source);
  return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
}
