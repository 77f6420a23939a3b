-- @include ledger_common.lua
-- createPolicy / updatePolicy: one atomic step for the closed-tenant guard, the per-tenant
-- name uniqueness index, the policy row and its policy.* outbox event.
-- Policy rows: keys.policies(tenant) field = policy_id, value = the API's Policy JSON
-- (built and validated in src/admin/policies.ts; the runtime reads it as is).
-- KEYS: 1 tenant hash, 2 policies hash, 3 policy-names hash, 4 outbox,
--       5 policy version counter (INCRed on every change: runtime policy caches key on it)
-- ARGV: 1 mode 'create' | 'update', 2 policy_id, 3 new policy JSON, 4 new name,
--       5 expected current JSON (update: compare-and-set), 6 previous name (update),
--       7 event type ('' = no event), 8 event data JSON, 9 event ctx JSON,
--       10 '1' when the tenant record must exist, 11 max policies per tenant
local mode, id, json, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function err(code, msg) return cjson.encode({error = code, message = msg}) end

if ARGV[10] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return err('TENANT_NOT_FOUND', 'Tenant not found')
end
local g = tenant_guard(KEYS[1])
if g == 'TENANT_CLOSED' then
  return err('TENANT_CLOSED', 'Tenant is CLOSED; its policies are read-only')
elseif g == 'TENANT_CORRUPT' then
  error('tenant record without a valid status: ' .. KEYS[1])
end

if mode == 'create' then
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[11]) then
    return err('INVALID_REQUEST', 'Tenant already has the maximum of ' .. ARGV[11] .. ' policies')
  end
  if redis.call('HEXISTS', KEYS[3], name) == 1 then
    return err('DUPLICATE_RESOURCE', 'A policy with this name already exists for the tenant')
  end
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    return err('DUPLICATE_RESOURCE', 'Policy id already exists')
  end
else
  local cur = redis.call('HGET', KEYS[2], id)
  if not cur then return err('NOT_FOUND', 'Policy not found') end
  if cur ~= ARGV[5] then return err('CONFLICT', 'Policy changed concurrently') end
  local prev = ARGV[6]
  if name ~= prev then
    local owner = redis.call('HGET', KEYS[3], name)
    if owner and owner ~= id then
      return err('DUPLICATE_RESOURCE', 'A policy with this name already exists for the tenant')
    end
    if redis.call('HGET', KEYS[3], prev) == id then redis.call('HDEL', KEYS[3], prev) end
  end
  if json == cur then return cjson.encode({ok = true, changed = false}) end
end

redis.call('HSET', KEYS[2], id, json)
redis.call('HSET', KEYS[3], name, id)
if KEYS[5] then redis.call('INCR', KEYS[5]) end
if ARGV[7] ~= '' then
  outbox(KEYS[4], ARGV[7], ARGV[8], now_ms(), cjson.decode(ARGV[9]))
end
return cjson.encode({ok = true, changed = true})
