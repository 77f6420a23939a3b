-- ledger_common.lua: primitives shared by every ledger script (include with
-- `-- @include ledger_common.lua`). Library only: local definitions, no top-level code.
-- Data model: src/ledger/model.ts. All amounts are int64 decimal strings (int64.lua).

-- Authoritative clock for every instance: Redis TIME, in ms.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Closed-tenant guard (runtime ERROR SEMANTICS, TENANT_CLOSED bullet):
-- returns nil (no record, or ACTIVE/SUSPENDED), 'TENANT_CLOSED', or 'TENANT_CORRUPT'
-- (record exists but its status is missing/unknown → caller answers 500).
-- `st` is the record's status as already read (false when the field is missing).
local function tenant_guard_of(tenant_key, st)
  if st == 'CLOSED' then return 'TENANT_CLOSED' end
  if st == 'ACTIVE' or st == 'SUSPENDED' then return nil end
  if redis.call('EXISTS', tenant_key) == 0 then return nil end
  return 'TENANT_CORRUPT'
end

local function tenant_guard(tenant_key)
  return tenant_guard_of(tenant_key, redis.call('HGET', tenant_key, 'status'))
end

-- SUSPENDED blocks new reservations and events; existing reservations may still be
-- committed, released and extended (admin spec, tenant status lifecycle).
local function tenant_suspended(tenant_key)
  return redis.call('HGET', tenant_key, 'status') == 'SUSPENDED'
end

-- HGETALL as a Lua table (field -> value).
local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Budget fields that callers snapshot into responses (Balance rows).
local BUDGET_SNAPSHOT_FIELDS = {'scope', 'unit', 'allocated', 'remaining', 'reserved', 'spent',
  'debt', 'overdraft_limit', 'is_over_limit', 'status'}

local function budget_snapshot(key)
  local vals = redis.call('HMGET', key, unpack(BUDGET_SNAPSHOT_FIELDS))
  local t = {}
  for i, f in ipairs(BUDGET_SNAPSHOT_FIELDS) do t[f] = vals[i] end
  return t
end

-- The same Balance-row shape from a budget hash already read (HGETALL table): missing
-- fields are false, as HMGET gives them.
local function snapshot_of(h)
  local t = {}
  for _, f in ipairs(BUDGET_SNAPSHOT_FIELDS) do
    local v = h[f]
    if v == nil then v = false end
    t[f] = v
  end
  return t
end

-- Amount fields of a budget hash as Lua numbers, when every one is canonical with
-- |v| <= 2^53 - 1 (then tonumber is exact). nil when any is larger (callers fall back to
-- int64.lua). Missing fields count as 0. Arithmetic on these numbers is exact as long as
-- each result stays within +-(2^53 - 1): callers check with num_exact.
local NUM_MAX = 9007199254740991 -- 2^53 - 1
local SHORT_AMOUNT_FIELDS = {'allocated', 'remaining', 'reserved', 'spent', 'debt', 'overdraft_limit'}
-- Whether a sum/difference of exact numbers is itself exact (|x| <= 2^53 - 1; a true
-- result beyond that rounds to at least 2^53 in magnitude, so the test cannot be fooled).
local function num_exact(x)
  return x <= NUM_MAX and x >= -NUM_MAX
end

-- A canonical amount as an exact Lua number, else nil (a 16/17-character value above
-- 2^53 - 1 rounds to >= 2^53 and is caught by num_exact).
local function num_of(v)
  if type(v) ~= 'string' or #v > 17 or i64_norm(v) ~= v then return nil end
  local x = tonumber(v)
  if not num_exact(x) then return nil end
  return x
end

local function short_amounts(h)
  local t = {}
  for _, f in ipairs(SHORT_AMOUNT_FIELDS) do
    local v = h[f]
    if v == nil or v == '' then
      t[f] = 0
    else
      t[f] = num_of(v)
      if t[f] == nil then return nil end
    end
  end
  return t
end

-- allocated - spent - reserved - debt in exact numbers, or nil when an intermediate
-- leaves the exact range (the caller then decides with the int64 string functions).
local function num_expected_remaining(allocated, spent, reserved, debt)
  local e1 = allocated - spent
  local e2 = e1 - reserved
  local e3 = e2 - debt
  if num_exact(e1) and num_exact(e2) and num_exact(e3) then return e3 end
  return nil
end

-- Fails the script (no writes have happened when called before mutation; callers call it
-- after mutation only as an assertion) if remaining != allocated - spent - reserved - debt.
local function assert_invariant(key)
  local b = budget_snapshot(key)
  local expect = i64_sub(i64_sub(i64_sub(b.allocated or '0', b.spent or '0'), b.reserved or '0'), b.debt or '0')
  if expect ~= (b.remaining or '0') then
    error('ledger invariant violated on ' .. key .. ': remaining=' .. tostring(b.remaining) .. ' expected=' .. tostring(expect))
  end
end

-- Retention of finished reservations (docs/decisions.md DX1): a COMMITTED, RELEASED or
-- EXPIRED reservation (and with it its commit/release replay record) expires `retain_ms`
-- after its created_at_ms — the same clock as its created-at index entry, which the
-- retention trim (src/export/retention.ts) removes at that moment — but never sooner than
-- min(retain_ms, 1 day) after it finished, so the finishing request can still be replayed.
-- retain_ms comes from the caller (CYCLES_RESERVATION_RETENTION_DAYS); '0' = held for the
-- export job (CYCLES_EXPORT_DIR set, DX3): no TTL now, the job sets it once the
-- reservation's day is in the cold export. ACTIVE reservations never get a TTL.
local RETAIN_DEFAULT_MS = 90 * 86400000
local RETAIN_REPLAY_FLOOR_MS = 86400000

-- A finished reservation also leaves the sweeper's schedule (keys.expirySchedule, member
-- = reservation id), in the same script that finished it.
local function retain_finalized(res_key, schedule_key, id, created_ms, retain_ms, now)
  redis.call('ZREM', schedule_key, id)
  local keep = tonumber(retain_ms or '') or RETAIN_DEFAULT_MS
  if keep <= 0 then return end
  local at = math.max((tonumber(created_ms or '') or now) + keep, now + math.min(keep, RETAIN_REPLAY_FLOOR_MS))
  redis.call('PEXPIREAT', res_key, string.format('%d', at))
end

-- Outbox append, in the same script as the state change it reports.
-- data_json: JSON text (int64 values as strings).
-- ctx: {trace_id, request_id, actor_json, correlation_id?, scope?}; the optional fields are
-- appended only when set (Event.correlation_id / Event.scope).
-- No count cap: retention is time-based (the relay trims with XTRIM MINID, docs/events.md),
-- so a busy tenant keeps its whole retention window.
local function outbox(outbox_key, event_type, data_json, ts_ms, ctx)
  local fields = {'type', event_type, 'data', data_json, 'ts_ms', tostring(ts_ms),
    'trace_id', ctx.trace_id or '', 'request_id', ctx.request_id or '', 'actor', ctx.actor_json or '{}'}
  if ctx.correlation_id and ctx.correlation_id ~= '' then
    fields[#fields + 1] = 'correlation_id'; fields[#fields + 1] = ctx.correlation_id
  end
  if ctx.scope and ctx.scope ~= '' then
    fields[#fields + 1] = 'scope'; fields[#fields + 1] = ctx.scope
  end
  redis.call('XADD', outbox_key, '*', unpack(fields))
end
