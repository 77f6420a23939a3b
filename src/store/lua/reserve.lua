-- reserve.lua: createReservation (live and dry_run) and decide, as ONE atomic step.
-- @include ledger_common.lua
--
-- Order (runtime spec; v0.1.26 RESERVATION EVALUATION ORDER):
--   0. idempotency replay / mismatch   (replay precedence over everything below)
--   1. closed-tenant guard             (live → 409 TENANT_CLOSED, evaluations → DENY)
--   2. [v0.1.26 access control, risk-class quotas, per-kind quotas: insert here, as
--      functions returning a denial reason or nil, before the budget step]
--   3. budget step: per budgeted derived scope in canonical order, first failure wins
--   4. live ALLOW only: mutate every budgeted scope, create the reservation
-- Nothing is written before every check has passed (Lua errors do not roll back).
--
-- KEYS: 1 idempotency record, 2 tenant hash, 3 reservation hash (new id; unused when
--       not live), 4 reservation index, 5 outbox,
--       6 .. 5+n          budget hash of each derived scope in the request unit,
--       6+n .. 5+n+n*m    budget hash of each derived scope in each other unit
--                         (scope-major; m = #p.other_units)
-- ARGV: 1 JSON params (see src/ledger/reserve.ts ScriptParams; int64 as strings)
--
-- Returns JSON text:
--   {"replay":<bool>,"now_ms":"<Redis time>","result":<stored result>}
--                                                a 200 outcome (stored for replay)
--   {"err":"<CODE>", ...}                         an error outcome (never stored)
-- Idempotency record value: "<payload sha256>\n<result JSON>".

local p = cjson.decode(ARGV[1])
local mode = p.mode -- 'live' | 'dry_run' | 'decide'
local live = (mode == 'live')
local n = #p.scopes
local m = #p.other_units
local K_IDEM, K_TENANT, K_RES, K_RES_INDEX, K_OUTBOX = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ctx = {trace_id = p.trace_id, request_id = p.request_id, actor_json = p.actor_json}

local estimate = i64_norm(p.estimate)
if estimate == nil or i64_is_neg(estimate) then error('reserve: bad estimate ' .. tostring(p.estimate)) end

-- 0. idempotency ------------------------------------------------------------------
local now = now_ms()
local now_s = string.format('%d', now)

local rec = redis.call('GET', K_IDEM)
if rec then
  local nl = string.find(rec, '\n', 1, true)
  if not nl then error('reserve: corrupt idempotency record at ' .. K_IDEM) end
  if string.sub(rec, 1, nl - 1) ~= p.hash then
    return cjson.encode({err = 'IDEMPOTENCY_MISMATCH'})
  end
  return '{"replay":true,"now_ms":"' .. now_s .. '","result":' .. string.sub(rec, nl + 1) .. '}'
end

local function base_result(decision)
  return {
    decision = decision, mode = mode, unit = p.unit, estimate = estimate,
    scope_path = p.scope_path, affected_scopes = p.scopes,
  }
end

-- Stores a 200 outcome for replay and returns it.
local function finish(result)
  local enc = cjson.encode(result)
  redis.call('SET', K_IDEM, p.hash .. '\n' .. enc, 'PX', p.idem_ttl_ms)
  return '{"replay":false,"now_ms":"' .. now_s .. '","result":' .. enc .. '}'
end

local function emit_denied(reason, scope, remaining)
  local data = {
    scope = scope or p.scope_path, unit = p.unit, reason_code = reason,
    requested_amount = estimate, subject = cjson.decode(p.subject_json),
    action = cjson.decode(p.action_json),
  }
  if remaining then data.remaining = remaining end
  if p.policy_id ~= '' then data.policy_id = p.policy_id end
  outbox(K_OUTBOX, 'reservation.denied', cjson.encode(data), now, ctx)
end

-- A denial: live → error (not stored, a retry re-evaluates); evaluations → stored DENY.
-- `event` says whether the condition is a budget decision worth a reservation.denied.
local function deny(reason, scope, remaining, balances, event)
  if live then
    if event then emit_denied(reason, scope, remaining) end
    return cjson.encode({err = reason, scope = scope, remaining = remaining})
  end
  -- dry_run emits no event (v0.1.26 DRY_RUN VS OBSERVE_MODE, rule 2); decide does.
  if event and mode == 'decide' then emit_denied(reason, scope, remaining) end
  local r = base_result('DENY')
  r.reason_code = reason
  if balances and #balances > 0 then r.balances = balances end
  return finish(r)
end

-- 1. closed-tenant guard ------------------------------------------------------------
local guard = tenant_guard(K_TENANT)
if guard == 'TENANT_CORRUPT' then
  error('reserve: tenant record at ' .. K_TENANT .. ' has no valid status')
end
if guard == 'TENANT_CLOSED' then
  return deny('TENANT_CLOSED', nil, nil, nil, false)
end

-- 2. (v0.1.26 access control / quota steps go here) ----------------------------------

-- 3. budget step ---------------------------------------------------------------------
local function amount(h, f, key)
  local v = h[f]
  if v == nil or v == '' then return '0' end
  local c = i64_norm(v)
  if c == nil then error('reserve: budget ' .. key .. ' field ' .. f .. ' is not an int64: ' .. tostring(v)) end
  return c
end

local budgeted = {} -- {key, scope, h}
for i = 1, n do
  local k = KEYS[5 + i]
  local h = hgetall(k)
  if h then
    budgeted[#budgeted + 1] = {key = k, scope = p.scopes[i], h = h}
  end
end

if #budgeted == 0 then
  -- ERROR SEMANTICS unit-mismatch bullet: a budget in another unit → 400 everywhere.
  for i = 1, n do
    local units = {}
    for j = 1, m do
      if redis.call('EXISTS', KEYS[5 + n + (i - 1) * m + j]) == 1 then units[#units + 1] = p.other_units[j] end
    end
    if #units > 0 then
      return cjson.encode({err = 'UNIT_MISMATCH', scope = p.scopes[i], expected_units = units})
    end
  end
  if live then return cjson.encode({err = 'NOT_FOUND'}) end
  return deny('BUDGET_NOT_FOUND', nil, nil, nil, false)
end

-- allocated - spent - reserved - debt, in whichever order keeps every intermediate
-- value inside int64 (spent may be negative after corrections); nil if none does.
local function expected_remaining(h, key)
  local acc = amount(h, 'allocated', key)
  local terms = {amount(h, 'spent', key), amount(h, 'reserved', key), amount(h, 'debt', key)}
  while #terms > 0 do
    local progressed = false
    for i = 1, #terms do
      local v = i64_sub(acc, terms[i])
      if v ~= nil then
        acc = v
        table.remove(terms, i)
        progressed = true
        break
      end
    end
    if not progressed then return nil end
  end
  return acc
end

-- Invariant first: never evaluate against, or write onto, a corrupt ledger.
for _, b in ipairs(budgeted) do
  local h = b.h
  local expect = expected_remaining(h, b.key)
  if expect == nil or expect ~= amount(h, 'remaining', b.key) then
    error('reserve: ledger invariant violated on ' .. b.key)
  end
end

local function snapshots()
  local out = {}
  for i, b in ipairs(budgeted) do out[i] = budget_snapshot(b.key) end
  return out
end

for _, b in ipairs(budgeted) do
  local h = b.h
  local st = h.status or 'ACTIVE'
  local reason
  local remaining = amount(h, 'remaining', b.key)
  local debt = amount(h, 'debt', b.key)
  local limit = amount(h, 'overdraft_limit', b.key)
  if st == 'FROZEN' then
    reason = 'BUDGET_FROZEN'
  elseif st == 'CLOSED' then
    reason = 'BUDGET_CLOSED'
  elseif h.is_over_limit == '1' or (i64_is_pos(limit) and i64_cmp(debt, limit) > 0) then
    -- takes precedence over DEBT_OUTSTANDING (ERROR SEMANTICS, last bullet)
    reason = 'OVERDRAFT_LIMIT_EXCEEDED'
  elseif i64_is_pos(debt) and not i64_is_pos(limit) then
    -- DecisionReasonCode: debt > 0 and overdraft_limit == 0 (docs/decisions.md DR5)
    reason = 'DEBT_OUTSTANDING'
  elseif i64_cmp(remaining, estimate) < 0 then
    reason = 'BUDGET_EXCEEDED'
  elseif i64_add(amount(h, 'reserved', b.key), estimate) == nil then
    -- `reserved` cannot represent the sum (only reachable with negative spent):
    -- the budget cannot take this amount (docs/decisions.md DR6)
    reason = 'BUDGET_EXCEEDED'
  end
  if reason then
    return deny(reason, b.scope, remaining, snapshots(), true)
  end
end

local decision = (p.caps_json ~= '') and 'ALLOW_WITH_CAPS' or 'ALLOW'

if not live then
  local r = base_result(decision)
  if p.caps_json ~= '' then r.caps_json = p.caps_json end
  r.balances = snapshots()
  return finish(r)
end

-- 4. live ALLOW: mutate ----------------------------------------------------------------
local budgeted_scopes = {}
for i, b in ipairs(budgeted) do
  budgeted_scopes[i] = b.scope
  if estimate ~= '0' then
    redis.call('HINCRBY', b.key, 'reserved', estimate)
    redis.call('HINCRBY', b.key, 'remaining', '-' .. estimate)
  end
  redis.call('HSET', b.key, 'updated_at_ms', now_s)
  if estimate ~= '0' and redis.call('HGET', b.key, 'remaining') == '0' then
    local s = budget_snapshot(b.key)
    outbox(K_OUTBOX, 'budget.exhausted', cjson.encode({
      scope = b.scope, unit = p.unit, threshold = 1.0, allocated = s.allocated, remaining = s.remaining,
      spent = s.spent, reserved = s.reserved, direction = 'rising', reservation_id = p.reservation_id,
    }), now, ctx)
  end
end

local overage = p.overage_explicit
if overage == '' then
  -- request > policy (resolved by the caller) > leaf-most budget > tenant default (DR4)
  local leaf = budgeted[#budgeted].h.commit_overage_policy
  if leaf and leaf ~= '' then
    overage = leaf
  else
    local td = redis.call('HGET', K_TENANT, 'default_commit_overage_policy')
    overage = (td and td ~= '') and td or 'ALLOW_IF_AVAILABLE'
  end
end

local fields = {
  'reservation_id', p.reservation_id, 'tenant', p.tenant, 'status', 'ACTIVE',
  'subject', p.subject_json, 'action', p.action_json, 'unit', p.unit, 'estimate', estimate,
  'scope_path', p.scope_path, 'affected_scopes', cjson.encode(p.scopes),
  'budgeted', cjson.encode(budgeted_scopes),
  'created_at_ms', now_s, 'expires_at_ms', p.expires_at_ms, 'grace_ms', p.grace_ms,
  'overage_policy', overage, 'idempotency_key', p.idempotency_key,
  'extension_count', '0', 'max_extensions', p.max_extensions,
}
if p.metadata_json ~= '' then
  fields[#fields + 1] = 'metadata'
  fields[#fields + 1] = p.metadata_json
end
if p.policy_id ~= '' then
  fields[#fields + 1] = 'policy_id'
  fields[#fields + 1] = p.policy_id
end
redis.call('HSET', K_RES, unpack(fields))
redis.call('ZADD', K_RES_INDEX, now, p.reservation_id)

local r = base_result(decision)
if p.caps_json ~= '' then r.caps_json = p.caps_json end
r.reservation_id = p.reservation_id
r.expires_at_ms = p.expires_at_ms
r.balances = snapshots()
return finish(r)
