-- @include ledger_common.lua
-- whd_finish: records the outcome of one delivery attempt (src/events/dispatch.ts), with
-- everything that follows from it, in one atomic step:
--   'ok'   2xx: SUCCESS; the subscription's consecutive_failures back to 0.
--   'fail' anything else: RETRYING with next_retry = now + min(initial × mult^(n−1), max)
--          after the n-th attempt, or, once max_retries + 1 attempts are spent, FAILED with
--          one system.webhook_delivery_failed event and consecutive_failures + 1; reaching
--          disable_after_failures turns an ACTIVE/PAUSED subscription DISABLED with exactly
--          one webhook.disabled event (the status check and the change are in this step, so
--          two workers cannot both disable it).
--   'skip' not sent (subscription deleted / not ACTIVE, event gone, URL refused before any
--          connection is not a skip — it is a failed attempt): FAILED, no counters.
-- A row already SUCCESS/FAILED is left alone (a duplicate finish after a reclaim). A queue
-- leased by another worker means this worker lost it: nothing is written ('stale').
-- Writes the delivery keys and the subscription's record and outbox together: all of them
-- are in the owner's slot `{t:<owner>}` (DK13). The one cross-tenant key an auto-disable
-- moves, the webhooks version, is INCRed by the caller when the reply says `disabled`.
-- KEYS: 1 row, 2 the subscription's due zset, 3 its lease, 4 subscription record,
--       5 outbox of the subscription's owner, 6 its replay lock, 7 the outstanding counter
--       of replay ARGV[7] (the row's `rp` as the caller read it)
-- ARGV: 1 token, 2 outcome, 3 response status ('' none), 4 response time ms ('' none),
--       5 error message ('' none), 6 queue member (used when the row is gone),
--       7 the row's replay id as read by the caller ('' none or unknown), 8 unused,
--       9 event ctx JSON {trace_id, request_id}, 10 subscription id, 11 its tenant id
local now = now_ms()
local token, outcome = ARGV[1], ARGV[2]
local sub_id, owner = ARGV[10], ARGV[11]
local rec_status = redis.call('HGET', KEYS[4], 'status')
local function reply(t)
  t.sub_status = rec_status or 'DELETED'
  return cjson.encode(t)
end

local row = hgetall(KEYS[1])
if not row then
  redis.call('ZREM', KEYS[2], ARGV[6])
  return reply({state = 'gone'})
end
if row.status == 'SUCCESS' or row.status == 'FAILED' then
  if row.q then redis.call('ZREM', KEYS[2], row.q) end
  return reply({state = 'done'})
end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= token then return reply({state = 'stale'}) end

-- A replay's lock (REPLAY_IN_PROGRESS) ends when its last delivery is final.
-- Its counter is the declared KEYS[7] when the caller named the row's replay (it reads the
-- row before sending; a replay id never changes). A caller that could not (the row was
-- unreadable) leaves the counter alone: the lock then ends by its TTL (DV26's 24 h bound).
local function replay_done()
  local rp = row.rp
  if not rp or rp == '' or rp ~= ARGV[7] then return end
  local left = redis.call('DECR', KEYS[7])
  if left <= 0 then
    redis.call('DEL', KEYS[7])
    if redis.call('GET', KEYS[6]) == rp then redis.call('DEL', KEYS[6]) end
  end
end

local function set_result(fields)
  if ARGV[3] ~= '' then fields[#fields + 1] = 'response_status'; fields[#fields + 1] = ARGV[3] end
  if ARGV[4] ~= '' then fields[#fields + 1] = 'response_time_ms'; fields[#fields + 1] = ARGV[4] end
  if ARGV[5] ~= '' then fields[#fields + 1] = 'error_message'; fields[#fields + 1] = ARGV[5] end
  redis.call('HSET', KEYS[1], unpack(fields))
  local gone = {}
  if ARGV[3] == '' then gone[#gone + 1] = 'response_status' end
  if ARGV[4] == '' then gone[#gone + 1] = 'response_time_ms' end
  if ARGV[5] == '' then gone[#gone + 1] = 'error_message' end
  if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
end

if outcome == 'skip' then
  set_result({'status', 'FAILED', 'completed_ms', tostring(now)})
  redis.call('HDEL', KEYS[1], 'next_retry_ms')
  redis.call('ZREM', KEYS[2], row.q)
  replay_done()
  return reply({state = 'FAILED'})
end

local attempts = (tonumber(row.attempts or '0') or 0) + 1
local rt = tonumber(ARGV[4]) or 0
local attempted = tostring(now - math.floor(rt))
local exists = rec_status ~= false and rec_status ~= nil

if outcome == 'ok' then
  set_result({'status', 'SUCCESS', 'attempts', tostring(attempts), 'attempted_ms', attempted,
    'completed_ms', tostring(now)})
  redis.call('HDEL', KEYS[1], 'next_retry_ms')
  redis.call('ZREM', KEYS[2], row.q)
  replay_done()
  if exists then
    redis.call('HSET', KEYS[4], 'consecutive_failures', '0', 'last_success_at_ms', tostring(now),
      'last_triggered_at_ms', tostring(now))
  end
  return reply({state = 'SUCCESS', attempts = attempts})
end

-- 'fail': the subscription's current policy decides (defaults when unreadable).
local policy = {max_retries = 5, initial_delay_ms = 1000, backoff_multiplier = 2.0, max_delay_ms = 60000}
if exists then
  local raw = redis.call('HGET', KEYS[4], 'retry_policy')
  if raw then
    local ok, p = pcall(cjson.decode, raw)
    if ok and type(p) == 'table' then
      for k, _ in pairs(policy) do
        if type(p[k]) == 'number' then policy[k] = p[k] end
      end
    end
  end
  redis.call('HSET', KEYS[4], 'last_failure_at_ms', tostring(now), 'last_triggered_at_ms', tostring(now))
end

if attempts < policy.max_retries + 1 then
  local delay = policy.initial_delay_ms * (policy.backoff_multiplier ^ (attempts - 1))
  if delay > policy.max_delay_ms then delay = policy.max_delay_ms end
  local next_ms = now + math.floor(delay)
  set_result({'status', 'RETRYING', 'attempts', tostring(attempts), 'attempted_ms', attempted,
    'next_retry_ms', tostring(next_ms)})
  redis.call('ZADD', KEYS[2], next_ms, row.q)
  return reply({state = 'RETRYING', attempts = attempts, next_retry_ms = next_ms})
end

set_result({'status', 'FAILED', 'attempts', tostring(attempts), 'attempted_ms', attempted,
  'completed_ms', tostring(now)})
redis.call('HDEL', KEYS[1], 'next_retry_ms')
redis.call('ZREM', KEYS[2], row.q)
replay_done()

local ctx = cjson.decode(ARGV[9])
ctx.actor_json = '{"type":"system"}'
local details = {subscription_id = sub_id, tenant_id = owner, delivery_id = row.delivery_id,
  event_id = row.event_id, event_type = row.event_type, attempts = attempts}
if ARGV[3] ~= '' then details.last_response_status = tonumber(ARGV[3]) end
if ARGV[5] ~= '' then details.last_error = ARGV[5] end
ctx.correlation_id = 'webhook_delivery_failed:' .. sub_id .. ':' .. row.delivery_id
outbox(KEYS[5], 'system.webhook_delivery_failed', cjson.encode({component = 'webhook_dispatcher',
  severity = 'warning', details = details,
  message = 'Webhook delivery ' .. row.delivery_id .. ' of event ' .. (row.event_id or '?') .. ' to subscription '
    .. sub_id .. ' failed after ' .. attempts .. ' attempts'}), now, ctx)

local disabled = false
if exists then
  local failures = redis.call('HINCRBY', KEYS[4], 'consecutive_failures', 1)
  local threshold = tonumber(redis.call('HGET', KEYS[4], 'disable_after_failures') or '10') or 10
  if failures >= threshold and (rec_status == 'ACTIVE' or rec_status == 'PAUSED') then
    local rev = (tonumber(redis.call('HGET', KEYS[4], 'rev') or '0') or 0) + 1
    redis.call('HSET', KEYS[4], 'status', 'DISABLED', 'updated_at_ms', tostring(now), 'rev', tostring(rev))
    ctx.correlation_id = 'webhook_auto_disable:' .. sub_id .. ':' .. row.delivery_id
    outbox(KEYS[5], 'webhook.disabled', cjson.encode({subscription_id = sub_id, tenant_id = owner,
      previous_status = rec_status, new_status = 'DISABLED',
      disable_reason = 'consecutive_failures_exceeded_threshold'}), now, ctx)
    disabled = true
    rec_status = 'DISABLED'
  end
end
return reply({state = 'FAILED', attempts = attempts, disabled = disabled})
