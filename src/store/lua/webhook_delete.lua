-- @include ledger_common.lua
-- @include webhook_common.lua
-- deleteWebhookSubscription / deleteTenantWebhook / bulk DELETE: the record leaves the
-- tenant index and the registry, the version moves, one webhook.deleted event (correlation
-- id set by the caller). Queued deliveries of the id find no subscription and end FAILED
-- (src/events/dispatch.ts). Writes the tenant slot and the registry keys (DV10).
-- On a Redis Cluster the caller passes KEYS 1, 2, 3, 6 only and updates the registry and the
-- version after (docs/decisions.md DK6).
-- KEYS: 1 tenant hash, 2 record, 3 tenant index, 4 registry, 5 version, 6 outbox
-- ARGV: 1 subscription id, 2 event ctx JSON
local h = hgetall(KEYS[2])
if not h then return wh_err('NOT_FOUND', 'Webhook subscription not found') end
local refused = wh_owner_guard(h.tenant_id, KEYS[1])
if refused then return refused end
local ctx = cjson.decode(ARGV[2])
local now = now_ms()
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if #KEYS >= 6 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('INCR', KEYS[5])
end
outbox(KEYS[#KEYS], 'webhook.deleted', '{"subscription_id":' .. cjson.encode(ARGV[1]) .. ',"tenant_id":' .. cjson.encode(h.tenant_id)
  .. ',"previous_status":"' .. (h.status or 'ACTIVE') .. '","changed_fields":[]}', now, ctx)
return cjson.encode({deleted = true, previous_status = h.status})
