-- @include ledger_common.lua
-- @include signals_common.lua
-- fundBudget: CREDIT / DEBIT / RESET / RESET_SPENT / REPAY_DEBT on one budget, with the
-- idempotency record (per tenant, scope, unit, key) checked and written in the same script.
-- Formulas (admin spec, fundBudget): keep remaining = allocated - spent - reserved - debt.
--   CREDIT a      allocated += a, remaining += a
--   DEBIT a       allocated -= a, remaining -= a; refused (BUDGET_EXCEEDED) if remaining < a
--   RESET a       allocated = a, remaining = a - reserved - spent - debt
--   RESET_SPENT a allocated = a, spent = s (0 if absent), remaining = a - s - reserved - debt
--   REPAY_DEBT a  r = min(debt, a): debt -= r, remaining += r; the excess a - r is credited
--                 to allocated and remaining ("use remaining", docs/decisions.md)
-- Every result is checked for int64 overflow before anything is written.
-- KEYS: 1 budget, 2 tenant hash, 3 outbox, 4 idempotency record ('' key when no idem key)
-- ARGV: 1 operation, 2 amount, 3 spent ('' = absent), 4 payload hash ('' = no idempotency),
--       5 event ctx JSON, 6 reason, 7 idempotency ttl ms
local op, a, s_arg, phash = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if phash ~= '' then
  local prior = redis.call('GET', KEYS[4])
  if prior then
    local rec = cjson.decode(prior)
    if rec.h ~= phash then
      return cjson.encode({error = 'IDEMPOTENCY_MISMATCH', message = 'idempotency_key was already used with a different request'})
    end
    return rec.r
  end
end
local b = hgetall(KEYS[1])
if not b then return cjson.encode({error = 'BUDGET_NOT_FOUND', message = 'Budget not found for this (scope, unit)'}) end
if redis.call('HGET', KEYS[2], 'status') == 'CLOSED' then
  return cjson.encode({error = 'TENANT_CLOSED', message = 'The owning tenant is CLOSED'})
end
local status = b.status or 'ACTIVE'
if status == 'CLOSED' then return cjson.encode({error = 'BUDGET_CLOSED', message = 'Budget is CLOSED'}) end
if status == 'FROZEN' then return cjson.encode({error = 'BUDGET_FROZEN', message = 'Budget is FROZEN; funding is blocked'}) end

local alloc, rem, spent, res, debt = b.allocated or '0', b.remaining or '0', b.spent or '0', b.reserved or '0', b.debt or '0'
local n_alloc, n_rem, n_spent, n_debt = alloc, rem, spent, debt
local function overflow()
  return cjson.encode({error = 'OVERFLOW', message = 'The result would fall outside the int64 range; nothing was changed'})
end
local event
if op == 'CREDIT' then
  n_alloc = i64_add(alloc, a); n_rem = i64_add(rem, a); event = 'budget.funded'
elseif op == 'DEBIT' then
  if i64_cmp(rem, a) < 0 then
    return cjson.encode({error = 'BUDGET_EXCEEDED', message = 'DEBIT of ' .. a .. ' exceeds remaining ' .. rem})
  end
  n_alloc = i64_sub(alloc, a); n_rem = i64_sub(rem, a); event = 'budget.debited'
elseif op == 'RESET' then
  n_alloc = a
  local x = i64_sub(a, res); x = x and i64_sub(x, spent); n_rem = x and i64_sub(x, debt)
  event = 'budget.reset'
elseif op == 'RESET_SPENT' then
  n_alloc = a
  n_spent = (s_arg ~= '' and s_arg) or '0'
  local x = i64_sub(a, n_spent); x = x and i64_sub(x, res); n_rem = x and i64_sub(x, debt)
  event = 'budget.reset_spent'
elseif op == 'REPAY_DEBT' then
  local r = i64_min(debt, a)
  local excess = i64_sub(a, r)
  n_debt = i64_sub(debt, r)
  n_rem = i64_add(rem, a)
  n_alloc = i64_add(alloc, excess)
  event = 'budget.debt_repaid'
else
  return cjson.encode({error = 'INVALID_REQUEST', message = 'unknown operation ' .. tostring(op)})
end
if not (n_alloc and n_rem and n_spent and n_debt) then return overflow() end

local now = now_ms()
local over = i64_cmp(n_debt, b.overdraft_limit or '0') > 0 and '1' or '0'
redis.call('HSET', KEYS[1], 'allocated', n_alloc, 'remaining', n_rem, 'spent', n_spent, 'debt', n_debt,
  'is_over_limit', over, 'updated_at_ms', tostring(now))
assert_invariant(KEYS[1])

local ctx = cjson.decode(ARGV[5])
ctx.scope = b.scope
local data = {ledger_id = b.ledger_id, scope = b.scope, unit = b.unit, operation = op,
  previous_state = {allocated = alloc, remaining = rem, debt = debt, spent = spent, reserved = res, status = status},
  new_state = {allocated = n_alloc, remaining = n_rem, debt = n_debt, spent = n_spent, reserved = res, status = status}}
if ARGV[6] ~= '' then data.reason = ARGV[6] end
if op == 'RESET_SPENT' then data.spent_override_provided = (s_arg ~= '') end
outbox(KEYS[3], event, cjson.encode(data), now, ctx)
-- Derived signals of the same change: is_over_limit recomputed (REPAY_DEBT, or any
-- operation clearing a capped-commit flag), utilization moved with allocated/spent.
over_limit_signal(KEYS[3], b.scope, b.unit, b.is_over_limit, over, n_debt, b.overdraft_limit or '0', now, ctx)
util_signal(KEYS[1], b.scope, b.unit, util_of(alloc, spent, res),
  {allocated = n_alloc, remaining = n_rem, spent = n_spent, reserved = res}, b.sig_util or '0', now, KEYS[3], ctx)

local result = cjson.encode({operation = op, unit = b.unit,
  previous_allocated = alloc, new_allocated = n_alloc, previous_remaining = rem, new_remaining = n_rem,
  previous_debt = debt, new_debt = n_debt, previous_spent = spent, new_spent = n_spent,
  timestamp_ms = tostring(now), is_over_limit = over})
if phash ~= '' then
  redis.call('SET', KEYS[4], cjson.encode({h = phash, r = result}), 'PX', tonumber(ARGV[7]))
end
return result
