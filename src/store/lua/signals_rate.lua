-- signals_rate.lua: a tenant's reservation.denial_rate_spike / reservation.expiry_rate_spike,
-- run by the signals hook of the event relay for each relayed batch that holds
-- reservation.denied or reservation.expired entries (src/events/signals/rates.ts,
-- docs/decisions.md DV33).
-- @include ledger_common.lua
-- @include signals_worker.lua
--
-- Counting: the entry ids go into HyperLogLogs per metric and time bucket
-- (`<prefix><metric>:<bucket start>`; the prefix is keys.signalBucketPrefix(tenant), so
-- every key is in the tenant's slot). Adding an id twice counts it once, so a batch the
-- relay hands over again (at-least-once) or out of order is harmless. The caller names
-- every bucket key in KEYS (docs/decisions.md DK20): it reads Redis TIME itself and passes
-- it as `now`, so the window it declared is the window judged here.
-- Denominators: live reservations created in the window (ZCOUNT of the tenant's
-- created-at index, KEYS[3]), which no request had to count for us.
--   denial_rate = denied / (denied + created)
--   expiry_rate = expired / max(created, expired)      (flow ratio: expiries lag creation)
-- Judged only on >= min_samples samples; hysteresis per metric (signal_judge).
--
-- KEYS: 1 state hash (keys.signals), 2 outbox, 3 reservation index (res-by-created),
--       4.. bucket HyperLogLogs
-- ARGV: 1 JSON {now (Redis TIME ms), bucket_ms, window_ms, min_samples, rearm,
--               metrics = {denied = {first, last, add = {{k, ids}, ...}}, expired = {...}},
--               thresholds = {denied = x, expired = y}}
--   per metric: KEYS[first..last] = the window's buckets; add: ids for bucket KEYS[k]
-- Returns JSON {emitted = [event types]}.

local p = cjson.decode(ARGV[1])
local state_key, outbox_key, index_key = KEYS[1], KEYS[2], KEYS[3]
local now = p.now
local ttl = string.format('%d', p.window_ms + 2 * p.bucket_ms)

local METRICS = {
  denied = {name = 'denial_rate', event = 'reservation.denial_rate_spike'},
  expired = {name = 'expiry_rate', event = 'reservation.expiry_rate_spike'},
}

local created = nil
local emitted = {}
for metric, mk in pairs(p.metrics) do
  local m = METRICS[metric]
  if m then
    for _, a in ipairs(mk.add) do
      if #a.ids > 0 then
        local key = KEYS[a.k]
        redis.call('PFADD', key, unpack(a.ids))
        redis.call('PEXPIRE', key, ttl)
      end
    end
    local count = redis.call('PFCOUNT', unpack(KEYS, mk.first, mk.last))
    if created == nil then
      created = redis.call('ZCOUNT', index_key, '(' .. string.format('%d', now - p.window_ms), '+inf')
    end
    local samples, rate
    if metric == 'denied' then
      samples = count + created
      rate = samples > 0 and count / samples or 0
    else
      samples = math.max(created, count)
      rate = samples > 0 and count / samples or 0
    end
    local threshold = p.thresholds[metric]
    local high = samples >= p.min_samples and rate >= threshold
    local low = rate < threshold * p.rearm
    if signal_judge(state_key, m.name, high, low, now, p.window_ms) then
      signal_outbox(outbox_key, m.event, {
        metric = m.name, current_rate = rate, threshold_rate = threshold,
        window_seconds = math.floor(p.window_ms / 1000), sample_count = samples,
      }, now, {actor_json = '{"type":"system"}'}, 'anomaly-detector')
      emitted[#emitted + 1] = m.event
    end
  end
end
redis.call('PEXPIRE', state_key, string.format('%d', math.max(p.window_ms * 4, 86400000)))
if #emitted == 0 then return '{"emitted":[]}' end
return cjson.encode({emitted = emitted})
