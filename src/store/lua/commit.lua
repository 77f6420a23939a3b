-- commit.lua: commit actual spend on an ACTIVE reservation (runtime commitReservation).
-- @include ledger_common.lua
-- @include reservation_common.lua
-- @include signals_common.lua
-- @include evidence_common.lua
-- @include reservation_record.lua
--
-- KEYS[1] reservation hash   KEYS[2] tenant hash   KEYS[3] outbox stream
-- KEYS[4] expiry schedule
-- KEYS[5..] (evidence on) the evidence source stream ARGV[11]; the budget keys of the reservation's budgeted scopes (any order; more is
--           harmless): missing ones → {"need_keys": [...]} before any write (DK8)
-- ARGV[1] budget key prefix "{t:<tenant>}:budget:"
-- ARGV[2] actual amount (int64 decimal)   ARGV[3] actual unit
-- ARGV[4] idempotency key   ARGV[5] payload hash
-- ARGV[6] metrics JSON ('' = none)   ARGV[7] metadata JSON ('' = none)
-- ARGV[8] trace id   ARGV[9] request id   ARGV[10] actor JSON
-- ARGV[11] evidence source stream ('' = evidence off)   ARGV[12] normalized request JSON
--          (evidence on: the stored result carries ev_ms / ev_trace and the evidence
--          source is appended in this step; evidence_common.lua, docs/decisions.md DEV6)
-- ARGV[13] retention ms of the finished reservation ('0' = held for the export job;
--          retain_finalized in ledger_common.lua, docs/decisions.md DX1/DX3)
--
-- Returns the stored result JSON (fresh commit and replay alike, byte-identical) or an
-- error JSON {error, message, details?}. Everything is checked before anything is written.
-- Overage semantics: docs/decisions.md "commit overage".

local res_key, tenant_key, outbox_key, schedule_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local budget_prefix = ARGV[1]
local actual = i64_norm(ARGV[2])
local unit = ARGV[3]
local idem_key, payload_hash = ARGV[4], ARGV[5]
local metrics_json, metadata_json = ARGV[6], ARGV[7]
local ctx = {trace_id = ARGV[8], request_id = ARGV[9], actor_json = ARGV[10]}
-- the evidence source stream is declared too (after the fixed KEYS, DK8)
local ev = (ARGV[11] or '') ~= '' and {key = KEYS[key_index(ARGV[11])], request = ARGV[12]} or nil

local r = res_read(res_key)
if not r then return script_error('NOT_FOUND', 'Reservation not found') end
-- the evaluation's error outcomes get `error` evidence (evidence_common.lua, DEV8)
local function ev_error(e_json)
  return evidence_error(ev, e_json, 'commit', r.tenant or '', ctx.trace_id, ctx.request_id, r.reservation_id)
end

-- Replay first: it outranks the tenant guard and every state check.
if r.status == 'COMMITTED' and r.commit_key == idem_key then
  if r.commit_hash ~= payload_hash then
    return script_error('IDEMPOTENCY_MISMATCH', 'Idempotency key was already used for a different commit payload')
  end
  -- the stored result (evidence on, or rows that did not pack), else rebuilt (DM3)
  if r.commit_result then return r.commit_result end
  return cjson.encode(commit_result_of(r, r.charged, bal_unpack(r.fbal or '', res_budgeted(r) or {}, r.unit)))
end

local gerr = guard_error(tenant_key)
if gerr then return ev_error(gerr) end
if r.status ~= 'ACTIVE' then return ev_error(state_error(r.status)) end

if actual == nil or i64_is_neg(actual) then
  return script_error('INVALID_REQUEST', 'actual.amount must be an int64 >= 0')
end
if unit ~= r.unit then
  return ev_error(script_error('UNIT_MISMATCH', 'actual.unit ' .. unit .. ' differs from the reservation unit ' .. tostring(r.unit),
    {scope = r.scope_path, requested_unit = unit, expected_units = {r.unit}}))
end

local now = now_ms()
if now > tonumber(r.expires_at_ms) + tonumber(r.grace_ms or '0') then
  return ev_error(script_error('RESERVATION_EXPIRED', 'Reservation expired (past expires_at_ms + grace_period_ms)'))
end

local nk = need_reservation_keys(budget_prefix, r, false)
if nk then return nk end
local estimate = r.estimate
local budgets = load_budgets(budget_prefix, r)
if not budgets then return script_error('INTERNAL_ERROR', 'Reservation record has no readable budgeted scopes') end

local over = i64_cmp(actual, estimate) > 0
local policy = r.overage_policy
if policy == nil or policy == '' then policy = 'ALLOW_IF_AVAILABLE' end

-- capped: the overage actually charged on every scope (same on all: one `charged`).
local delta = over and i64_sub(actual, estimate) or '0'
local capped = delta
local mark = {}       -- index -> true: scope could not cover the full delta
if over then
  if policy == 'REJECT' then
    return ev_error(script_error('BUDGET_EXCEEDED', 'actual exceeds the reservation estimate and the overage policy is REJECT',
      {overage_policy = policy, estimate = estimate, actual = actual}))
  elseif policy ~= 'ALLOW_IF_AVAILABLE' and policy ~= 'ALLOW_WITH_OVERDRAFT' then
    return script_error('INTERNAL_ERROR', 'Reservation has an unknown overage policy')
  end
  for i, e in ipairs(budgets) do
    -- ALLOW_IF_AVAILABLE caps on every scope; ALLOW_WITH_OVERDRAFT only on scopes that
    -- permit no overdraft (limit 0 ⇒ behaves as ALLOW_IF_AVAILABLE, Balance OVERDRAFT LIMIT).
    if policy == 'ALLOW_IF_AVAILABLE' or not i64_is_pos(e.b.overdraft_limit) then
      if i64_cmp(e.b.remaining, delta) < 0 then
        mark[i] = true
        capped = i64_min(capped, i64_max(e.b.remaining, '0'))
      end
    end
  end
