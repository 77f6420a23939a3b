-- whd_enqueue: creates webhook delivery rows and queues them (fan-out and replay;
-- src/events/fanout.ts, src/events/deliveries.ts). One call per relayed batch / replay
-- chunk, so a row, its queue entry and its index entry appear together or not at all.
--  * fan-out ('fanout'): the delivery id is derived from (subscription, event), and a row
--    that already exists is left alone, so an event relayed twice after a crash is
--    queued once (idempotent under re-relay);
--  * replay ('replay'): fresh ids; the replay's outstanding count (the REPLAY_IN_PROGRESS
--    lock ends when it reaches 0, whd_finish.lua) grows by the rows created.
-- Only a subscription whose record says ACTIVE right now gets a row: PAUSED / DISABLED /
-- deleted ones get nothing (spec: events during a pause are not queued), whatever the
-- caller's in-memory table said. Fan-out also skips an event older than the subscription
-- (relayed late, after the subscription was created): a subscription receives the events
-- that happen from its creation on; replay is the way to older ones.
-- Queue order: member = <16-digit seq>|<delivery_id>, score = due ms, so deliveries that
-- are due at the same ms leave in the order they were queued (stream order per tenant).
-- The per-subscription index uses the same member with score = created ms: lists show
-- deliveries created in the same ms in queue order too.
-- One call per owner (fanout.ts groups the items): every key is in the owner's slot
-- `{t:<owner>}`, the subscription records included (DK13). The caller then marks the owner
-- in the dispatcher's cross-slot index (whd_owners.lua, DK14) when `scheduled` (rows that
-- made a queue eligible: its subscription was not leased; a leased queue is rescheduled by
-- its holder's release) is not 0.
-- Returns {created, duplicate, inactive, scheduled}.
-- KEYS: 1 the owner's seq counter, 2 the owner's due-subscriptions zset, 3 replay outstanding counter, 4 replay
--       lock, then 5 per item: row hash, sub due zset, sub deliveries index, subscription
--       record, sub lease
-- ARGV: 1 retention ms, 2 mode, 3 replay id, 4 replay lock ttl ms, then 7 per item:
--       delivery id, subscription id, event id, event type, trace id, trace flags, event ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local retention = tonumber(ARGV[1])
local mode = ARGV[2]
local replay_id = ARGV[3]
local n = (#KEYS - 4) / 5
local created, duplicate, inactive, scheduled = 0, 0, 0, 0
local trimmed = {}

for i = 1, n do
  local kb = 4 + (i - 1) * 5
  local row, due, bysub, rec, lease = KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4], KEYS[kb + 5]
  local ab = 4 + (i - 1) * 7
  local id, sub, evt, etype, trace, flags = ARGV[ab + 1], ARGV[ab + 2], ARGV[ab + 3], ARGV[ab + 4], ARGV[ab + 5], ARGV[ab + 6]
  local evt_ms = tonumber(ARGV[ab + 7]) or 0
  local st = false
  if mode == 'fanout' and redis.call('EXISTS', row) == 1 then
    duplicate = duplicate + 1
  else
    st = redis.call('HMGET', rec, 'status', 'created_at_ms')
  end
  if not st then
    -- counted above
  elseif st[1] ~= 'ACTIVE' or (mode == 'fanout' and evt_ms < (tonumber(st[2]) or 0)) then
    inactive = inactive + 1
  else
    local seq = redis.call('INCR', KEYS[1])
    local member = string.format('%016d', seq) .. '|' .. id
    local f = {'delivery_id', id, 'subscription_id', sub, 'event_id', evt, 'event_type', etype,
      'status', 'PENDING', 'attempts', '0', 'created_ms', tostring(now), 'q', member}
    if trace ~= '' then f[#f + 1] = 'trace_id'; f[#f + 1] = trace end
    if flags ~= '' then f[#f + 1] = 'trace_flags'; f[#f + 1] = flags end
    if mode == 'replay' then f[#f + 1] = 'rp'; f[#f + 1] = replay_id end
    redis.call('HSET', row, unpack(f))
    redis.call('PEXPIRE', row, retention)
    redis.call('ZADD', due, now, member)
    redis.call('ZADD', bysub, now, member)
    if not trimmed[bysub] then
      -- the index leaves with its rows (and the whole key after a quiet retention period)
      redis.call('ZREMRANGEBYSCORE', bysub, '-inf', '(' .. tostring(now - retention))
      redis.call('PEXPIRE', bysub, retention)
      trimmed[bysub] = true
    end
    -- A leased queue is rescheduled by its holder when it lets go (whd_release.lua).
    if redis.call('EXISTS', lease) == 0 then
      redis.call('ZADD', KEYS[2], 'LT', now, sub)
      scheduled = scheduled + 1
    end
    created = created + 1
  end
end

if mode == 'replay' then
  if created > 0 then
    redis.call('INCRBY', KEYS[3], created)
    redis.call('PEXPIRE', KEYS[3], ARGV[4])
    redis.call('PEXPIRE', KEYS[4], ARGV[4])
  end
end
return {created, duplicate, inactive, scheduled}
