-- signals_system.lua: one HTTP process's flush of its request counters, and the judgement
-- of the system-wide api_key.auth_failure_rate_spike and system.high_latency over every
-- process's flushes (src/events/signals/observer.ts, docs/decisions.md DV35, DV36).
-- @include ledger_common.lua
-- @include signals_worker.lua
--
-- Counters: one hash per time bucket, `<prefix>sys:<bucket start>` (prefix =
-- keys.signalBucketPrefix('__system__')), fields `a` (requests that needed a credential),
-- `f` (of those, answered 401), `n` (requests timed), `l<i>` (requests whose duration fell
-- in latency bucket i; bounds in ARGV). Every process adds its own counts, so the window
-- sums are the deployment's.
--   auth_failure_rate = f / a                     judged on a >= min_samples
--   p99 latency = upper bound of the histogram bucket holding the 99th percentile,
--                 judged on n >= min_samples; high when it exceeds p99_ms
--
-- KEYS: 1 state hash (keys.signals('__system__')), 2 outbox (keys.outbox('__system__')),
--       3.. the window's bucket hashes, oldest first; the last is the current bucket. The
--       caller reads Redis TIME to name them and passes it as `now` (docs/decisions.md DK20).
-- ARGV: 1 JSON {now (Redis TIME ms), bucket_ms, window_ms, min_samples, rearm, a, f,
--               lat = {counts}, bounds = {upper bounds ms; the last bucket is open},
--               auth_threshold, p99_ms (0 = off)}
-- Returns JSON {emitted = [event types]}.

local p = cjson.decode(ARGV[1])
local state_key, outbox_key = KEYS[1], KEYS[2]
local now = p.now
local nb = #p.bounds + 1

local cur = KEYS[#KEYS]
local timed = 0
for i = 1, nb do
  local c = tonumber(p.lat[i] or 0) or 0
  if c > 0 then redis.call('HINCRBY', cur, 'l' .. i, c); timed = timed + c end
end
if p.a > 0 then redis.call('HINCRBY', cur, 'a', p.a) end
if p.f > 0 then redis.call('HINCRBY', cur, 'f', p.f) end
if timed > 0 then redis.call('HINCRBY', cur, 'n', timed) end
redis.call('PEXPIRE', cur, string.format('%d', p.window_ms + 2 * p.bucket_ms))

local a, f, n = 0, 0, 0
local lat = {}
for i = 1, nb do lat[i] = 0 end
local fields = {'a', 'f', 'n'}
for i = 1, nb do fields[#fields + 1] = 'l' .. i end
for i = 3, #KEYS do
  local v = redis.call('HMGET', KEYS[i], unpack(fields))
  a = a + (tonumber(v[1]) or 0)
  f = f + (tonumber(v[2]) or 0)
  n = n + (tonumber(v[3]) or 0)
  for i = 1, nb do lat[i] = lat[i] + (tonumber(v[3 + i]) or 0) end
end

local emitted = {}
local system = {actor_json = '{"type":"system"}'}
local window_seconds = math.floor(p.window_ms / 1000)

local rate = a > 0 and f / a or 0
local high = a >= p.min_samples and rate >= p.auth_threshold
if signal_judge(state_key, 'auth_failure_rate', high, rate < p.auth_threshold * p.rearm, now, p.window_ms) then
  signal_outbox(outbox_key, 'api_key.auth_failure_rate_spike', {
    metric = 'auth_failure_rate', current_rate = rate, threshold_rate = p.auth_threshold,
    window_seconds = window_seconds, sample_count = a,
  }, now, system, 'anomaly-detector')
  emitted[#emitted + 1] = 'api_key.auth_failure_rate_spike'
end

if p.p99_ms > 0 then
  local p99 = 0
  local open = false
  if n > 0 then
    local target = math.ceil(n * 0.99)
    local acc = 0
    for i = 1, nb do
      acc = acc + lat[i]
      if acc >= target then
        if i < nb then p99 = p.bounds[i] else p99 = p.bounds[nb - 1]; open = true end
        break
      end
    end
  end
  local over = p99 > p.p99_ms or (open and p99 >= p.p99_ms)
  local lhigh = n >= p.min_samples and over
  if signal_judge(state_key, 'high_latency', lhigh, p99 < p.p99_ms * p.rearm, now, p.window_ms) then
    local shown = open and ('> ' .. p99 .. ' ms') or ('<= ' .. p99 .. ' ms')
    signal_outbox(outbox_key, 'system.high_latency', {
      component = 'api', severity = 'warning',
      message = 'p99 request latency ' .. shown .. ' over the last ' .. window_seconds .. ' s exceeds ' .. p.p99_ms .. ' ms',
      details = {p99_ms = p99, p99_open_ended = open, threshold_ms = p.p99_ms, window_seconds = window_seconds,
        sample_count = n},
    }, now, system, 'anomaly-detector')
    emitted[#emitted + 1] = 'system.high_latency'
  end
end
if #emitted == 0 then return '{"emitted":[]}' end
return cjson.encode({emitted = emitted})
