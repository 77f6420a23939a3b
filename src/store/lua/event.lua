-- event.lua: post-hoc accounting event (runtime createEvent), one atomic step.
-- @include ledger_common.lua
-- @include reservation_common.lua
-- @include signals_common.lua
--
-- KEYS[1] idempotency record   KEYS[2] tenant hash   KEYS[3] outbox stream
-- KEYS[4] event record hash   KEYS[5] the tenant's createEvent index (zset id by created ms)
-- KEYS[6..] declared keys (docs/decisions.md DK8): the budget of every derived scope in
--           the unit; the same scopes in the other units only when none of those exists
--           (the UNIT_MISMATCH probe): a missing one → {"need_keys": [...]}, nothing written
-- ARGV[1]  budget key prefix "{t:<tenant>}:budget:"   ARGV[2] derived scopes (JSON array,
--          canonical order)   ARGV[3] scope_path
-- ARGV[4]  actual amount (int64 decimal)   ARGV[5] unit   ARGV[6] overage policy
-- ARGV[7]  event id   ARGV[8] payload hash   ARGV[9] idempotency key
-- ARGV[10] tenant   ARGV[11] subject JSON   ARGV[12] action JSON   ARGV[13] metrics JSON
-- ARGV[14] metadata JSON   ARGV[15] client_time_ms ('' = none, advisory only)
-- ARGV[16] trace id   ARGV[17] request id   ARGV[18] actor JSON
-- ARGV[19] idempotency record TTL ms   ARGV[20] event record TTL ms ('0' = held for the
--          export job, docs/decisions.md DX3)
-- ARGV[21] every unit (JSON array) for the UNIT_MISMATCH probe
--
-- Returns the stored result JSON (fresh and replay alike, byte-identical) or an error
-- JSON {error, message, details?}. Everything is checked before anything is written.
-- Overage semantics (docs/decisions.md "event overage"): one charge for all budgeted
-- scopes; ALLOW_IF_AVAILABLE caps it to min over scopes of max(remaining, 0) and marks the
-- scopes that could not cover the full amount over-limit; ALLOW_WITH_OVERDRAFT caps only
-- on scopes with overdraft_limit 0 and turns the unfunded part into debt elsewhere
-- (spent += funded, debt += deficit, remaining -= charge); REJECT refuses any shortfall.
-- Existing debt / is_over_limit never block an event (they only block reservations).

local idem_key, tenant_key, outbox_key, event_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local budget_prefix = ARGV[1]
local scopes = cjson.decode(ARGV[2])
local scope_path = ARGV[3]
local actual = i64_norm(ARGV[4])
local unit, policy = ARGV[5], ARGV[6]
local event_id, payload_hash, idem = ARGV[7], ARGV[8], ARGV[9]
local tenant = ARGV[10]
local ctx = {trace_id = ARGV[16], request_id = ARGV[17], actor_json = ARGV[18]}
local idem_ttl_ms, event_ttl_ms = ARGV[19], ARGV[20]
local all_units = cjson.decode(ARGV[21])

local err = script_error

-- 1. Replay first: it outranks the tenant guard and every budget check.
local stored = redis.call('GET', idem_key)
if stored then
  local ok, rec = pcall(cjson.decode, stored)
  if not ok or type(rec) ~= 'table' or type(rec.result) ~= 'string' then
    return err('INTERNAL_ERROR', 'Idempotency record is unreadable; retry with a new key')
  end
  if rec.hash ~= payload_hash then
    return err('IDEMPOTENCY_MISMATCH', 'Idempotency key was already used for a different event payload')
  end
  return rec.result
end

-- 2. Closed tenant.
local g = tenant_guard(tenant_key)
if g == 'TENANT_CLOSED' then
  return err('TENANT_CLOSED', 'The tenant is CLOSED; events can no longer be recorded')
elseif g == 'TENANT_CORRUPT' then
  return err('INTERNAL_ERROR', 'Tenant record status cannot be determined')
elseif tenant_suspended(tenant_key) then
  -- SUSPENDED is read-only (admin Tenant.status); the runtime enum has no TENANT_SUSPENDED.
  return err('FORBIDDEN', 'The tenant is SUSPENDED (read-only); events cannot be recorded', {reason = 'TENANT_SUSPENDED'})
end

if actual == nil or i64_is_neg(actual) then
  return err('INVALID_REQUEST', 'actual.amount must be an int64 >= 0')
end
if policy ~= 'REJECT' and policy ~= 'ALLOW_IF_AVAILABLE' and policy ~= 'ALLOW_WITH_OVERDRAFT' then
  return err('INVALID_REQUEST', 'Unknown overage_policy')
end

