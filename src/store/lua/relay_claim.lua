-- relay_claim.lua: the event relay's read of one tenant outbox (src/events/relay.ts).
--
-- KEYS[1] outbox stream   KEYS[2] relay lease of this outbox
-- ARGV[1] lease token (one per relay process)   ARGV[2] lease ms   ARGV[3] batch size
--
-- Returns {'locked'}   another relay process holds the lease: it is working on this outbox
--         {'empty'}    nothing pending, nothing new (no lease is taken)
--         {'batch', {{id, {field, value, ...}}, ...}, more}   the lease is now ours
--                      (renewed); more = 1 when the batch was re-claimed or full, i.e.
--                      entries may be waiting behind it
--
-- One relay process at a time works on an outbox (the lease), so hooks see each tenant's
-- events in stream order even with several worker processes. Under the lease every entry
-- still pending in the group was left by a holder that crashed or whose hooks failed: it
-- is claimed first (XAUTOCLAIM from the start of the pending list, min idle 0), in id
-- order, before anything new is read. All relay processes read as the one consumer
-- `relay` of group `relay`; the lease, not the consumer name, decides who works.
-- The group is created at id 0 on first use, so every retained event is relayed once.

local outbox, lease = KEYS[1], KEYS[2]
local token, lease_ms, count = ARGV[1], ARGV[2], ARGV[3]

local holder = redis.call('GET', lease)
if holder and holder ~= token then return {'locked'} end
if redis.call('EXISTS', outbox) == 0 then
  if holder then redis.call('DEL', lease) end
  return {'empty'}
end

local entries = {}
local more = 0
local claimed = redis.pcall('XAUTOCLAIM', outbox, 'relay', 'relay', 0, '0-0', 'COUNT', count)
if type(claimed) == 'table' and claimed.err then
  if not string.find(claimed.err, 'NOGROUP', 1, true) then return redis.error_reply(claimed.err) end
  redis.call('XGROUP', 'CREATE', outbox, 'relay', '0')
else
  entries = claimed[2]
  if #entries > 0 then more = 1 end
end

if #entries == 0 then
  local read = redis.call('XREADGROUP', 'GROUP', 'relay', 'relay', 'COUNT', count, 'STREAMS', outbox, '>')
  if read and read[1] then entries = read[1][2] end
end

if #entries == 0 then
  if holder then redis.call('DEL', lease) end
  return {'empty'}
end
if #entries >= tonumber(count) then more = 1 end
redis.call('SET', lease, token, 'PX', lease_ms)
return {'batch', entries, more}
