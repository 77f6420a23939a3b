-- release.lua: give an ACTIVE reservation's estimate back (runtime releaseReservation,
-- admin force-release, tenant-close cascade).
-- @include ledger_common.lua
-- @include reservation_common.lua
-- @include signals_common.lua
-- @include quota_common.lua
-- @include evidence_common.lua
-- @include reservation_record.lua
--
-- KEYS[1] reservation hash   KEYS[2] tenant hash   KEYS[3] outbox stream
-- KEYS[4] expiry schedule
-- KEYS[5..] (evidence on) the evidence source stream ARGV[9]; the budget keys of the reservation's budgeted scopes and its per_run quota
--           counters: missing ones → {"need_keys": [...]} before any write (DK8)
-- ARGV[1] budget key prefix "{t:<tenant>}:budget:"
-- ARGV[2] idempotency key   ARGV[3] payload hash   ARGV[4] reason ('' = none)
-- ARGV[5] trace id   ARGV[6] request id   ARGV[7] actor JSON
-- ARGV[8] mode: 'api' | 'cascade' (cascade: the tenant-close cascade itself, which runs
--         after the CLOSED flip and so must bypass the closed-tenant guard)
-- ARGV[9] evidence source stream ('' = evidence off; always off for the cascade)
-- ARGV[10] normalized request JSON (evidence on: the stored result carries ev_ms /
--          ev_trace and the evidence source is appended in this step; DEV6)
-- ARGV[11] retention ms of the finished reservation ('0' = held for the export job; DX1/DX3)
--
-- Returns the stored result JSON (fresh and replay alike) or an error JSON.
-- No outbox event: the EventType enum has none for a plain release (the cascade emits its
-- own ledger-level reservation.released_via_tenant_cascade aggregate).

local res_key, tenant_key, schedule_key = KEYS[1], KEYS[2], KEYS[4]
local budget_prefix = ARGV[1]
local idem_key, payload_hash, reason = ARGV[2], ARGV[3], ARGV[4]
local cascade = ARGV[8] == 'cascade'
-- the evidence source stream is declared too (after the fixed KEYS, DK8)
local ev = (ARGV[9] or '') ~= '' and {key = KEYS[key_index(ARGV[9])], request = ARGV[10]} or nil

local r = res_read(res_key)
if not r then return script_error('NOT_FOUND', 'Reservation not found') end
-- the evaluation's error outcomes get `error` evidence (evidence_common.lua, DEV8)
local function ev_error(e_json)
  return evidence_error(ev, e_json, 'release', r.tenant or '', ARGV[5], ARGV[6], r.reservation_id)
end

if r.status == 'RELEASED' and r.release_key == idem_key then
  if r.release_hash ~= payload_hash then
    return script_error('IDEMPOTENCY_MISMATCH', 'Idempotency key was already used for a different release payload')
  end
  -- the stored result (evidence on, or rows that did not pack), else rebuilt (DM3)
  if r.release_result then return r.release_result end
  return cjson.encode(release_result_of(r, bal_unpack(r.fbal or '', res_budgeted(r) or {}, r.unit)))
end

if not cascade then
  local gerr = guard_error(tenant_key)
  if gerr then return ev_error(gerr) end
end
if r.status ~= 'ACTIVE' then return ev_error(state_error(r.status)) end

local now = now_ms()
if now > tonumber(r.expires_at_ms) + tonumber(r.grace_ms or '0') then
  return ev_error(script_error('RESERVATION_EXPIRED', 'Reservation expired (past expires_at_ms + grace_period_ms)'))
end

local nk = need_reservation_keys(budget_prefix, r, true)
if nk then return nk end
local budgets = load_budgets(budget_prefix, r)
if not budgets then return script_error('INTERNAL_ERROR', 'Reservation record has no readable budgeted scopes') end
local plans, perr = plan_restore(budgets, r.estimate)
if not plans then return ev_error(perr) end

for i, e in ipairs(budgets) do write_plan(e, plans[i], now) end
-- v0.1.26 PER_RUN COUNTER LIFECYCLE: a released call no longer counts against its run.
quota_release_run_counters(r)
-- budget.threshold_crossed (falling) is the only event a plain release can cause.
util_signal_plans(budgets, plans, r.unit, now, KEYS[3], {trace_id = ARGV[5], request_id = ARGV[6], actor_json = ARGV[7]})

local now_s = string.format('%d', now)
local balances = snapshots(budgets)
local result = release_result_of(r, balances)
if ev then result.ev_ms = now_s; result.ev_trace = ARGV[5] end
local result_json = cjson.encode(result)
-- replay rebuilt from `fbal` unless evidence is on or the rows do not pack (DM3)
local fbal = (not ev) and bal_pack(balances, res_budgeted(r) or {}, r.unit) or nil
local fields = {'status', 'RELEASED', 'released_at_ms', tostring(now),
  'release_key', idem_key, 'release_hash', payload_hash, 'released_by', ARGV[7]}
if fbal then
  fields[#fields + 1] = 'fbal'; fields[#fields + 1] = fbal
else
  fields[#fields + 1] = 'release_result'; fields[#fields + 1] = result_json
end
if reason ~= '' then fields[#fields + 1] = 'release_reason'; fields[#fields + 1] = reason end
res_write(res_key, fields, r)
retain_finalized(res_key, schedule_key, r.reservation_id, r.created_at_ms, ARGV[11], now)
if ev then evidence_source(ev, 'release', r.tenant or '', now_s, ARGV[5], result_json, r.reservation_id) end

return result_json
