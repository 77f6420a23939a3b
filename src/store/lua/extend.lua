-- extend.lua: move an ACTIVE reservation's expiry outward (runtime extendReservation).
-- @include ledger_common.lua
-- @include reservation_common.lua
-- @include reservation_record.lua
--
-- KEYS[1] reservation hash   KEYS[2] tenant hash   KEYS[3] expiry schedule
-- KEYS[4..] the budget keys of the reservation's budgeted scopes (read for the Balance
--           rows): missing ones → {"need_keys": [...]} before any write (DK8)
-- ARGV[1] budget key prefix "{t:<tenant>}:budget:"
-- ARGV[2] idempotency key   ARGV[3] payload hash   ARGV[4] extend_by_ms
-- ARGV[5] metadata JSON ('' = none)
--
-- Idempotency is per (tenant, extend, reservation_id, key): the record lives on the
-- reservation hash itself (fields extend_hash:<key>, extend_result:<key>), so it is scoped
-- to the reservation and bounded by max_extensions.
--
-- Returns {"result": <stored result JSON string>, "now_ms": "...", "active": bool} so the
-- caller can recompute remaining_ttl_ms on every response
-- (IDEMPOTENCY: volatile, never replayed), or an error JSON.

local res_key, tenant_key, schedule_key = KEYS[1], KEYS[2], KEYS[3]
local budget_prefix = ARGV[1]
local idem_key, payload_hash = ARGV[2], ARGV[3]
local extend_by = tonumber(ARGV[4])
local metadata_json = ARGV[5]

local r = res_read(res_key)
if not r then return script_error('NOT_FOUND', 'Reservation not found') end

local now = now_ms()
local function reply(result_json, active)
  return cjson.encode({result = result_json, now_ms = tostring(now), active = active})
end

local stored_hash = r['extend_hash:' .. idem_key]
if stored_hash then
  if stored_hash ~= payload_hash then
    return script_error('IDEMPOTENCY_MISMATCH', 'Idempotency key was already used for a different extend payload')
  end
  return reply(r['extend_result:' .. idem_key], r.status == 'ACTIVE')
end

local gerr = guard_error(tenant_key)
if gerr then return gerr end
if r.status ~= 'ACTIVE' then return state_error(r.status) end

-- No grace for extend (extendReservation SEMANTICS: server time <= expires_at_ms).
local expires_at = tonumber(r.expires_at_ms)
if now > expires_at then
  return script_error('RESERVATION_EXPIRED', 'Reservation expired (past expires_at_ms); extend is not allowed in the grace period')
end

local count = tonumber(r.extension_count or '0')
local max_ext = tonumber(r.max_extensions or '10')
if count >= max_ext then
  return script_error('MAX_EXTENSIONS_EXCEEDED', 'Reservation was already extended ' .. count .. ' times (maximum ' .. max_ext .. ')',
    {extension_count = count, max_extensions = max_ext})
end
if extend_by == nil or extend_by < 1 then
  return script_error('INVALID_REQUEST', 'extend_by_ms must be a positive integer')
end

-- Relative to the current expiry, not to now (ReservationExtendRequest.extend_by_ms).
-- Timestamps stay far below 2^53, so doubles are exact here.
local new_expires = string.format('%.0f', expires_at + extend_by)

local nk = need_reservation_keys(budget_prefix, r, false)
if nk then return nk end
local budgets = load_budgets(budget_prefix, r) or {}
local result_json = cjson.encode({
  status = 'ACTIVE',
  reservation_id = r.reservation_id,
  expires_at_ms = new_expires,
  balances = snapshots(budgets),
})
local fields = {'expires_at_ms', new_expires, 'extension_count', tostring(count + 1),
  'extend_hash:' .. idem_key, payload_hash, 'extend_result:' .. idem_key, result_json}
-- the expiry the reserve set, which its rebuilt replay reports (DM2)
if not r.exp0 then fields[#fields + 1] = 'exp0'; fields[#fields + 1] = r.expires_at_ms end
if metadata_json ~= '' then fields[#fields + 1] = 'extend_metadata'; fields[#fields + 1] = metadata_json end
res_write(res_key, fields, r)
redis.call('ZADD', schedule_key, string.format('%.0f', expires_at + extend_by + tonumber(r.grace_ms or '0')), r.reservation_id)

return reply(result_json, true)
