// Lua script loader for the Redis store.
//
// Every script in src/store/lua/<name>.lua is sent to Redis with the int64
// library (int64.lua) textually prepended, plus any files named by
// `-- @include other.lua` lines in its leading comment block. Redis has no
// module system for scripts, so concatenation is the simplest way to share
// helper functions. The SHA1 of the final text is what EVALSHA needs.
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

// Test hook (docs/decisions.md DK8): with CYCLES_TEST_STRICT_KEYS=1 (vitest.config.ts sets
// it for every suite) the ledger scripts run behind a `redis` that refuses any command on a
// key that is not in KEYS: Redis itself only refuses undeclared keys of another Cluster
// slot, so this is what proves a script declares everything it touches.
const STRICT_SCRIPTS = new Set(['reserve', 'commit', 'release', 'extend', 'expire', 'event', 'tenant_update',
  'fund', 'budget_create', 'budget_update', 'budget_close_cascade', 'quota_reset']);
const STRICT_SHIM = `-- ==== strict keys (CYCLES_TEST_STRICT_KEYS) ====
local redis = (function(r)
  local declared = {}
  for i = 1, #KEYS do declared[KEYS[i]] = true end
  local function check(cmd, key)
    if string.upper(cmd) == 'TIME' then return end
    if not declared[key] then error('strict keys: ' .. tostring(cmd) .. ' on undeclared key ' .. tostring(key)) end
  end
  local shim = setmetatable({}, {__index = r})
  shim.call = function(...) check(...) return r.call(...) end
  shim.pcall = function(...) check(...) return r.pcall(...) end
  return shim
end)(redis)
`;

/**
 * Load `<name>.lua` and build its final source: int64.lua first, then its
 * includes (depth-first, each file at most once), then the script itself.
 * `dir` overrides where the script and its includes are found (tests);
 * int64.lua always comes from the built-in directory.
 */
export function loadScript(name: string, dir: string = LUA_DIR): LoadedScript {
  const key = `${dir}\0${name}`;
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
  add(LIBRARY, LUA_DIR);
  add(`${name}.lua`, dir);

  if (process.env.CYCLES_TEST_STRICT_KEYS === '1' && process.env.NODE_ENV !== 'production' && STRICT_SCRIPTS.has(name)) parts.unshift(STRICT_SHIM);
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
