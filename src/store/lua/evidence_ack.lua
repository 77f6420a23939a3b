-- evidence_ack.lua: the signer stored (or deliberately skipped) these evidence sources, and
-- links the stored envelopes from their reservations — one script per batch instead of one
-- round trip per envelope (src/evidence/worker.ts).
--
-- KEYS[1] evidence source stream   KEYS[2..] reservation hashes to link (same tenant slot)
-- ARGV[1] n = number of stream ids   ARGV[2..n+1] stream ids
-- then, for each KEYS[i] (i >= 2), two ARGV: field (`ev:reserve` | `ev:commit` |
-- `ev:release`) and the evidence id (64 hex)
--
-- Link: the ReservationEvidence map getReservation / listReservations?include=evidence
-- render; transport metadata, not attested. Only the id is stored, the readers render the
-- URL (docs/decisions.md DM5): 64 bytes keep the hash a listpack, a full URL would not. A
-- reservation that no longer exists (retention) is not recreated.
-- Ack: acknowledged entries are deleted at once: once the signed envelope is stored the
-- source is redundant, and Redis memory is the users' main cost (DESIGN.md §4). Returns the
-- number of entries acknowledged.

local stream = KEYS[1]
local n = tonumber(ARGV[1])
local a = n + 2
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], ARGV[a], ARGV[a + 1])
  end
  a = a + 2
end
if n == 0 then return 0 end
local ids = {}
for i = 1, n do ids[i] = ARGV[i + 1] end
local acked = redis.call('XACK', stream, 'evidence', unpack(ids))
redis.call('XDEL', stream, unpack(ids))
return acked
