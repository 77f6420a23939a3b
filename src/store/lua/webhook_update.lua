-- @include ledger_common.lua
-- @include webhook_common.lua
-- One change of an existing subscription, with its event, in one atomic step:
--   mode 'patch'   updateWebhookSubscription / updateTenantWebhook / bulk PAUSE|RESUME. The
--                  caller computed the new values from the record at (rev, status); if either
--                  moved since (another PATCH, the dispatcher's auto-disable) the reply is
--                  CONFLICT and the caller recomputes. The selector invariants are checked on
--                  the merged state; an empty event type means a no-op (nothing written).
--   mode 'cascade' the tenant-close cascade: ACTIVE|PAUSED → DISABLED with one
--                  webhook.disabled_via_tenant_cascade; a no-op for a DISABLED or missing row.
-- Writes the tenant slot and the cross-tenant version key (DV10).
-- On a Redis Cluster KEYS[4] is left out and the caller INCRs the version after a change (DK6).
-- KEYS: 1 tenant hash, 2 record, 3 outbox, 4 version
-- ARGV: 1 mode, 2 expected rev, 3 expected status, 4 fields to set JSON (flat string map),
--       5 fields to delete JSON (array), 6 event type ('' = none), 7 event data JSON,
--       8 event ctx JSON, 9 '1' = reset consecutive_failures
local h = hgetall(KEYS[2])
local mode = ARGV[1]
local ctx = cjson.decode(ARGV[8])

if mode == 'cascade' then
  if not h or (h.status ~= 'ACTIVE' and h.status ~= 'PAUSED') then return cjson.encode({changed = false}) end
  local now = now_ms()
  redis.call('HSET', KEYS[2], 'status', 'DISABLED', 'updated_at_ms', tostring(now),
    'rev', tostring((tonumber(h.rev or '0') or 0) + 1))
  if KEYS[4] then redis.call('INCR', KEYS[4]) end
  local data = '{"subscription_id":' .. cjson.encode(h.subscription_id)
  if h.name and h.name ~= '' then data = data .. ',"name":' .. cjson.encode(h.name) end
  data = data .. ',"prior_status":"' .. h.status .. '","new_status":"DISABLED","cascade_reason":"tenant_closed"}'
  outbox(KEYS[3], 'webhook.disabled_via_tenant_cascade', data, now, ctx)
  return cjson.encode({changed = true})
end

if not h then return wh_err('NOT_FOUND', 'Webhook subscription not found') end
local refused = wh_owner_guard(h.tenant_id, KEYS[1])
if refused then return refused end
if (h.rev or '0') ~= ARGV[2] or h.status ~= ARGV[3] then return wh_err('CONFLICT', 'changed concurrently') end
local set = cjson.decode(ARGV[4])
local unset = cjson.decode(ARGV[5])
local problem = wh_selector_problem(h.tenant_id, set.event_types or h.event_types, set.event_categories or h.event_categories)
if problem then return wh_err('INVALID_REQUEST', problem) end
if ARGV[6] == '' then return cjson.encode({record = h}) end

local now = now_ms()
set.updated_at_ms = tostring(now)
set.rev = tostring((tonumber(h.rev or '0') or 0) + 1)
if ARGV[9] == '1' then set.consecutive_failures = '0' end
wh_hset(KEYS[2], set)
if #unset > 0 then redis.call('HDEL', KEYS[2], unpack(unset)) end
if KEYS[4] then redis.call('INCR', KEYS[4]) end
outbox(KEYS[3], ARGV[6], ARGV[7], now, ctx)
return cjson.encode({record = hgetall(KEYS[2])})