end

-- Plan every scope; refuse before writing anything.
local plans, deficits = {}, {}
local max_deficit = '0'
for i, e in ipairs(budgets) do
  local b = e.b
  local new = {reserved = i64_sub(b.reserved, estimate), debt = b.debt}
  if not over then
    -- charge actual, give the unused part of the estimate back
    new.spent = i64_add(b.spent, actual)
    new.remaining = i64_add(b.remaining, i64_sub(estimate, actual))
  else
    -- covered part from remaining, the rest (overdraft scopes only) becomes debt
    local funded = i64_min(i64_max(b.remaining, '0'), capped)
    local deficit = i64_sub(capped, funded)
    if i64_is_pos(deficit) then
      local new_debt = i64_add(b.debt, deficit)
      if new_debt == nil or i64_cmp(new_debt, b.overdraft_limit) > 0 then
        return ev_error(script_error('OVERDRAFT_LIMIT_EXCEEDED',
          'Commit would take the debt of ' .. e.scope .. ' beyond its overdraft_limit',
          {scope = e.scope, current_debt = b.debt, deficit = deficit, overdraft_limit = b.overdraft_limit}))
      end
      new.debt = new_debt
      deficits[i] = deficit
      max_deficit = i64_max(max_deficit, deficit)
    end
    local base = i64_add(b.spent, estimate)
    new.spent = base and i64_add(base, funded)
    new.remaining = i64_sub(b.remaining, capped)
  end
  -- over-limit: capped scopes, and any scope whose debt now exceeds its overdraft_limit
  if mark[i] or (new.debt and i64_cmp(new.debt, b.overdraft_limit) > 0) then new.is_over_limit = '1' end
  local problem = check_plan(b, new)
  if problem then return ev_error(plan_error(e.scope, problem)) end
  plans[i] = new
end

local charged = over and i64_add(estimate, capped) or actual

-- Write.
for i, e in ipairs(budgets) do write_plan(e, plans[i], now) end

local balances = snapshots(budgets)
local result = commit_result_of(r, charged, balances)
local now_s = string.format('%d', now)
if ev then result.ev_ms = now_s; result.ev_trace = ctx.trace_id end
local result_json = cjson.encode(result)

-- The replay is rebuilt from `fbal` and the record (DM3) unless evidence is on (the
-- envelope attests these bytes) or the rows do not pack losslessly.
local fbal = (not ev) and bal_pack(balances, res_budgeted(r) or {}, r.unit) or nil
local fields = {'status', 'COMMITTED', 'charged', charged, 'committed_at_ms', now_s,
  'commit_key', idem_key, 'commit_hash', payload_hash}
if fbal then
  fields[#fields + 1] = 'fbal'; fields[#fields + 1] = fbal
else
  fields[#fields + 1] = 'commit_result'; fields[#fields + 1] = result_json
end
if metrics_json ~= '' then fields[#fields + 1] = 'committed_metrics'; fields[#fields + 1] = metrics_json end
if metadata_json ~= '' then fields[#fields + 1] = 'committed_metadata'; fields[#fields + 1] = metadata_json end
res_write(res_key, fields, r)
retain_finalized(res_key, schedule_key, r.reservation_id, r.created_at_ms, ARGV[13], now)
if ev then evidence_source(ev, 'commit', r.tenant or '', now_s, ctx.trace_id, result_json, r.reservation_id) end

-- Outbox: one event per transition, in the same atomic step.
if over then
  outbox(outbox_key, 'reservation.commit_overage', cjson.encode({
    reservation_id = r.reservation_id, scope = r.scope_path, unit = r.unit,
    estimated_amount = estimate, actual_amount = actual, overage = delta, charged_amount = charged,
    overage_policy = policy, debt_incurred = max_deficit,
  }), now, {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json, scope = r.scope_path})
end
for i, e in ipairs(budgets) do
  local b, new = e.b, plans[i]
  local ectx = {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json, scope = e.scope}
  if deficits[i] then
    outbox(outbox_key, 'budget.debt_incurred', cjson.encode({
      scope = e.scope, unit = r.unit, reservation_id = r.reservation_id, debt_incurred = deficits[i],
      total_debt = new.debt, overdraft_limit = b.overdraft_limit, overage_policy = policy,
    }), now, ectx)
  end
  if new.is_over_limit == '1' and b.is_over_limit ~= '1' then
    outbox(outbox_key, 'budget.over_limit_entered', cjson.encode({
      scope = e.scope, unit = r.unit, debt = new.debt, overdraft_limit = b.overdraft_limit, is_over_limit = true,
    }), now, ectx)
  end
  if i64_is_pos(b.remaining) and not i64_is_pos(new.remaining) then
    outbox(outbox_key, 'budget.exhausted', cjson.encode({
      scope = e.scope, unit = r.unit, threshold = 1.0, direction = 'rising', allocated = b.allocated,
      remaining = new.remaining, spent = new.spent, reserved = new.reserved, debt = new.debt,
      reservation_id = r.reservation_id,
    }), now, ectx)
  end
end
util_signal_plans(budgets, plans, r.unit, now, outbox_key, ctx)

return result_json
