-- whd_release: a dispatcher is done with one claimed batch of a subscription's queue. Either
-- it goes on with the same queue (ARGV[3] > 0 and due entries are left: the lease is renewed
-- and the next batch returned, one round trip instead of a release, an index write and a new
-- claim), or it lets go and reschedules the queue by its head entry (or drops it from the
-- scheduler when empty). A queue held by another token is left to that holder. Keys: the
-- owner's slot (DK13).
-- KEYS: 1 the owner's due-subscriptions zset, 2 the subscription's due zset, 3 its lease
-- ARGV: 1 token, 2 subscription id, 3 most entries of a next batch (0 = let go), 4 lease ms
-- Returns {'next', {member, ...}} when going on; {'released', first} after letting go, first =
-- the earliest score left in the owner's zset ('' when empty), which the caller writes to the
-- cross-slot index (DK14); false when the queue was someone else's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then return false end
local more = tonumber(ARGV[3]) or 0
if holder and more > 0 then
  local items = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, more)
  if #items > 0 then
    local lease_ms = tonumber(ARGV[4])
    redis.call('PEXPIRE', KEYS[3], lease_ms)
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, ARGV[2])
    return {'next', items}
  end
end
if holder then redis.call('DEL', KEYS[3]) end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #head == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
else
  redis.call('ZADD', KEYS[1], head[2], ARGV[2])
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {'released', first[2] or ''}
