-- whd_unlock: ends a replay's REPLAY_IN_PROGRESS lock if it is still this replay's (a
-- replay that queued nothing, or failed before queueing anything).
-- KEYS: 1 lock   ARGV: 1 replay id
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
