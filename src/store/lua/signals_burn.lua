-- signals_burn.lua: budget.burn_rate_anomaly for a batch of one tenant's budgets, run by
-- the burn-rate sampler (src/events/signals/burn.ts, docs/decisions.md DV34). Nothing on
-- the request path: the sampler reads `spent`, which every commit already maintains.
-- @include ledger_common.lua
-- @include signals_worker.lua
--
-- Per budget, state (KEYS[1] field "<scope>|<unit>") = "<ts>,<spent>,<baseline>,<n>,<fired>":
-- once a full window has passed since <ts>, current_rate = (spent - <spent>) / elapsed
-- minutes. When at least min_windows rates are in the baseline and it is > 0:
-- multiplier = current / baseline; >= multiplier threshold fires once (fired = 1); the
-- signal re-arms below threshold × rearm. The baseline is an exponential moving average
-- (weight alpha) of the rates of windows that spent anything: idle windows (nights,
-- weekends) neither dilute it nor make the next ordinary day an anomaly. A drop of spent
-- (RESET_SPENT: a new period) restarts the window without a rate. Atomic per call, and a
-- budget is judged at most once per window whoever calls: safe with several workers.
--
-- KEYS: 1 burn state hash (keys.signalsBurn), 2 outbox, 3.. budget hashes
-- ARGV: 1 JSON {window_ms, multiplier, rearm, min_windows, alpha}
-- Returns the number of events written.

local p = cjson.decode(ARGV[1])
local state_key, outbox_key = KEYS[1], KEYS[2]
local now = now_ms()
local written = 0

for i = 3, #KEYS do
  local b = redis.call('HMGET', KEYS[i], 'scope', 'unit', 'spent', 'remaining', 'status')
  local scope, unit, spent = b[1], b[2], tonumber(b[3] or '')
  if scope and unit and spent and b[5] ~= 'CLOSED' then
    local field = scope .. '|' .. unit
    local st = redis.call('HGET', state_key, field)
    local ts, prev, base, n, fired
    if st then
      local parts = {}
      for v in string.gmatch(st, '[^,]+') do parts[#parts + 1] = v end
      ts, prev, base, n, fired = tonumber(parts[1]), tonumber(parts[2]), tonumber(parts[3]), tonumber(parts[4]), parts[5] == '1'
    end
    if not (ts and prev and base and n) then
      redis.call('HSET', state_key, field, string.format('%d,%s,-1,0,0', now, b[3]))
    elseif now - ts >= p.window_ms then
      local delta = spent - prev
      if delta < 0 then
        -- a new period (RESET_SPENT): restart the window, keep what the baseline learned
        redis.call('HSET', state_key, field, string.format('%d,%s,%s,%d,0', now, b[3], tostring(base), n))
      else
        local minutes = (now - ts) / 60000
        local rate = delta / minutes
        if n >= p.min_windows and base > 0 then
          local mult = rate / base
          if mult >= p.multiplier then
            if not fired then
              local remaining = tonumber(b[4] or '0') or 0
              local data = {scope = scope, unit = unit, current_rate = rate, baseline_rate = base, multiplier = mult,
                window_seconds = math.floor(p.window_ms / 1000)}
              if rate > 0 and remaining > 0 then data.projected_exhaustion_minutes = remaining / rate
              elseif remaining <= 0 then data.projected_exhaustion_minutes = 0 end
              signal_outbox(outbox_key, 'budget.burn_rate_anomaly', data, now,
                {actor_json = '{"type":"system"}', scope = scope}, 'anomaly-detector')
              written = written + 1
            end
            fired = true
          elseif mult < p.multiplier * p.rearm then
            fired = false
          end
        end
        if delta > 0 then
          if n == 0 or base <= 0 then base = rate else base = base + p.alpha * (rate - base) end
          n = n + 1
        end
        redis.call('HSET', state_key, field,
          string.format('%d,%s,%s,%d,%s', now, b[3], tostring(base), math.min(n, 1000000), fired and '1' or '0'))
      end
    end
  end
end
return written
