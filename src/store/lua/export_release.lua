-- export_release.lua: moves one class's released watermark forward (never back).
--
-- KEYS[1] keys.exportReleased() hash   ARGV[1] class   ARGV[2] epoch ms (start of the first
-- day not yet exported and released; src/export/hold.ts, docs/decisions.md DX3)
-- Returns the watermark after the call (decimal string).

local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local want = tonumber(ARGV[2])
if want > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return ARGV[2]
end
return string.format('%d', cur)
