-- signals_worker.lua: helpers of the signal scripts that run off the request path
-- (signals_rate.lua, signals_system.lua, signals_burn.lua, signals_store.lua; docs/decisions.md
-- DV33–DV37). Library only. Kept apart from signals_common.lua so the ledger scripts do not
-- carry them. Include after ledger_common.lua.

-- Outbox append with Event.source (the ledger scripts' outbox() leaves it to the default).
local function signal_outbox(outbox_key, event_type, data, now, ctx, source)
  local fields = {'type', event_type, 'data', cjson.encode(data), 'ts_ms', tostring(now),
    'trace_id', ctx.trace_id or '', 'request_id', ctx.request_id or '', 'actor', ctx.actor_json or '{"type":"system"}'}
  if ctx.scope and ctx.scope ~= '' then fields[#fields + 1] = 'scope'; fields[#fields + 1] = ctx.scope end
  if source then fields[#fields + 1] = 'source'; fields[#fields + 1] = source end
  return redis.call('XADD', outbox_key, '*', unpack(fields))
end

-- Hysteresis of one signal whose value is re-judged over a rolling window. State (hash
-- state_key): `<name>` = '1' while fired, `<name>:hi` = ms of the last high observation.
-- high: the value is over its threshold now; low: it is below the re-arm level. Returns
-- true exactly when the caller must emit (a high after being armed). A fired signal
-- re-arms on a low observation, or after a whole window without a high one (traffic that
-- stopped is not observed as low, but must not suppress the next spike forever).
local function signal_judge(state_key, name, high, low, now, window_ms)
  local st = redis.call('HMGET', state_key, name, name .. ':hi')
  local fired = st[1] == '1' and (now - (tonumber(st[2] or '0') or 0)) < window_ms
  if high then
    redis.call('HSET', state_key, name, '1', name .. ':hi', tostring(now))
    return not fired
  end
  if st[1] == '1' and (not fired or low) then redis.call('HSET', state_key, name, '0') end
  return false
end
