-- @include ledger_common.lua
-- The tenant-slot half of createApiKey on a Redis Cluster (docs/decisions.md DK5), around
-- apikey_create.lua run on the key's slot:
--   'admit'   before the record exists: the tenant must exist and be ACTIVE (the errors of
--             apikey_create.lua); the key id enters the tenant's key index, so a close
--             cascade that starts from here on finds it;
--   'created' after the record is written: if the tenant went CLOSED meanwhile the reply is
--             TENANT_CLOSED (the caller revokes the record: the cascade may have read the
--             index before the record existed); otherwise api_key.created is appended.
-- KEYS: 1 tenant hash, 2 tenant key index, 3 outbox
-- ARGV: 1 mode, 2 key id, 3 event ctx JSON, 4 event data JSON
local tstatus = redis.call('HGET', KEYS[1], 'status')
if ARGV[1] == 'admit' then
  if not tstatus then return cjson.encode({error = 'TENANT_NOT_FOUND', message = 'Tenant not found'}) end
  if tstatus == 'CLOSED' then return cjson.encode({error = 'TENANT_CLOSED', message = 'Tenant is CLOSED'}) end
  if tstatus ~= 'ACTIVE' then
    return cjson.encode({error = 'INVALID_REQUEST', message = 'Tenant is ' .. tstatus .. '; keys can only be created for ACTIVE tenants'})
  end
  redis.call('ZADD', KEYS[2], now_ms(), ARGV[2])
  return cjson.encode({ok = true})
end
if tstatus == 'CLOSED' then return cjson.encode({error = 'TENANT_CLOSED', message = 'Tenant is CLOSED'}) end
outbox(KEYS[3], 'api_key.created', ARGV[4], now_ms(), cjson.decode(ARGV[3]))
return cjson.encode({ok = true})
