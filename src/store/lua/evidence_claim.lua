-- evidence_claim.lua: a signer's read of one tenant's evidence source stream
-- (src/evidence/worker.ts; entries written by evidence_common.lua).
--
-- KEYS[1] evidence source stream
-- ARGV[1] consumer name (one per worker process)   ARGV[2] min idle ms   ARGV[3] batch size
--
-- Returns {entries, more}: entries = {{id, {field, value, ...}}, ...}; more = 1 when there
-- may be entries behind this batch.
--
-- Entries another consumer read but has not acknowledged for ARGV[2] ms (a crashed worker,
-- or a failed attempt) are taken over first (XAUTOCLAIM), then new ones are read. Unlike
-- the event relay there is no per-tenant lease: order does not matter and signing is
-- idempotent (Ed25519 is deterministic and the store is SET NX by content address), so two
-- workers working on one entry only waste a signature. The group `evidence` is created at
-- id 0 on first use, so every entry written before the first worker started is signed.

local stream = KEYS[1]
local consumer, min_idle, count = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', stream) == 0 then return {{}, 0} end

local entries = {}
local more = 0
local claimed = redis.pcall('XAUTOCLAIM', stream, 'evidence', consumer, min_idle, '0-0', 'COUNT', count)
if type(claimed) == 'table' and claimed.err then
  if not string.find(claimed.err, 'NOGROUP', 1, true) then return redis.error_reply(claimed.err) end
  redis.call('XGROUP', 'CREATE', stream, 'evidence', '0')
else
  entries = claimed[2]
  -- a non-zero cursor: more pending entries were not scanned in this call
  if #entries > 0 or claimed[1] ~= '0-0' then more = 1 end
end

if #entries == 0 then
  local read = redis.call('XREADGROUP', 'GROUP', 'evidence', consumer, 'COUNT', count, 'STREAMS', stream, '>')
  if read and read[1] then entries = read[1][2] end
  if #entries >= tonumber(count) then more = 1 end
end
return {entries, more}
