-- evidence_ack.lua: the signer stored (or deliberately skipped) these evidence sources.
--
-- KEYS[1] evidence source stream   ARGV[1..] stream ids
--
-- Acknowledged entries are deleted at once: once the signed envelope is stored the source
-- is redundant, and Redis memory is the users' main cost (DESIGN.md §4). Returns the number
-- of entries acknowledged.

local stream = KEYS[1]
if #ARGV == 0 then return 0 end
local acked = redis.call('XACK', stream, 'evidence', unpack(ARGV))
redis.call('XDEL', stream, unpack(ARGV))
return acked
