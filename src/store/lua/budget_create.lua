-- @include ledger_common.lua
-- createBudget: checks the owning tenant (exists, not CLOSED, ACTIVE) and uniqueness of
-- (scope, unit), then writes the budget hash (src/ledger/model.ts) and its index entry.
-- KEYS: 1 budget hash, 2 budget index, 3 tenant hash, 4 outbox
-- ARGV: 1 fields JSON (ledger_id, tenant_id, scope, unit, allocated, overdraft_limit, optional
--       commit_overage_policy, rollover_policy, period_start, period_end, metadata),
--       2 index member, 3 event ctx JSON
local tstatus = redis.call('HGET', KEYS[3], 'status')
if not tstatus then return cjson.encode({error = 'TENANT_NOT_FOUND', message = 'Tenant not found'}) end
if tstatus == 'CLOSED' then return cjson.encode({error = 'TENANT_CLOSED', message = 'Tenant is CLOSED'}) end
if tstatus ~= 'ACTIVE' then
  return cjson.encode({error = 'INVALID_REQUEST', message = 'Tenant is ' .. tstatus .. '; budgets can only be created for ACTIVE tenants'})
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return cjson.encode({error = 'DUPLICATE_RESOURCE', message = 'A budget already exists for this (scope, unit)'})
end
local f = cjson.decode(ARGV[1])
local ctx = cjson.decode(ARGV[3])
local now = tostring(now_ms())
f.remaining = f.allocated
f.reserved = '0'; f.spent = '0'; f.debt = '0'
f.is_over_limit = '0'
f.status = 'ACTIVE'
f.created_at_ms = now; f.updated_at_ms = now
local flat = {}
for k, v in pairs(f) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('ZADD', KEYS[2], 0, ARGV[2])
assert_invariant(KEYS[1])
ctx.scope = f.scope
outbox(KEYS[4], 'budget.created', cjson.encode({ledger_id = f.ledger_id, scope = f.scope, unit = f.unit,
  operation = 'CREATE', new_state = {allocated = f.allocated, remaining = f.remaining, reserved = '0',
  spent = '0', debt = '0', status = 'ACTIVE'}}), tonumber(now), ctx)
return cjson.encode({budget = hgetall(KEYS[1])})
