-- @include ledger_common.lua
-- @include webhook_common.lua
-- createWebhookSubscription / createTenantWebhook: the record, the tenant index, the
-- cross-tenant registry and version, and the webhook.created event in one atomic step.
-- Touches the tenant slot and the two cross-tenant registry keys, like tenant_create.lua:
-- single-node Redis (docs/decisions.md DV10).
-- On a Redis Cluster the caller passes KEYS 1, 2, 3, 6 only (the tenant's slot) and writes the
-- registry (before) and the version (after) itself (docs/decisions.md DK6).
-- KEYS: 1 tenant hash, 2 record, 3 tenant index, 4 registry, 5 version, 6 outbox
-- ARGV: 1 fields JSON (flat string map, subscription_id and tenant_id included),
--       2 event ctx JSON, 3 most subscriptions per tenant
local f = cjson.decode(ARGV[1])
local ctx = cjson.decode(ARGV[2])
local id, tenant = f.subscription_id, f.tenant_id
local refused = wh_owner_guard(tenant, KEYS[1])
if refused then return refused end
if redis.call('EXISTS', KEYS[2]) == 1 then return wh_err('DUPLICATE_RESOURCE', 'Subscription ' .. id .. ' already exists') end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return wh_err('LIMIT_EXCEEDED', 'Tenant ' .. tenant .. ' already has ' .. ARGV[3] .. ' webhook subscriptions (the most one tenant may hold); delete one first')
end
local problem = wh_selector_problem(tenant, f.event_types, f.event_categories)
if problem then return wh_err('INVALID_REQUEST', problem) end
local now = now_ms()
f.status = 'ACTIVE'
f.consecutive_failures = '0'
f.created_at_ms = tostring(now)
f.updated_at_ms = tostring(now)
f.rev = '1'
wh_hset(KEYS[2], f)
redis.call('ZADD', KEYS[3], now, id)
if #KEYS >= 6 then
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('INCR', KEYS[5])
end
ctx.correlation_id = 'webhook_create:' .. id
outbox(KEYS[#KEYS], 'webhook.created', '{"subscription_id":' .. cjson.encode(id) .. ',"tenant_id":' .. cjson.encode(tenant)
  .. ',"new_status":"ACTIVE","changed_fields":[]}', now, ctx)
return cjson.encode({record = hgetall(KEYS[2])})
