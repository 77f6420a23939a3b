-- whd_owners: the dispatcher's index of owners (tenants, `__system__`) that may have due
-- webhook deliveries (docs/decisions.md DK14). The delivery keys of an owner live in its
-- own slot (DK13), so this index cannot be written inside the delivery scripts: it is
-- written right after them, and kept a LOWER BOUND of when each owner next has work:
--   'mark'   after a write that may make the owner due sooner (enqueue, release, repair):
--            score lowered to ARGV[2] (added when absent), generation + 1.
--   'due'    owners scored <= now, up to ARGV[1], each with its generation.
--   'settle' after a claim: the owner's real next time ARGV[3] ('' = nothing queued) is
--            written only if no 'mark' came in since the 'due' read (generation still
--            ARGV[2]); otherwise the entry is only lowered. So a claim that raced an
--            enqueue never hides the enqueued work behind a later score.
-- A crash between a delivery script and its 'mark' is caught by the repair sweep
-- (src/events/dispatch.ts), which marks every owner whose own zset holds work.
-- KEYS: 1 owners zset, 2 owner → generation hash (one slot: the `{cycles:whd}` tag)
-- ARGV: 1 mode, then per mode: mark (owner, score) | due (limit) | settle (owner, gen, next)
local mode = ARGV[1]
if mode == 'mark' then
  redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[2])
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  return 1
end
if mode == 'due' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local owners = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  local out = {}
  for _, o in ipairs(owners) do
    out[#out + 1] = o
    out[#out + 1] = redis.call('HGET', KEYS[2], o) or '0'
  end
  return out
end
if mode == 'settle' then
  local owner, gen, nxt = ARGV[2], ARGV[3], ARGV[4]
  if (redis.call('HGET', KEYS[2], owner) or '0') == gen then
    if nxt == '' then redis.call('ZREM', KEYS[1], owner) else redis.call('ZADD', KEYS[1], nxt, owner) end
  elseif nxt ~= '' then
    redis.call('ZADD', KEYS[1], 'LT', nxt, owner)
  end
  return 1
end
return redis.error_reply('whd_owners: unknown mode ' .. tostring(mode))