-- 3. Budgeted scopes (derived scopes that have a budget in this unit).
local bkeys = {}
for _, scope in ipairs(scopes) do bkeys[#bkeys + 1] = budget_prefix .. scope .. ':' .. unit end
local nk = need_keys(bkeys)
if nk then return nk end
local budgets = load_scope_budgets(budget_prefix, scopes, unit)
if #budgets == 0 then
  local probe = {}
  for _, scope in ipairs(scopes) do
    for _, u in ipairs(all_units) do
      if u ~= unit then probe[#probe + 1] = budget_prefix .. scope .. ':' .. u end
    end
  end
  nk = need_keys(probe)
  if nk then return nk end
  local found = {}
  local at = nil
  for _, scope in ipairs(scopes) do
    for _, u in ipairs(all_units) do
      local ki = u ~= unit and key_index(budget_prefix .. scope .. ':' .. u)
      if ki and redis.call('EXISTS', KEYS[ki]) == 1 then
        found[#found + 1] = u
        at = at or scope
      end
    end
    if at then break end
  end
  if at then
    return err('UNIT_MISMATCH', 'No budget in ' .. unit .. ' at the derived scopes; ' .. at .. ' is budgeted in ' .. table.concat(found, ', '),
      {scope = at, requested_unit = unit, expected_units = found})
  end
  return err('NOT_FOUND', 'Budget not found for provided scope: ' .. scope_path)
end

-- 4. Budget status, canonical order, first failure wins.
for _, e in ipairs(budgets) do
  local st = e.b.status or 'ACTIVE'
  if st == 'FROZEN' then return err('BUDGET_FROZEN', 'Budget ' .. e.scope .. ' is FROZEN', {scope = e.scope}) end
  if st == 'CLOSED' then return err('BUDGET_CLOSED', 'Budget ' .. e.scope .. ' is CLOSED', {scope = e.scope}) end
end

-- 5. The charge (one amount for every scope) and which scopes were capped.
local charge = actual
local mark = {}
for i, e in ipairs(budgets) do
  if i64_cmp(e.b.remaining, actual) < 0 then
    if policy == 'REJECT' then
      return err('BUDGET_EXCEEDED', 'Event amount exceeds the remaining budget of ' .. e.scope .. ' and the overage policy is REJECT',
        {scope = e.scope, remaining = e.b.remaining, requested = actual})
    end
    if policy == 'ALLOW_IF_AVAILABLE' or not i64_is_pos(e.b.overdraft_limit) then
      mark[i] = true
      charge = i64_min(charge, i64_max(e.b.remaining, '0'))
    end
  end
end

-- 6. Plan every scope; refuse before writing anything.
local plans, deficits = {}, {}
for i, e in ipairs(budgets) do
  local b = e.b
  local funded = i64_min(i64_max(b.remaining, '0'), charge)
  local deficit = i64_sub(charge, funded)
  local new = {reserved = b.reserved, debt = b.debt}
  if i64_is_pos(deficit) then
    local new_debt = i64_add(b.debt, deficit)
    if new_debt == nil or i64_cmp(new_debt, b.overdraft_limit) > 0 then
      return err('OVERDRAFT_LIMIT_EXCEEDED', 'Event would take the debt of ' .. e.scope .. ' beyond its overdraft_limit',
        {scope = e.scope, current_debt = b.debt, deficit = deficit, overdraft_limit = b.overdraft_limit})
    end
    new.debt = new_debt
    deficits[i] = deficit
  end
  new.spent = i64_add(b.spent, funded)
  new.remaining = i64_sub(b.remaining, charge)
  local problem = check_plan(b, new)
  if problem then return plan_error(e.scope, problem) end
  if mark[i] or i64_cmp(new.debt, b.overdraft_limit) > 0 then new.is_over_limit = '1' end
  plans[i] = new
end

-- 7. Write: budgets, event record, idempotency record, outbox.
local now = now_ms()
for i, e in ipairs(budgets) do write_plan(e, plans[i], now) end

local budgeted = {}
for i, e in ipairs(budgets) do budgeted[i] = e.scope end
local balances = snapshots(budgets)

local result = {status = 'APPLIED', event_id = event_id, unit = unit, actual = actual, charged = charge,
  capped = i64_cmp(charge, actual) < 0, balances = balances}
local result_json = cjson.encode(result)

redis.call('HSET', event_key, 'event_id', event_id, 'tenant', tenant, 'subject', ARGV[11], 'action', ARGV[12],
  'unit', unit, 'actual', actual, 'charged', charge, 'overage_policy', policy, 'scope_path', scope_path,
  'affected_scopes', ARGV[2], 'budgeted', cjson.encode(budgeted), 'created_at_ms', tostring(now),
  'idempotency_key', idem, 'metrics', ARGV[13], 'metadata', ARGV[14], 'client_time_ms', ARGV[15],
  'trace_id', ctx.trace_id, 'request_id', ctx.request_id)
if tonumber(event_ttl_ms) > 0 then redis.call('PEXPIRE', event_key, event_ttl_ms) end
redis.call('ZADD', KEYS[5], string.format('%d', now), event_id)
redis.call('SET', idem_key, cjson.encode({hash = payload_hash, result = result_json}), 'PX', idem_ttl_ms)

for i, e in ipairs(budgets) do
  local b, new = e.b, plans[i]
  local ectx = {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json, scope = e.scope}
  if deficits[i] then
    outbox(outbox_key, 'budget.debt_incurred', cjson.encode({
      scope = e.scope, unit = unit, event_id = event_id, debt_incurred = deficits[i], total_debt = new.debt,
      overdraft_limit = b.overdraft_limit, overage_policy = policy,
    }), now, ectx)
  end
  if new.is_over_limit == '1' and b.is_over_limit ~= '1' then
    outbox(outbox_key, 'budget.over_limit_entered', cjson.encode({
      scope = e.scope, unit = unit, debt = new.debt, overdraft_limit = b.overdraft_limit, is_over_limit = true,
    }), now, ectx)
  end
  if i64_is_pos(b.remaining) and not i64_is_pos(new.remaining) then
    outbox(outbox_key, 'budget.exhausted', cjson.encode({
      scope = e.scope, unit = unit, threshold = 1.0, direction = 'rising', allocated = b.allocated,
      remaining = new.remaining, spent = new.spent, reserved = new.reserved, debt = new.debt,
      event_id = event_id,
    }), now, ectx)
  end
end
util_signal_plans(budgets, plans, unit, now, outbox_key, ctx)

return result_json
