-- expire.lua: the expiry sweeper's unit of work, for one candidate reservation.
-- @include ledger_common.lua
-- @include reservation_common.lua
-- @include signals_common.lua
-- @include quota_common.lua
-- @include reservation_record.lua
--
-- KEYS[1] reservation hash   KEYS[2] outbox stream   KEYS[3] expiry schedule
-- KEYS[4..] the budget keys of the reservation's budgeted scopes and its per_run quota
--           counters: missing ones → {"need_keys": [...]} before any write (DK8)
-- ARGV[1] budget key prefix "{t:<tenant>}:budget:"   ARGV[2] trace id (one per sweep batch)
-- ARGV[3] reservation id (the schedule member)
-- ARGV[4] retention ms of the finished reservation ('0' = held for the export job; DX1/DX3)
--
-- Returns {"outcome": "gone"}      reservation missing or no longer ACTIVE (unscheduled)
--         {"outcome": "pending", "deadline_ms": "..."}   not yet past expires_at + grace
--                                  (re-scored with that deadline)
--         {"outcome": "expired"}   reserved amounts restored, status EXPIRED, event written,
--                                  unscheduled
--         {"outcome": "corrupt", "message": "..."}       ledger untouched, unscheduled
--                                  (the caller logs it)
-- The schedule is maintained here, in the same step, so it never disagrees with the
-- reservation. Atomic and idempotent: two sweepers racing on one reservation expire it
-- exactly once. The closed-tenant guard does not apply: expiry is the system giving held
-- budget back.

local res_key, outbox_key, schedule_key = KEYS[1], KEYS[2], KEYS[3]
local budget_prefix, id = ARGV[1], ARGV[3]

local function unscheduled(reply)
  redis.call('ZREM', schedule_key, id)
  return cjson.encode(reply)
end

local r = res_read(res_key)
if not r or r.status ~= 'ACTIVE' then return unscheduled({outcome = 'gone'}) end

local now = now_ms()
local deadline = tonumber(r.expires_at_ms or '') 
local grace = tonumber(r.grace_ms or '0')
if deadline == nil or grace == nil then
  return unscheduled({outcome = 'corrupt', message = 'expires_at_ms/grace_ms unreadable'})
end
deadline = string.format('%.0f', deadline + grace)
if now <= tonumber(deadline) then
  redis.call('ZADD', schedule_key, deadline, id)
  return cjson.encode({outcome = 'pending', deadline_ms = deadline})
end

local nk = need_reservation_keys(budget_prefix, r, true)
if nk then return nk end
local budgets = load_budgets(budget_prefix, r)
if not budgets then return unscheduled({outcome = 'corrupt', message = 'budgeted scopes unreadable'}) end
local plans, perr = plan_restore(budgets, r.estimate)
if not plans then return unscheduled({outcome = 'corrupt', message = cjson.decode(perr).message}) end

for i, e in ipairs(budgets) do write_plan(e, plans[i], now) end
-- v0.1.26 PER_RUN COUNTER LIFECYCLE: an expired, never-committed call no longer counts.
quota_release_run_counters(r)
res_write(res_key, {'status', 'EXPIRED', 'expired_at_ms', tostring(now)}, r)
retain_finalized(res_key, schedule_key, id, r.created_at_ms, ARGV[4], now)

outbox(outbox_key, 'reservation.expired', cjson.encode({
  reservation_id = r.reservation_id, scope = r.scope_path, unit = r.unit,
  estimated_amount = r.estimate, created_at_ms = r.created_at_ms, expired_at_ms = tostring(now),
  expires_at_ms = r.expires_at_ms, extensions_used = tonumber(r.extension_count or '0'),
}), now, {trace_id = ARGV[2], request_id = '', actor_json = '{"type":"system"}', scope = r.scope_path})
util_signal_plans(budgets, plans, r.unit, now, outbox_key, {trace_id = ARGV[2], request_id = '', actor_json = '{"type":"system"}'})

return cjson.encode({outcome = 'expired'})
