-- @include ledger_common.lua
-- updateApiKey / revokeApiKey / the close cascade's revocation of one key.
-- Single Redis: KEYS 1–3, one step. Redis Cluster (the key's slot is not the tenant's): KEYS[1]
-- alone; the caller checked the tenant before and appends the returned `event` to the
-- tenant's outbox after (docs/decisions.md DK5).
-- KEYS: 1 key record, 2 tenant hash, 3 outbox
-- ARGV: 1 mode (update|revoke|cascade), 2 patch JSON (name, description, permissions,
--       scope_filter, metadata as stored strings), 3 reason, 4 event ctx JSON
local k = hgetall(KEYS[1])
if not k then return cjson.encode({error = 'NOT_FOUND', message = 'API key not found'}) end
local mode = ARGV[1]
local ctx = cjson.decode(ARGV[4])
local now = now_ms()
local pending = nil
local function emit_event(event_type, json)
  if KEYS[3] then outbox(KEYS[3], event_type, json, now, ctx) else pending = {type = event_type, data = json, ts_ms = now} end
end
local function done(t)
  t.event = pending
  return cjson.encode(t)
end
local function perms_json() return k.permissions or '[]' end
local function emit(event_type, prev, new)
  local json = '{"key_id":' .. cjson.encode(k.key_id) .. ',"previous_status":"' .. prev .. '","new_status":"' .. new
    .. '","permissions":' .. perms_json()
  if k.name then json = json .. ',"key_name":' .. cjson.encode(k.name) end
  emit_event(event_type, json .. '}')
end

if mode == 'cascade' then
  if k.status ~= 'ACTIVE' then return cjson.encode({changed = false}) end
  redis.call('HSET', KEYS[1], 'status', 'REVOKED', 'revoked_at_ms', tostring(now), 'revoked_reason', 'tenant_closed')
  local json = '{"key_id":' .. cjson.encode(k.key_id) .. ',"prior_status":"ACTIVE","new_status":"REVOKED","cascade_reason":"tenant_closed"'
  if k.name then json = json .. ',"name":' .. cjson.encode(k.name) end
  emit_event('api_key.revoked_via_tenant_cascade', json .. '}')
  return done({changed = true})
end

if KEYS[2] and redis.call('HGET', KEYS[2], 'status') == 'CLOSED' then
  return cjson.encode({error = 'TENANT_CLOSED', message = 'The owning tenant is CLOSED'})
end
if k.status == 'REVOKED' then return cjson.encode({error = 'KEY_REVOKED', message = 'API key is already REVOKED'}) end

if mode == 'revoke' then
  local writes = {'status', 'REVOKED', 'revoked_at_ms', tostring(now)}
  if ARGV[3] ~= '' then writes[#writes + 1] = 'revoked_reason'; writes[#writes + 1] = ARGV[3] end
  redis.call('HSET', KEYS[1], unpack(writes))
  emit('api_key.revoked', 'ACTIVE', 'REVOKED')
  return done({record = hgetall(KEYS[1])})
end

local exp = tonumber(k.expires_at_ms or '0')
if k.status == 'EXPIRED' or (exp > 0 and exp <= now) then
  return cjson.encode({error = 'KEY_EXPIRED', message = 'API key is EXPIRED and cannot be modified'})
end
local patch = cjson.decode(ARGV[2])
local writes, acl_changed = {}, false
for _, f in ipairs({'name', 'description', 'permissions', 'scope_filter', 'metadata'}) do
  if patch[f] ~= nil and patch[f] ~= k[f] then
    writes[#writes + 1] = f; writes[#writes + 1] = patch[f]
    if f == 'permissions' or f == 'scope_filter' then acl_changed = true end
  end
end
if #writes > 0 then redis.call('HSET', KEYS[1], unpack(writes)) end
if acl_changed then
  k = hgetall(KEYS[1])
  emit('api_key.permissions_changed', 'ACTIVE', 'ACTIVE')
end
return done({record = hgetall(KEYS[1])})
