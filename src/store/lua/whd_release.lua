-- whd_release: a dispatcher lets go of a subscription's queue after working on it and
-- reschedules the queue by its head entry (or drops it from the scheduler when empty).
-- A queue held by another token is left to that holder. Keys: the owner's slot (DK13).
-- KEYS: 1 the owner's due-subscriptions zset, 2 the subscription's due zset, 3 its lease
-- ARGV: 1 token, 2 subscription id
-- Returns the earliest score left in the owner's zset ('' when empty; false when the queue
-- was someone else's): the caller lowers the owner's entry in the cross-slot index (DK14).
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then return false end
if holder then redis.call('DEL', KEYS[3]) end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #head == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
else
  redis.call('ZADD', KEYS[1], head[2], ARGV[2])
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return first[2] or ''
