-- @include ledger_common.lua
-- createTenant: write the tenant hash unless the id exists (then return the stored hash
-- unchanged, the caller decides 200 vs 409). Model: src/ledger/model.ts (Tenant hash).
-- Single Redis: all four KEYS, the registry entries in the same step. Redis Cluster: KEYS
-- 1 and 4 only (the tenant's slot); the caller adds the registry entries after every call,
-- created or not, so a crash in between is repaired by the client's retry (DK6).
-- KEYS: 1 tenant hash, 2 tenant index zset, 3 tenants set, 4 outbox
-- ARGV: 1 fields JSON (flat string map), 2 event ctx JSON, 3 event data JSON
local whole = #KEYS >= 4
local existing = hgetall(KEYS[1])
if existing then return cjson.encode({existing = existing}) end
local fields = cjson.decode(ARGV[1])
local ctx = cjson.decode(ARGV[2])
local now = now_ms()
fields.created_at_ms = tostring(now)
fields.updated_at_ms = tostring(now)
local flat = {}
for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[1], unpack(flat))
if whole then
  redis.call('ZADD', KEYS[2], now, fields.tenant_id)
  redis.call('SADD', KEYS[3], fields.tenant_id)
end
outbox(KEYS[#KEYS], 'tenant.created', ARGV[3], now, ctx)
return cjson.encode({created = hgetall(KEYS[1])})
