-- quota_common.lua: v0.1.26 action-quota counters (cycles-action-kinds-v0.1.26.yaml WINDOW
-- MODEL, PER_RUN COUNTER LIFECYCLE; docs/decisions.md DG6-DG9). Library only: local
-- definitions, no top-level code. Include after ledger_common.lua.
--
-- Counter = one hash per (scope, kind or __risk__:<risk_class>, window, window_key), key
-- `<quota prefix><scope>:<kind part>:<window>:<window_key>` (src/store/keys.ts quotaCounter;
-- the prefix carries the tenant's hash tag, so every counter is in the tenant's slot).
-- Fields: used, limit, policy_id, scope, action_kind, risk_class, window, window_key,
-- ttl_ms (per_run), created_ms, last_ms, th:<pct> = '1' once that threshold fired.
-- Index: zset (keys.quotaIndex) member = counter key, score = when the key expires (ms).

-- Cleanup TTLs of the calendar windows (never the window boundary: the bucket is in the key).
local QUOTA_CLEANUP_MS = {
  per_minute_tumbling = 120000, per_hour_tumbling = 3660000,
  per_day_tumbling = 90000000, per_tenant_per_day = 90000000,
}
local QUOTA_RUN_TTL_DEFAULT_MS = 86400000

-- UTC civil date and time of a ms timestamp (days-from-civil inverse; integer arithmetic,
-- exact for every timestamp Redis TIME can return).
local function quota_utc(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local hh = math.floor(rem / 3600)
  local mi = math.floor((rem - hh * 3600) / 60)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d, hh, mi
end

-- The window instance of `window` at `now` (run_id for per_run; nil when per_run has none).
local function quota_window_key(window, now, run_id)
  if window == 'per_run' then
    if run_id == nil or run_id == '' then return nil end
    return run_id
  end
  local y, m, d, hh, mi = quota_utc(now)
  if window == 'per_minute_tumbling' then return string.format('%04d-%02d-%02dT%02d:%02d', y, m, d, hh, mi) end
  if window == 'per_hour_tumbling' then return string.format('%04d-%02d-%02dT%02d', y, m, d, hh) end
  return string.format('%04d-%02d-%02d', y, m, d)
end

-- Deterministic correlation id of one counter instance (EventDataQuotaThresholdApproaching
-- and EventDataQuotaCounterReset CORRELATION: tenant, scope, kind or risk class, window,
-- window_key). Fields joined with a separator no id can contain unescaped ('\n').
local function quota_correlation(tenant, scope, kind_or_rc, window, window_key)
  return 'corr_' .. redis.sha1hex(table.concat({'quota', tenant, scope, kind_or_rc, window, window_key}, '\n'))
end

-- The counter key of a rule instance. rule: {kind, risk_class?, window, scope}.
local function quota_key(prefix, rule, window_key)
  local part = rule.risk_class and ('__risk__:' .. rule.risk_class) or rule.kind
  return prefix .. rule.scope .. ':' .. part .. ':' .. rule.window .. ':' .. window_key
end

-- Current used value of a counter key (0 when absent).
local function quota_used(key)
  return tonumber(redis.call('HGET', key, 'used') or '0') or 0
end

-- -1 on one per_run counter (release, expiry), floored at 0; an expired key is not
-- recreated.
local function quota_decrement(key)
  if redis.call('EXISTS', key) == 0 then return end
  local v = redis.call('HINCRBY', key, 'used', -1)
  if v < 0 then redis.call('HSET', key, 'used', '0') end
end

-- Decrements every per_run counter a reservation incremented (its `run_counters` field,
-- a JSON array of keys written by reserve.lua).
local function quota_release_run_counters(r)
  local raw = r.run_counters
  if not raw or raw == '' then return end
  local ok, list = pcall(cjson.decode, raw)
  if not ok or type(list) ~= 'table' then return end
  -- declared by the caller (need_reservation_keys with counters, DK8)
  for _, key in ipairs(list) do
    if type(key) == 'string' then quota_decrement(KEYS[key_index(key)]) end
  end
end
