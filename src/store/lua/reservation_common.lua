-- reservation_common.lua: budget-plan helpers shared by the scripts that finish a
-- reservation (commit, release, extend, expire) and by event.lua (a commit without a
-- reservation). Library only: local definitions, no top-level code.
-- Include after ledger_common.lua:  -- @include ledger_common.lua
--                                   -- @include reservation_common.lua
--
-- Budget keys: a reservation stores the scope paths it touched (`budgeted`) and its unit;
-- the budget keys are `<budget_prefix><scope>:<unit>` where budget_prefix is
-- keys.budget(tenant, '', '') minus the trailing ':' i.e. "{t:<tenant>}:budget:".
-- The caller passes the prefix (so the key layout lives in src/store/keys.ts only) and
-- declares the keys themselves in KEYS (docs/decisions.md DK8): the script builds each key
-- only to find it among KEYS (ledger_common.lua need_keys / key_index).

local function script_error(code, message, details)
  local e = {error = code, message = message}
  if details then e.details = details end
  return cjson.encode(e)
end

-- The budgeted scope list of a reservation (JSON array) → Lua array, or nil if corrupt.
local function decode_scopes(json)
  if not json or json == '' then return nil end
  local ok, v = pcall(cjson.decode, json)
  if not ok or type(v) ~= 'table' then return nil end
  return v
end

