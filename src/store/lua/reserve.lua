-- reserve.lua: createReservation (live and dry_run) and decide, as ONE atomic step.
-- @include ledger_common.lua
-- @include signals_common.lua
-- @include quota_common.lua
-- @include evidence_common.lua
-- @include reservation_record.lua
--
-- Order (runtime spec; v0.1.26 RESERVATION EVALUATION ORDER):
--   0. idempotency replay / mismatch   (replay precedence over everything below)
--   0b. policy version check           (STALE: the caller's cached policies are outdated)
--   0c. [v0.1.26] effective observe mode; a per_run rule without run_id → 400
--   1. closed-tenant guard             (live → 409 TENANT_CLOSED, evaluations → DENY)
--   2. [v0.1.26] access control (the selected policy's deny / allow list), risk-class
--      quotas, per-kind quotas (lowest headroom reported)
--   3. budget step: per budgeted derived scope in canonical order, first failure wins
--   4. live ALLOW only (not OBSERVE): mutate every budgeted scope and every applicable
--      quota counter, create the reservation
-- Nothing is written before every check has passed (Lua errors do not roll back), except
-- the events an evaluation emits (reservation.denied on decide, observed_* in OBSERVE).
--
-- KEYS: 1 idempotency record, 2 tenant hash, 3 reservation hash (new id; unused when
--       not live), 4 reservation index, 5 outbox, 6 policies hash, 7 policy version,
--       8 expiry schedule (member = id, score = expires_at + grace),
--       9 quota counter index (v0.1.26, keys.quotaIndex),
--       10 .. 9+n         budget hash of each derived scope in the request unit
--       10+n ..           declared extra keys (docs/decisions.md DK8): the quota counters of
--       the candidate rules in their current window, and when needed the reservation an
--       idempotency record names or the same scopes' budgets in the other units (looked
--       at only when no budget of the request unit exists, to tell UNIT_MISMATCH from
--       NOT_FOUND). The script builds each from the p.*_prefix values and uses it only if
--       declared; else it answers {"need_keys": [...]} before any write.
-- A fresh live ALLOW also returns "fk": the keys finishing the reservation will touch
-- (its budgets, its per_run counters) for the caller's FinishKeyCache.
-- ARGV: 1 JSON params (see src/ledger/reserve.ts; int64 as strings). Policy part:
--       p.policy_version  the keys.policyVersion value the caller's policies came from
--       p.candidates      matching policies in selection order (src/policy/cache.ts
--                         ScriptCandidate); the first whose [from_ms, until_ms) holds
--                         Redis TIME applies (MULTI-POLICY SEMANTICS)
--       p.ttl_ms          request ttl_ms ('' = absent), p.grace_ms, p.overage_request
--       v0.1.26 (flag on, p.gov): p.kind, p.run_id, p.observe_request, p.quota_prefix,
--       p.observe_allow_emit, p.sample_rate; each candidate may carry `gov`
--       (src/governance/rules.ts ScriptGovernance) and `needs_run_id`
--       p.ev              evidence on: {key = keys.evidenceSource, request = normalized
--                         request JSON}; every stored 200 outcome (not OBSERVE) then
--                         carries ev_ms / ev_trace and appends its evidence source
--                         (evidence_common.lua, docs/decisions.md DEV6)
-- Effective ttl / max_extensions / overage are resolved here (docs/decisions.md DR4),
-- expires_at_ms = Redis TIME + ttl (DR8).
--
-- Returns JSON text:
--   {"replay":<bool>,"now_ms":"<Redis time>","active":<bool>,"result":<stored result>}
--                                                a 200 outcome (stored for replay);
--                                                active: false when a replayed
--                                                reservation is no longer ACTIVE
--   {"stale":true,"version":"<v>","policies":[field, json, ...]}
--                                                policy_version is outdated; nothing
--                                                was written (re-evaluate with these)
--   {"err":"<CODE>", ...}                         an error outcome (never stored)
-- Idempotency record value: "<payload sha256>\n<result JSON>", or for a live ALLOW
-- "<payload sha256>\n@<reservation id>": the result is rebuilt from the reservation record
-- (reserve_result_of, docs/decisions.md DM2) instead of stored twice.

local p = cjson.decode(ARGV[1])
local mode = p.mode -- 'live' | 'dry_run' | 'decide'
local live = (mode == 'live')
local n = #p.scopes
local K_IDEM, K_TENANT, K_RES, K_RES_INDEX, K_OUTBOX = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_POLICIES, K_POLICY_VERSION, K_SCHEDULE, K_QUOTA_INDEX = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local B = 9 -- budget keys start after this index
-- evidence on: its source stream is declared after the budget keys (DK8)
if p.ev then p.ev.key = KEYS[key_index(p.ev.key)] end
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
  local stored = string.sub(rec, nl + 1)
  local active = true
  if string.byte(stored, 1) == 64 then -- '@<reservation id>' (DM2)
    local rk = p.res_prefix .. string.sub(stored, 2)
    local nk = need_keys({rk})
    if nk then return nk end
    local r = res_read(KEYS[key_index(rk)])
    -- the reservation outlives its idempotency record (finish() checks the retention), so
    -- this is a record removed by hand: the original outcome cannot be given back
    if not r or not r.rbal then return cjson.encode({err = 'IDEMPOTENCY_GONE'}) end
    stored = cjson.encode(reserve_result_of(r))
    active = r.status == 'ACTIVE'
  else
    local rid = cjson.decode(stored).reservation_id
    if type(rid) == 'string' and rid ~= '' then
      local rk = p.res_prefix .. rid
      local nk = need_keys({rk})
      if nk then return nk end
      active = redis.call('HGET', KEYS[key_index(rk)], 'status') == 'ACTIVE'
    end
  end
  return '{"replay":true,"now_ms":"' .. now_s .. '","active":' .. tostring(active) .. ',"result":' .. stored .. '}'
end

-- 0b. policies: the caller matched scopes against cached policies of this version ------
local policy_version = redis.call('GET', K_POLICY_VERSION) or '0'
if p.policy_version ~= policy_version then
  local flat = redis.call('HGETALL', K_POLICIES)
  if #flat == 0 then return '{"stale":true,"version":"' .. policy_version .. '","policies":[]}' end
  return cjson.encode({stale = true, version = policy_version, policies = flat})
end

local pol = nil
for _, c in ipairs(p.candidates) do
  if (c.from_ms == nil or now >= c.from_ms) and (c.until_ms == nil or now < c.until_ms) then
    pol = c
    break
  end
end
local caps_json = (pol and pol.caps_json) or ''
local policy_id = (pol and pol.policy_id) or ''
local gov = p.gov and pol and pol.gov or nil

-- One read for the guard, the tenant settings used in step 4 and the tenant's observe mode
-- (tenant_guard's rules: no record → no guard; a record without a valid status → corrupt).
local tcfg = redis.call('HMGET', K_TENANT, 'status', 'default_reservation_ttl_ms', 'max_reservation_ttl_ms',
  'max_reservation_extensions', 'default_commit_overage_policy', 'observe_mode')

-- 0c. v0.1.26 effective observe mode (OBSERVE MODE EVALUATION RULES, PRECEDENCE): request
-- > tenant > ENFORCE; DISABLED means ENFORCE. Only createReservation has the mode (decide
-- is an evaluation already; docs/decisions.md DG10).
local observe = false
if p.gov and mode ~= 'decide' then
  local eff = p.observe_request
  if eff == nil or eff == '' then eff = tcfg[6] or '' end
  observe = (eff == 'OBSERVE')
end
-- Writes happen only on a live, enforced request.
local persist = live and not observe

if pol and pol.needs_run_id and (p.run_id == nil or p.run_id == '') then
  return cjson.encode({err = 'RUN_ID_REQUIRED', policy_id = policy_id})
end

local function base_result(decision)
  local r = {
    decision = decision, mode = mode, unit = p.unit, estimate = estimate,
    scope_path = p.scope_path, affected_scopes = p.scopes,
  }
  if observe then r.observe = true end
  return r
end

-- Stores a 200 outcome for replay and returns it. `ref`: the stored value is a reference
-- to the reservation just written, whose record rebuilds this result (DM2).
local DAY_MS = 86400000
local function finish(result, idem_ttl_ms, ref, fk)
  -- evidence (not for OBSERVE outcomes: DEV6): the replay of this result rebuilds the same
  -- envelope from ev_ms / ev_trace, so it is recorded once, here
  local ev = p.ev and not observe
  if ev then
    result.ev_ms = now_s
    result.ev_trace = p.trace_id
  end
  local enc = cjson.encode(result)
  redis.call('SET', K_IDEM, p.hash .. '\n' .. (ref and ('@' .. ref) or enc), 'PX', string.format('%d', idem_ttl_ms or DAY_MS))
  if ev then evidence_source(p.ev, mode == 'decide' and 'decide' or 'reserve', p.tenant, now_s, p.trace_id, enc) end
  local fk_json = fk and (',"fk":' .. cjson.encode(fk)) or ''
  return '{"replay":false,"now_ms":"' .. now_s .. '","active":true' .. fk_json .. ',"result":' .. enc .. '}'
end

-- The action as the observed_* events carry it: kind, name, policy_keys.
local function event_action()
  local a = cjson.decode(p.action_json)
  return {kind = a.kind, name = a.name, policy_keys = a.policy_keys}
end

local function emit_denied(reason, scope, remaining, dd)
  local data = {
    scope = scope or p.scope_path, unit = p.unit, reason_code = reason,
    requested_amount = estimate, subject = cjson.decode(p.subject_json),
    action = cjson.decode(p.action_json),
  }
  if remaining then data.remaining = remaining end
  if policy_id ~= '' then data.policy_id = policy_id end
  if dd then data.deny_detail = dd end
  outbox(K_OUTBOX, 'reservation.denied', cjson.encode(data), now, ctx)
end

-- reservation.observed_denied; correlation_id over (tenant, scope, kind, window_key,
-- reason, policy) (EventDataObservedDenied CORRELATION).
local function emit_observed_denied(dd)
  local scope = dd.blocked_by_scope or p.scope_path
  local wk = dd.quota_violation and dd.quota_violation.window_key or ''
  local data = {
    scope = scope, unit = p.unit, deny_detail = dd, action = event_action(),
    subject = cjson.decode(p.subject_json), estimated_amount = estimate, observe_mode = 'OBSERVE',
    would_have_blocked_at = scope,
  }
  local c = {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json, scope = p.scope_path,
    correlation_id = 'corr_' .. redis.sha1hex(table.concat({'observed_denied', p.tenant, scope, p.kind or '', wk,
      dd.reason_code, policy_id}, '\n'))}
  outbox(K_OUTBOX, 'reservation.observed_denied', cjson.encode(data), now, c)
end

-- reservation.observed_allowed (sampled: p.observe_allow_emit); correlation_id over
-- (tenant, scope, run_id), absent without a run_id.
local function emit_observed_allowed(decision)
  if not p.observe_allow_emit then return end
  local data = {
    scope = p.scope_path, decision = decision, unit = p.unit, action = event_action(),
    subject = cjson.decode(p.subject_json), estimated_amount = estimate, observe_mode = 'OBSERVE',
  }
  if caps_json ~= '' then data.caps_applied = cjson.decode(caps_json) end
  if p.sample_rate and p.sample_rate < 1 then data.sample_rate = p.sample_rate end
  local c = {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json, scope = p.scope_path}
  if p.run_id and p.run_id ~= '' then
    c.correlation_id = 'corr_' .. redis.sha1hex(table.concat({'observed_allowed', p.tenant, p.scope_path, p.run_id}, '\n'))
  end
  outbox(K_OUTBOX, 'reservation.observed_allowed', cjson.encode(data), now, c)
end

local function clip(s, n) if #s > n then return string.sub(s, 1, n) end return s end

-- DenyDetail (runtime extension; docs/decisions.md DG8). remaining: int64 string at the
-- blocking budget scope; q: the violated quota (rule, used, window_key) for quota denials.
local function deny_detail(reason, scope, remaining, q)
  local dd = {reason_code = reason}
  local fix
  if reason == 'ACTION_KIND_DENIED' or reason == 'ACTION_KIND_NOT_ALLOWED' then
    dd.blocked_by_policy = policy_id
    dd.blocked_by_scope = p.scope_path
    if reason == 'ACTION_KIND_DENIED' then
      fix = "Remove '" .. p.kind .. "' from denied_action_kinds in policy '" .. policy_id .. "'"
    else
      fix = "Add '" .. p.kind .. "' to allowed_action_kinds in policy '" .. policy_id .. "'"
    end
  elseif reason == 'ACTION_QUOTA_EXCEEDED' then
    local rule = q.rule
    local qv = {action_kind = p.kind, window = rule.window, window_key = q.window_key, used = q.used,
      limit = rule.limit, scope = rule.scope, policy_id = policy_id}
    if rule.risk_class then qv.risk_class = rule.risk_class end
    dd.quota_violation = qv
    dd.blocked_by_policy = policy_id
    dd.blocked_by_scope = rule.scope
    local what = (rule.risk_class or rule.kind) .. ' ' .. rule.window .. ' limit from ' .. rule.limit
    if rule.window == 'per_minute_tumbling' then
      fix = 'Wait until the next minute or increase ' .. what .. " in policy '" .. policy_id .. "'"
    elseif rule.window == 'per_hour_tumbling' then
      fix = 'Wait until the next hour or increase ' .. what .. " in policy '" .. policy_id .. "'"
    elseif rule.window == 'per_run' then
      fix = 'Increase ' .. what .. " in policy '" .. policy_id .. "', or start a new run"
    else
      fix = 'Wait until the next UTC day or increase ' .. what .. " in policy '" .. policy_id .. "'"
    end
  else
    if scope then dd.blocked_by_scope = scope end
    if remaining then dd.budget_remaining = remaining end
    local at = scope or p.scope_path
    if reason == 'BUDGET_EXCEEDED' and remaining then
      local short = i64_sub(estimate, remaining)
      if short then fix = 'Fund ' .. at .. ' budget by at least ' .. short .. ' ' .. p.unit end
    elseif reason == 'BUDGET_FROZEN' then
      fix = 'Unfreeze the ' .. p.unit .. ' budget at ' .. at
    elseif reason == 'BUDGET_CLOSED' then
      fix = 'The ' .. p.unit .. ' budget at ' .. at .. ' is closed; create or use another budget'
    elseif reason == 'OVERDRAFT_LIMIT_EXCEEDED' or reason == 'DEBT_OUTSTANDING' then
      fix = 'Repay the outstanding debt at ' .. at .. ' (fund the budget) before new reservations'
    elseif reason == 'BUDGET_NOT_FOUND' then
      fix = 'Create a ' .. p.unit .. ' budget for ' .. p.scope_path .. ' or one of its parent scopes'
    elseif reason == 'TENANT_SUSPENDED' then
      fix = 'Reactivate the tenant'
    end
  end
  if fix then dd.suggested_fix = clip(fix, 512) end
  return dd
end

-- A denial: live → error (not stored, a retry re-evaluates); evaluations → stored DENY.
-- `event` says whether the condition is a decision worth a reservation.denied. In OBSERVE
-- every DENY emits reservation.observed_denied instead (SIDE-EFFECT CONTRACT).
local function deny(reason, scope, remaining, balances, event, q)
  local dd = nil
  if p.gov then dd = deny_detail(reason, scope, remaining, q) end
  if persist then
    if event then emit_denied(reason, scope, remaining, dd) end
    -- a live denial is a 409: `error` evidence when attested (DEV8)
    return evidence_error(p.ev, cjson.encode({err = reason, scope = scope, remaining = remaining, deny_detail = dd}),
      'reserve', p.tenant, p.trace_id, p.request_id)
  end
  if observe then
    emit_observed_denied(dd)
  elseif event and mode == 'decide' then
    -- dry_run emits no event (v0.1.26 DRY_RUN VS OBSERVE_MODE, rule 2); decide does.
    emit_denied(reason, scope, remaining, dd)
  end
  local r = base_result('DENY')
  r.reason_code = reason
  if dd then r.deny_detail = dd end
  if balances and #balances > 0 then r.balances = balances end
  return finish(r)
end

-- 1. closed-tenant guard ------------------------------------------------------------
local tstatus = tcfg[1]
local guard = tenant_guard_of(K_TENANT, tstatus)
if guard == 'TENANT_CORRUPT' then
  error('reserve: tenant record at ' .. K_TENANT .. ' has no valid status')
end
local has_tenant = tstatus ~= false -- a record without status was refused just above
if guard == 'TENANT_CLOSED' then
  return deny('TENANT_CLOSED', nil, nil, nil, false)
end
-- A SUSPENDED tenant takes no new reservations (live → 403, evaluations → DENY).
if tstatus == 'SUSPENDED' then
  return deny('TENANT_SUSPENDED', nil, nil, nil, false)
end

-- 2. v0.1.26: access control, risk-class quotas, per-kind quotas (selected policy only) --
-- Each applicable rule's counter is read here (rule instance = key + window_key + used)
-- and incremented in step 4, only on a persisted ALLOW.
local quota_rules = {}
if gov then
  if gov.access then
    return deny(gov.access, nil, nil, nil, true)
  end
  local wkeys = {} -- window → window_key, computed once per call
  local function window_key(window)
    local wk = wkeys[window]
    if not wk then wk = quota_window_key(window, now, p.run_id); wkeys[window] = wk end
    return wk
  end
  -- every counter this evaluation may read or write must be declared (DK8)
  local ckeys = {}
  for _, list in ipairs({gov.risk or {}, gov.kind or {}}) do
    for _, rule in ipairs(list) do ckeys[#ckeys + 1] = quota_key(p.quota_prefix, rule, window_key(rule.window)) end
  end
  local nk = need_keys(ckeys)
  if nk then return nk end
  -- the most restrictive violated rule of a list (lowest headroom), or nil
  local function violated(rules)
    local worst = nil
    for _, rule in ipairs(rules) do
      local wk = window_key(rule.window)
      local key = quota_key(p.quota_prefix, rule, wk)
      local ki = key_index(key)
      local raw = redis.call('HGET', KEYS[ki], 'used')
      local used = tonumber(raw or '0') or 0
      -- fresh: no counter yet (the script is atomic, so this still holds in step 4)
      local inst = {rule = rule, key = key, ki = ki, window_key = wk, used = used, fresh = (raw == false)}
      quota_rules[#quota_rules + 1] = inst
      if used >= rule.limit and (worst == nil or rule.limit - used < worst.rule.limit - worst.used) then
        worst = inst
      end
    end
    return worst
  end
  local q = violated(gov.risk or {})
  if q then return deny('ACTION_QUOTA_EXCEEDED', q.rule.scope, nil, nil, true, q) end
  q = violated(gov.kind or {})
  if q then return deny('ACTION_QUOTA_EXCEEDED', q.rule.scope, nil, nil, true, q) end
end


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
  local k = KEYS[B + i]
  local h = hgetall(k)
  if h then
    budgeted[#budgeted + 1] = {key = k, ki = B + i, scope = p.scopes[i], h = h}
  end
end

if #budgeted == 0 then
  -- ERROR SEMANTICS unit-mismatch bullet: a budget in another unit → 400 everywhere.
  -- Those keys are declared only on this path (need_keys: one more round trip, no writes yet).
  local probe = {}
  for i = 1, n do
    for _, u in ipairs(p.other_units) do probe[#probe + 1] = p.budget_prefix .. p.scopes[i] .. ':' .. u end
  end
  local nk = need_keys(probe)
  if nk then return nk end
  for i = 1, n do
    local units = {}
    for _, u in ipairs(p.other_units) do
      local ki = key_index(p.budget_prefix .. p.scopes[i] .. ':' .. u)
      if redis.call('EXISTS', KEYS[ki]) == 1 then
        units[#units + 1] = u
      end
    end
    if #units > 0 then
      return evidence_error(p.ev, cjson.encode({err = 'UNIT_MISMATCH', scope = p.scopes[i], expected_units = units}),
        mode == 'decide' and 'decide' or 'reserve', p.tenant, p.trace_id, p.request_id)
    end
  end
  if persist then return cjson.encode({err = 'NOT_FOUND'}) end
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
-- b.n: the amounts as exact Lua numbers when every one is short (short_amounts); the
-- checks and writes below then use plain arithmetic, else the int64 string functions.
local est_n = tonumber(estimate)
if not num_exact(est_n) then est_n = nil end
for _, b in ipairs(budgeted) do
  local h = b.h
  local n = est_n and short_amounts(h)
  local expect = n and num_exact(n.reserved + est_n) and num_expected_remaining(n.allocated, n.spent, n.reserved, n.debt)
  if expect then
    -- every step exact and reserved + estimate representable: numbers from here on
    b.n = n
    if expect ~= n.remaining then
      error('reserve: ledger invariant violated on ' .. b.key)
    end
  else
    local expect = expected_remaining(h, b.key)
    if expect == nil or expect ~= amount(h, 'remaining', b.key) then
      error('reserve: ledger invariant violated on ' .. b.key)
    end
  end
end

-- Balance rows as of now, from the hashes already read (same shape as budget_snapshot).
local function snapshots()
  local out = {}
  for i, b in ipairs(budgeted) do out[i] = snapshot_of(b.h) end
  return out
end

for _, b in ipairs(budgeted) do
  local h = b.h
  local st = h.status or 'ACTIVE'
  local remaining = amount(h, 'remaining', b.key)
  -- The facts the rules need: as exact numbers (b.n), else with the int64 functions.
  local over_limit, debt_pos, limit_pos, short, unholdable
  local n = b.n
  if n then
    limit_pos, debt_pos = n.overdraft_limit > 0, n.debt > 0
    over_limit = limit_pos and n.debt > n.overdraft_limit
    short = n.remaining < est_n
    unholdable = false -- num_exact(reserved + estimate) was checked above
  else
    local debt = amount(h, 'debt', b.key)
    local limit = amount(h, 'overdraft_limit', b.key)
    limit_pos, debt_pos = i64_is_pos(limit), i64_is_pos(debt)
    over_limit = limit_pos and i64_cmp(debt, limit) > 0
    short = i64_cmp(remaining, estimate) < 0
    -- `reserved` cannot represent the sum (only reachable with negative spent):
    -- the budget cannot take this amount (docs/decisions.md DR6)
    unholdable = i64_add(amount(h, 'reserved', b.key), estimate) == nil
  end
  local reason
  if st == 'FROZEN' then
    reason = 'BUDGET_FROZEN'
  elseif st == 'CLOSED' then
    reason = 'BUDGET_CLOSED'
  elseif h.is_over_limit == '1' or over_limit then
    -- takes precedence over DEBT_OUTSTANDING (ERROR SEMANTICS, last bullet)
    reason = 'OVERDRAFT_LIMIT_EXCEEDED'
  elseif debt_pos and not limit_pos then
    -- DecisionReasonCode: debt > 0 and overdraft_limit == 0 (docs/decisions.md DR5)
    reason = 'DEBT_OUTSTANDING'
  elseif short or unholdable then
    reason = 'BUDGET_EXCEEDED'
  end
  if reason then
    return deny(reason, b.scope, remaining, snapshots(), true)
  end
end

local decision = (caps_json ~= '') and 'ALLOW_WITH_CAPS' or 'ALLOW'

if not persist then
  local r = base_result(decision)
  if caps_json ~= '' then r.caps_json = caps_json end
  r.balances = snapshots()
  if observe then emit_observed_allowed(decision) end
  return finish(r)
end

-- 4. live ALLOW: mutate ----------------------------------------------------------------
local budgeted_scopes = {}
for i, b in ipairs(budgeted) do
  budgeted_scopes[i] = b.scope
  local h = b.h
  local u0 = util_of(h.allocated, h.spent, h.reserved)
  if b.n then
    -- exact: checked above (num_exact of reserved + estimate; remaining >= estimate)
    h.reserved = string.format('%d', b.n.reserved + est_n)
    h.remaining = string.format('%d', b.n.remaining - est_n)
  else
    h.reserved = i64_add(amount(h, 'reserved', b.key), estimate)
    h.remaining = i64_sub(amount(h, 'remaining', b.key), estimate)
  end
  h.updated_at_ms = now_s
  redis.call('HSET', KEYS[b.ki], 'reserved', h.reserved, 'remaining', h.remaining, 'updated_at_ms', now_s)
  util_signal(b.key, b.scope, p.unit, u0, h, h.sig_util or '0', now, K_OUTBOX, ctx)
  if estimate ~= '0' and h.remaining == '0' then
    local s = snapshot_of(h)
    outbox(K_OUTBOX, 'budget.exhausted', cjson.encode({
      scope = b.scope, unit = p.unit, threshold = 1.0, allocated = s.allocated, remaining = s.remaining,
      spent = s.spent, reserved = s.reserved, direction = 'rising', reservation_id = p.reservation_id,
    }), now, ctx)
  end
end

-- Effective settings (docs/decisions.md DR4): request > policy > tenant > default.
local function hash_int(v) -- a tenant field as a non-negative integer (at most 15 digits)
  if type(v) ~= 'string' or #v > 15 or not string.match(v, '^%d+$') then return nil end
  return tonumber(v)
end
local ttl = (p.ttl_ms ~= '' and tonumber(p.ttl_ms)) or (pol and pol.default_ttl_ms) or hash_int(tcfg[2]) or 60000
local max_ttl = (pol and pol.max_ttl_ms) or hash_int(tcfg[3]) or (has_tenant and 3600000 or nil)
if max_ttl and max_ttl > 0 and ttl > max_ttl then ttl = max_ttl end
local max_ext = (pol and pol.max_extensions) or hash_int(tcfg[4]) or 10
local grace = tonumber(p.grace_ms)
local expires_at = string.format('%d', now + ttl)

-- request > policy > leaf-most budget > tenant default > ALLOW_IF_AVAILABLE
local overage = p.overage_request
if overage == '' then overage = (pol and pol.overage) or '' end
if overage == '' then
  local leaf = budgeted[#budgeted].h.commit_overage_policy
  if leaf and leaf ~= '' then
    overage = leaf
  else
    local td = tcfg[5]
    overage = (td and td ~= '') and td or 'ALLOW_IF_AVAILABLE'
  end
end

-- Stored names (reservation_record.lua RES_SHORT, DM4), written as such: reservation_id,
-- tenant, status, subject, action, unit, estimate, scope_path, created_at_ms,
-- expires_at_ms, grace_ms, overage_policy, idempotency_key, extension_count,
-- max_extensions (then metadata, policy_id, rbal, caps_json, run_counters).
local fields = {
  'id', p.reservation_id, 't', p.tenant, 'status', 'ACTIVE',
  'sj', p.subject_json, 'ac', p.action_json, 'u', p.unit, 'e', estimate,
  'sp', p.scope_path,
  'ct', now_s, 'xt', expires_at, 'g', p.grace_ms,
  'op', overage, 'ik', p.idempotency_key,
  'xc', '0', 'xm', string.format('%d', max_ext),
}
scope_fields(fields, p.scope_path, p.scopes, budgeted_scopes)
-- The replay of this reserve is rebuilt from the record (DM2) unless evidence is on (its
-- envelope attests the stored bytes), the Balance rows do not pack losslessly, or the
-- idempotency record could outlive a finished reservation's retention.
local idem_ttl = math.max(ttl + grace, DAY_MS)
local rbal = nil
local final_snaps = snapshots()
if not p.ev and idem_ttl <= (tonumber(p.retain_ms) or RETAIN_DEFAULT_MS) then rbal = bal_pack(final_snaps, budgeted_scopes, p.unit) end
if rbal then
  fields[#fields + 1] = 'rbal'
  fields[#fields + 1] = rbal
  if caps_json ~= '' then
    fields[#fields + 1] = 'cj' -- caps_json
    fields[#fields + 1] = caps_json
  end
end
if p.metadata_json ~= '' then
  fields[#fields + 1] = 'md' -- metadata
  fields[#fields + 1] = p.metadata_json
end
if policy_id ~= '' then
  fields[#fields + 1] = 'pi' -- policy_id
  fields[#fields + 1] = policy_id
end

-- v0.1.26: +1 on every applicable quota counter (each key once), TTLs, the index, and
-- quota.threshold_approaching on an upward crossing, once per window instance and pct.
local run_counters = {}
local counted = {}
for _, inst in ipairs(quota_rules) do
  local key, rule = inst.key, inst.rule
  if not counted[key] then
    counted[key] = true
    -- one write per counter: `used` was read in step 2 and nothing ran since (atomic script)
    local fresh = inst.fresh
    local used = inst.used + 1
    local f = {'used', string.format('%d', used), 'limit', string.format('%d', rule.limit),
      'policy_id', policy_id, 'last_ms', now_s}
    if fresh then
      local more = {'scope', rule.scope, 'action_kind', rule.risk_class and '__risk__' or rule.kind,
        'window', rule.window, 'window_key', inst.window_key, 'created_ms', now_s}
      if rule.risk_class then more[#more + 1] = 'risk_class'; more[#more + 1] = rule.risk_class end
      if rule.ttl_ms then more[#more + 1] = 'ttl_ms'; more[#more + 1] = string.format('%d', rule.ttl_ms) end
      for _, v in ipairs(more) do f[#f + 1] = v end
    end
    redis.call('HSET', KEYS[inst.ki], unpack(f))
    if fresh then redis.call('ZREMRANGEBYSCORE', K_QUOTA_INDEX, '-inf', '(' .. now_s) end
    if rule.window == 'per_run' then
      local ttl_q = rule.ttl_ms or QUOTA_RUN_TTL_DEFAULT_MS
      redis.call('PEXPIRE', KEYS[inst.ki], string.format('%d', ttl_q))
      redis.call('ZADD', K_QUOTA_INDEX, string.format('%d', now + ttl_q), key)
      run_counters[#run_counters + 1] = key
    elseif fresh then
      local ttl_q = QUOTA_CLEANUP_MS[rule.window] or 90000000
      redis.call('PEXPIRE', KEYS[inst.ki], string.format('%d', ttl_q))
      redis.call('ZADD', K_QUOTA_INDEX, string.format('%d', now + ttl_q), key)
    end
    local thr = rule.pct * rule.limit - 1e-9
    if used - 1 < thr and used >= thr and redis.call('HSETNX', KEYS[inst.ki], 'th:' .. rule.pct, '1') == 1 then
      local kind_or_rc = rule.risk_class or rule.kind
      local data = {scope = rule.scope, action_kind = rule.risk_class and '__risk__' or rule.kind,
        window = rule.window, window_key = inst.window_key, used = used, limit = rule.limit,
        threshold_pct = rule.pct, policy_id = policy_id, tenant_id = p.tenant}
      if rule.risk_class then data.risk_class = rule.risk_class end
      outbox(K_OUTBOX, 'quota.threshold_approaching', cjson.encode(data), now, {
        trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json, scope = rule.scope,
        correlation_id = quota_correlation(p.tenant, rule.scope, kind_or_rc, rule.window, inst.window_key)})
    end
  end
end
if #run_counters > 0 then
  fields[#fields + 1] = 'rc' -- run_counters
  fields[#fields + 1] = cjson.encode(run_counters)
end
res_write(K_RES, fields, nil, true)
redis.call('ZADD', K_RES_INDEX, now_s, p.reservation_id)
redis.call('ZADD', K_SCHEDULE, string.format('%d', now + ttl + grace), p.reservation_id)
-- The index is trimmed by the retention worker (src/export/retention.ts, DX1), not here:
-- it also covers idle tenants and honours the export job's hold (DX3).

local r = base_result(decision)
if caps_json ~= '' then r.caps_json = caps_json end
r.reservation_id = p.reservation_id
r.expires_at_ms = expires_at
r.balances = final_snaps
-- the keys commit / release / expire of this reservation will declare (DK8)
local fk = {}
for _, b in ipairs(budgeted) do fk[#fk + 1] = b.key end
for _, k in ipairs(run_counters) do fk[#fk + 1] = k end
return finish(r, idem_ttl, rbal and p.reservation_id, fk)
