-- @include ledger_common.lua
-- @include signals_common.lua
-- updateBudget / freezeBudget / unfreezeBudget on one budget hash, guarded by the owning
-- tenant's status (CASCADE SEMANTICS Rule 2) and the budget's own status.
-- KEYS: 1 budget hash, 2 tenant hash, 3 outbox
-- ARGV: 1 mode (update|freeze|unfreeze), 2 patch JSON (update: overdraft_limit,
--       commit_overage_policy, metadata as strings), 3 event ctx JSON, 4 reason ('' = none)
local b = hgetall(KEYS[1])
if not b then return cjson.encode({error = 'BUDGET_NOT_FOUND', message = 'Budget not found for this (scope, unit)'}) end
if redis.call('HGET', KEYS[2], 'status') == 'CLOSED' then
  return cjson.encode({error = 'TENANT_CLOSED', message = 'The owning tenant is CLOSED'})
end
local mode = ARGV[1]
local status = b.status or 'ACTIVE'
if status == 'CLOSED' then return cjson.encode({error = 'BUDGET_CLOSED', message = 'Budget is CLOSED'}) end
local ctx = cjson.decode(ARGV[3])
ctx.scope = b.scope
local now = now_ms()
local reason = ARGV[4] ~= '' and ARGV[4] or nil

if mode == 'freeze' or mode == 'unfreeze' then
  local from, to, ev = 'ACTIVE', 'FROZEN', 'budget.frozen'
  if mode == 'unfreeze' then from, to, ev = 'FROZEN', 'ACTIVE', 'budget.unfrozen' end
  if status ~= from then
    if mode == 'freeze' then return cjson.encode({error = 'BUDGET_FROZEN', message = 'Budget is already FROZEN'}) end
    return cjson.encode({error = 'INVALID_TRANSITION', message = 'Budget is already ACTIVE'})
  end
  redis.call('HSET', KEYS[1], 'status', to, 'updated_at_ms', tostring(now))
  outbox(KEYS[3], ev, cjson.encode({ledger_id = b.ledger_id, scope = b.scope, unit = b.unit, operation = 'STATUS_CHANGE',
    previous_state = {status = from}, new_state = {status = to}, reason = reason}), now, ctx)
  return cjson.encode({budget = hgetall(KEYS[1])})
end

local patch = cjson.decode(ARGV[2])
local writes = {'updated_at_ms', tostring(now)}
for _, k in ipairs({'overdraft_limit', 'commit_overage_policy', 'metadata'}) do
  if patch[k] ~= nil then writes[#writes + 1] = k; writes[#writes + 1] = patch[k] end
end
local limit = patch.overdraft_limit or b.overdraft_limit or '0'
local over = i64_cmp(b.debt or '0', limit) > 0 and '1' or '0'
writes[#writes + 1] = 'is_over_limit'; writes[#writes + 1] = over
redis.call('HSET', KEYS[1], unpack(writes))
assert_invariant(KEYS[1])
outbox(KEYS[3], 'budget.updated', cjson.encode({ledger_id = b.ledger_id, scope = b.scope, unit = b.unit, operation = 'UPDATE',
  previous_state = {status = status}, new_state = {status = status}, reason = reason}), now, ctx)
-- is_over_limit recomputed against the new overdraft_limit (spec: updateBudget).
over_limit_signal(KEYS[3], b.scope, b.unit, b.is_over_limit, over, b.debt or '0', limit, now, ctx)
return cjson.encode({budget = hgetall(KEYS[1])})