-- The budgets that exist for `scopes` in `unit`, in the given order: array of
-- {scope, key, b = snapshot with amounts defaulted to '0'}. Missing hashes are skipped:
-- one HMGET per scope, a hash with none of the snapshot fields (every budget has them
-- all, from budget_create.lua) counts as missing.
-- Every key must be declared (need_keys first): it is read as KEYS[ki].
local function load_scope_budgets(budget_prefix, scopes, unit)
  local out = {}
  for _, scope in ipairs(scopes) do
    local ki = key_index(budget_prefix .. scope .. ':' .. unit)
    local key = KEYS[ki]
    local raw = budget_snapshot(KEYS[ki])
    if raw.scope or raw.allocated or raw.remaining or raw.status then
      local b = {}
      for f, v in pairs(raw) do b[f] = v end
      for _, f in ipairs(SHORT_AMOUNT_FIELDS) do
        b[f] = b[f] or '0'
      end
      -- raw: the Balance row as read (snapshots() reports it, updated by write_plan)
      out[#out + 1] = {scope = scope, key = key, ki = ki, b = b, raw = raw}
    end
  end
  return out
end

-- Loads every budgeted scope of a reservation (nil when its scope list is corrupt).
-- A budget hash that no longer exists is skipped (nothing to adjust on it).
local function load_budgets(budget_prefix, r)
  local scopes = r.budgeted_list or decode_scopes(r.budgeted)
  if not scopes then return nil end
  return load_scope_budgets(budget_prefix, scopes, r.unit)
end

-- The keys finishing reservation `r` touches beyond the fixed KEYS (DK8): the budget of
-- every budgeted scope in its unit, then (counters) the per_run quota counters its reserve
-- incremented. nil when the budgeted scope list is corrupt.
local function reservation_keys(budget_prefix, r, counters)
  local scopes = r.budgeted_list or decode_scopes(r.budgeted)
  if not scopes then return nil end
  local out = {}
  for _, scope in ipairs(scopes) do out[#out + 1] = budget_prefix .. scope .. ':' .. r.unit end
  if counters and r.run_counters and r.run_counters ~= '' then
    local ok, list = pcall(cjson.decode, r.run_counters)
    if ok and type(list) == 'table' then
      for _, k in ipairs(list) do
        if type(k) == 'string' then out[#out + 1] = k end
      end
    end
  end
  return out
end

-- need_keys for finishing `r` (nil: all declared, or a corrupt scope list — load_budgets
-- then reports it as before).
local function need_reservation_keys(budget_prefix, r, counters)
  local list = reservation_keys(budget_prefix, r, counters)
  if not list then return nil end
  return need_keys(list)
end

-- Checks a planned new state of one budget before anything is written: every value is
-- a valid int64 (no overflow happened while computing it: nil means overflow), reserved
-- and debt are not negative, and the ledger invariant holds on the new values.
-- Returns nil when fine, else an error description {code, field}.
local PLAN_FIELDS = {'remaining', 'reserved', 'spent', 'debt'}
local function check_plan(b, new)
  for _, f in ipairs(PLAN_FIELDS) do
    if new[f] == nil then return {code = 'OVERFLOW', field = f} end
  end
  -- Fast path (docs/decisions.md D13): every value exact as a Lua number and every
  -- intermediate of the invariant too; otherwise the int64 string functions decide.
  local A, S, R, D, M = num_of(b.allocated), num_of(new.spent), num_of(new.reserved), num_of(new.debt), num_of(new.remaining)
  local expect = A and S and R and D and M and num_expected_remaining(A, S, R, D)
  if expect then
    if R < 0 then return {code = 'CORRUPT', field = 'reserved'} end
    if D < 0 then return {code = 'CORRUPT', field = 'debt'} end
    if expect ~= M then return {code = 'CORRUPT', field = 'remaining'} end
    return nil
  end
  if i64_is_neg(new.reserved) then return {code = 'CORRUPT', field = 'reserved'} end
  if i64_is_neg(new.debt) then return {code = 'CORRUPT', field = 'debt'} end
  local s1 = i64_sub(b.allocated, new.spent)
  local s2 = s1 and i64_sub(s1, new.reserved)
  local expect = s2 and i64_sub(s2, new.debt)
  if expect == nil then return {code = 'OVERFLOW', field = 'remaining'} end
  if expect ~= new.remaining then return {code = 'CORRUPT', field = 'remaining'} end
  return nil
end

-- Maps a check_plan failure to the script's error result.
local function plan_error(scope, problem)
  if problem.code == 'OVERFLOW' then
    return script_error('BUDGET_EXCEEDED',
      'The ' .. problem.field .. ' of budget ' .. scope .. ' would leave the int64 range; nothing was changed',
      {scope = scope, field = problem.field, reason = 'INT64_OVERFLOW'})
  end
  return script_error('INTERNAL_ERROR', 'Ledger state of ' .. scope .. ' is inconsistent (' .. problem.field .. '); nothing was changed')
end

-- Writes a checked plan onto budget entry `e` (from load_scope_budgets). check_plan has
-- verified the invariant on exactly these values, so it is not re-read; e.raw becomes the
-- row as it now stands (what an HMGET after the write would return).
local function write_plan(e, new, now)
  local args = {'remaining', new.remaining, 'reserved', new.reserved,
    'spent', new.spent, 'debt', new.debt, 'updated_at_ms', string.format('%d', now)}
  local raw = e.raw
  raw.remaining, raw.reserved, raw.spent, raw.debt = new.remaining, new.reserved, new.spent, new.debt
  if new.is_over_limit then
    args[#args + 1] = 'is_over_limit'; args[#args + 1] = new.is_over_limit
    raw.is_over_limit = new.is_over_limit
  end
  redis.call('HSET', KEYS[e.ki], unpack(args))
end

-- Plan that gives a reservation's whole estimate back (release, expire).
-- Returns (plans, nil) or (nil, error_result).
local function plan_restore(budgets, estimate)
  local plans = {}
  for i, e in ipairs(budgets) do
    local b = e.b
    local new = {
      reserved = i64_sub(b.reserved, estimate),
      remaining = i64_add(b.remaining, estimate),
      spent = b.spent,
      debt = b.debt,
    }
    local problem = check_plan(b, new)
    if problem then return nil, plan_error(e.scope, problem) end
    plans[i] = new
  end
  return plans, nil
end

-- Balance snapshots (after the change) for the script result.
local function snapshots(budgets)
  local out = {}
  for i, e in ipairs(budgets) do out[i] = e.raw end
  return out
end

-- Which reservation-state error a mutation of a non-ACTIVE reservation gets.
local function state_error(status)
  if status == 'EXPIRED' then
    return script_error('RESERVATION_EXPIRED', 'Reservation has expired')
  end
  if status == 'COMMITTED' or status == 'RELEASED' then
    return script_error('RESERVATION_FINALIZED', 'Reservation is already ' .. status, {status = status})
  end
  return script_error('INTERNAL_ERROR', 'Reservation record has an unknown status')
end

-- Closed-tenant guard as a script error, or nil.
local function guard_error(tenant_key)
  local g = tenant_guard(tenant_key)
  if g == 'TENANT_CLOSED' then
    return script_error('TENANT_CLOSED', 'The owning tenant is CLOSED; reservations can no longer be changed')
  end
  if g == 'TENANT_CORRUPT' then
    return script_error('INTERNAL_ERROR', 'Tenant record status cannot be determined')
  end
  return nil
end
