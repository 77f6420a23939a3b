-- relay_ack.lua: the event relay finished (or gave up on) a batch of one tenant outbox.
--
-- KEYS[1] outbox stream   KEYS[2] relay lease of this outbox
-- ARGV[1] lease token   ARGV[2] '1' = release the lease, '0' = keep (renew) it
-- ARGV[3] lease ms      ARGV[4..] stream ids to acknowledge (none on failure)
--
-- Returns the number of entries acknowledged. The lease is only touched while it is ours.

local outbox, lease = KEYS[1], KEYS[2]
local token, release, lease_ms = ARGV[1], ARGV[2], ARGV[3]
local acked = 0
if #ARGV > 3 then
  acked = redis.call('XACK', outbox, 'relay', unpack(ARGV, 4))
end
if redis.call('GET', lease) == token then
  if release == '1' then redis.call('DEL', lease) else redis.call('PEXPIRE', lease, lease_ms) end
end
return acked
