-- @include ledger_common.lua
-- createApiKey: checks the owning tenant (exists, not CLOSED, ACTIVE) and writes the key
-- record (keyed by the secret's SHA-256, src/auth/apiKeys.ts), the id → hash mapping, the
-- tenant's key index and the api_key.created event in one step, so a key can never be
-- minted after the tenant's CLOSED flip (CASCADE SEMANTICS Rule 2).
-- Single Redis: all five KEYS, one step. Redis Cluster (the key's slot and the tenant's slot
-- differ): called with KEYS[1] alone, it writes the record only and returns it; the caller
-- runs the tenant-slot steps around it (apikey_tenant.lua, docs/decisions.md DK5).
-- KEYS: 1 key record, 2 key id mapping, 3 tenant hash, 4 tenant key index, 5 outbox
-- ARGV: 1 record fields JSON (flat strings, without created_at_ms), 2 secret sha256,
--       3 event ctx JSON, 4 event data JSON
local whole = #KEYS >= 5
if whole then
  local tstatus = redis.call('HGET', KEYS[3], 'status')
  if not tstatus then return cjson.encode({error = 'TENANT_NOT_FOUND', message = 'Tenant not found'}) end
  if tstatus == 'CLOSED' then return cjson.encode({error = 'TENANT_CLOSED', message = 'Tenant is CLOSED'}) end
  if tstatus ~= 'ACTIVE' then
    return cjson.encode({error = 'INVALID_REQUEST', message = 'Tenant is ' .. tstatus .. '; keys can only be created for ACTIVE tenants'})
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then error('api key secret collision') end
local f = cjson.decode(ARGV[1])
local now = now_ms()
f.created_at_ms = tostring(now)
local flat = {}
for k, v in pairs(f) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[1], unpack(flat))
if whole then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('ZADD', KEYS[4], now, f.key_id)
  outbox(KEYS[5], 'api_key.created', ARGV[4], now, cjson.decode(ARGV[3]))
end
return cjson.encode({record = hgetall(KEYS[1])})
