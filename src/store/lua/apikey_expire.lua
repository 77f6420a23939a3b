-- apikey_expire.lua: api_key.expired for one key whose expires_at has passed, run by the
-- key-expiry sweep (src/events/signals/keys.ts, docs/decisions.md DV38). The key already
-- fails authentication by time (src/auth/apiKeys.ts keyProblem) and reads as EXPIRED;
-- this records the transition once: the marker field `expired_event_ms` makes a second
-- sweep (any process) a no-op. The status field is left as it is, so every other path
-- (update, revoke, close cascade) behaves exactly as before.
-- Single Redis: KEYS 1–2. Redis Cluster: KEYS[1] alone, and the event comes back as the
-- reply (a JSON string) for the caller to append (docs/decisions.md DK5).
-- @include ledger_common.lua
--
-- KEYS: 1 key record (keys.apiKeyBySecret), 2 outbox of its tenant
-- ARGV: 1 trace id of the sweep
-- Returns 1 when the event was written.

local k = hgetall(KEYS[1])
if not k or k.status ~= 'ACTIVE' or k.expired_event_ms then return 0 end
local exp = tonumber(k.expires_at_ms or '0') or 0
local now = now_ms()
if exp <= 0 or exp > now then return 0 end
redis.call('HSET', KEYS[1], 'expired_event_ms', string.format('%d', now))
local json = '{"key_id":' .. cjson.encode(k.key_id) .. ',"previous_status":"ACTIVE","new_status":"EXPIRED","permissions":'
  .. (k.permissions or '[]')
if k.name then json = json .. ',"key_name":' .. cjson.encode(k.name) end
if not KEYS[2] then return cjson.encode({type = 'api_key.expired', data = json .. '}', ts_ms = now}) end
outbox(KEYS[2], 'api_key.expired', json .. '}', now, {trace_id = ARGV[1], request_id = '', actor_json = '{"type":"system"}'})
return 1
