-- whd_claim: a dispatcher takes the due work of up to N subscriptions of one owner
-- (src/events/dispatch.ts). Every key is in the owner's slot `{t:<owner>}` (DK13); the
-- dispatcher finds owners with due work in keys.webhookDueOwners() (DK14).
-- The unit of ownership is a subscription's queue, held by a lease (a key with the
-- worker's token and a PX bound). One holder per queue keeps a subscription's first
-- attempts in order and bounds what one slow receiver can occupy; a worker that dies
-- stops renewing, and once the lease ends its queue (still intact: entries leave only in
-- whd_finish.lua) is taken again: at-least-once.
-- The scheduler zset scores each subscription by when it is next eligible: its head due
-- time, or the end of its lease while held. Only entries scored <= now are taken, so a busy
-- or slow subscription never stands in front of the others.
-- The caller reads the owner's zset first (its lowest-scored members) and declares each
-- candidate's queue and lease, so every key the script touches is in KEYS (DK13); the
-- script re-checks each candidate's score against the Redis clock.
-- KEYS: 1 the owner's due-subscriptions zset, then per candidate i: 2i its due zset,
--       2i + 1 its lease
-- ARGV: 1 token, 2 lease ms, 3 max subscriptions, 4 max entries per subscription,
--       5.. candidate subscription ids
-- Returns {{{subscription_id, {member, ...}}, ...}, next} where next is the earliest score
-- left in the owner's zset ('' when it is empty): when the owner is next worth a look.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token, lease_ms = ARGV[1], tonumber(ARGV[2])
local max_subs, per_sub = tonumber(ARGV[3]), tonumber(ARGV[4])

local out = {}
for i = 5, #ARGV do
  if #out >= max_subs then break end
  local sub = ARGV[i]
  local dk, lk = KEYS[2 * (i - 4)], KEYS[2 * (i - 4) + 1]
  local score = tonumber(redis.call('ZSCORE', KEYS[1], sub))
  if score and score <= now then
    local pttl = redis.call('PTTL', lk)
    if pttl == -1 then
      redis.call('PEXPIRE', lk, lease_ms)
      pttl = lease_ms
    end
    if pttl > 0 then
      redis.call('ZADD', KEYS[1], 'XX', now + pttl, sub)
    else
      local items = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, per_sub)
      if #items == 0 then
        local head = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
        if #head == 0 then redis.call('ZREM', KEYS[1], sub) else redis.call('ZADD', KEYS[1], 'XX', head[2], sub) end
      else
        redis.call('SET', lk, token, 'PX', lease_ms)
        redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, sub)
        out[#out + 1] = {sub, items}
      end
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {out, first[2] or ''}
