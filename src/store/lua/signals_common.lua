-- signals_common.lua: budget signals derived inside the ledger scripts from values the
-- script already holds (docs/decisions.md DV31, DV32). Library only: local definitions,
-- no top-level code. Include after ledger_common.lua (and reservation_common.lua when
-- util_signal_plans is used).
--
-- budget.threshold_crossed. utilization = (spent + reserved) / allocated (EventDataBudget-
-- Threshold), checked against UTIL_THRESHOLDS (ascending) whenever a script changes one of
-- the three. State: the budget hash field `sig_util` = how many thresholds are currently
-- crossed rising (missing = 0). Rising: each threshold above the state that utilization now
-- reaches fires once, `direction` rising. Falling: a crossed threshold fires once more,
-- `direction` falling, only when utilization drops below it by UTIL_REARM_BAND, and that
-- re-arms it. Without the band a budget hovering at 80% would emit on every reserve and
-- release. Both constants are replaced at load time from CYCLES_SIGNAL_BUDGET_THRESHOLDS /
-- CYCLES_SIGNAL_THRESHOLD_REARM_BAND (src/store/scripts.ts setScriptConstants).
local UTIL_THRESHOLDS = {0.8, 0.95, 1} -- @const
local UTIL_REARM_BAND = 0.05 -- @const

-- Utilization as a double (ratios need no int64 exactness), nil when allocated <= 0.
local function util_of(allocated, spent, reserved)
  local a = tonumber(allocated)
  if not a or a <= 0 then return nil end
  return ((tonumber(spent) or 0) + (tonumber(reserved) or 0)) / a
end

-- Checks one budget after a change. u0: utilization before (nil = undefined); s: the row
-- after the change {allocated, remaining, spent, reserved} (int64 strings); lvl: the
-- stored sig_util when the caller already read the hash (nil = read it here, only when
-- utilization is near a threshold, so the common case costs no Redis call).
local function util_signal(key, scope, unit, u0, s, lvl, now, outbox_key, ctx)
  local n = #UTIL_THRESHOLDS
  if n == 0 then return end
  local u1 = util_of(s.allocated, s.spent, s.reserved)
  if u1 == nil then return end
  local low = UTIL_THRESHOLDS[1]
  -- Far below every threshold before (so nothing was crossed) and still below: nothing to do.
  if (u0 == nil or u0 < low - UTIL_REARM_BAND) and u1 < low then return end
  local cur = tonumber(lvl or redis.call('HGET', key, 'sig_util') or '0') or 0
  if cur > n then cur = n end
  local ectx = {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json,
    correlation_id = ctx.correlation_id, scope = scope}
  local function emit(t, direction)
    outbox(outbox_key, 'budget.threshold_crossed', cjson.encode({
      scope = scope, unit = unit, threshold = t, utilization = u1, direction = direction,
      allocated = s.allocated, remaining = s.remaining, spent = s.spent, reserved = s.reserved,
    }), now, ectx)
  end
  local nxt = cur
  while nxt < n and u1 >= UTIL_THRESHOLDS[nxt + 1] do
    nxt = nxt + 1
    emit(UTIL_THRESHOLDS[nxt], 'rising')
  end
  if nxt == cur then
    while nxt > 0 and u1 < UTIL_THRESHOLDS[nxt] - UTIL_REARM_BAND do
      emit(UTIL_THRESHOLDS[nxt], 'falling')
      nxt = nxt - 1
    end
  end
  if nxt ~= cur then redis.call('HSET', key, 'sig_util', tostring(nxt)) end
end

-- util_signal for every budget a reservation script planned (reservation_common.lua
-- shapes: budgets[i] = {key, scope, b = row before}, plans[i] = {remaining, spent,
-- reserved}); allocated does not change in those scripts.
local function util_signal_plans(budgets, plans, unit, now, outbox_key, ctx)
  for i, e in ipairs(budgets) do
    local b, p = e.b, plans[i]
    util_signal(e.key, e.scope, unit, util_of(b.allocated, b.spent, b.reserved),
      {allocated = b.allocated, remaining = p.remaining, spent = p.spent, reserved = p.reserved}, nil, now, outbox_key, ctx)
  end
end

-- budget.over_limit_entered / budget.over_limit_exited when a script recomputed
-- is_over_limit (funding, updateBudget): `was`/`now_over` are the flag before/after ('1'/'0').
local function over_limit_signal(outbox_key, scope, unit, was, now_over, debt, limit, now, ctx)
  local was_over = (was == '1')
  local is_over = (now_over == '1')
  if was_over == is_over then return end
  local data = {scope = scope, unit = unit, debt = debt, overdraft_limit = limit, is_over_limit = is_over}
  local l = tonumber(limit)
  if l and l > 0 then data.debt_utilization = (tonumber(debt) or 0) / l end
  outbox(outbox_key, is_over and 'budget.over_limit_entered' or 'budget.over_limit_exited', cjson.encode(data), now,
    {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json,
     correlation_id = ctx.correlation_id, scope = scope})
end

