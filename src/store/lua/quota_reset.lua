-- @include ledger_common.lua
-- @include quota_common.lua
-- resetActionQuotaCounter: one atomic step for the counter reset and its quota.counter_reset
-- outbox event (cycles-action-kinds-v0.1.26.yaml RESET SEMANTICS; docs/decisions.md DG20).
-- KEYS: 1 counter hash (keys.quotaCounter), 2 tenant outbox, 3 tenant quota index
-- ARGV: 1 tenant, 2 scope, 3 action_kind (kind or '__risk__'), 4 risk_class ('' = none),
--       5 window, 6 window_key, 7 actor_id, 8 reason ('' = none), 9 event ctx JSON
--       {trace_id, request_id, actor_json}
-- Returns JSON {previous_used, counter = the hash after the reset, expiry_ms} or {error}.
local tenant, scope, kind, rc, window, wkey = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local function err(code, msg) return cjson.encode({error = code, message = msg}) end

local h = hgetall(KEYS[1])
-- The key is built from the request's fields; the stored fields must name the same counter
-- too (':' may occur in scopes, kinds and run ids, so two field sets can share a key text).
if not h or h.scope ~= scope or h.action_kind ~= kind or h.window ~= window
    or h.window_key ~= wkey or (h.risk_class or '') ~= rc then
  return err('NOT_FOUND', 'No quota counter matches tenant_id, scope, action_kind'
    .. (rc ~= '' and ', risk_class' or '') .. ', window and window_key')
end

local now = now_ms()
local previous = h.used or '0'
redis.call('HSET', KEYS[1], 'used', '0')
-- A reset starts a new crossing: the threshold flags of this window instance are cleared,
-- so quota.threshold_approaching fires again when the counter climbs back (DG20).
local th = {}
for f in pairs(h) do
  if string.sub(f, 1, 3) == 'th:' then th[#th + 1] = f end
end
if #th > 0 then redis.call('HDEL', KEYS[1], unpack(th)) end

local expiry
if window == 'per_run' then
  -- per_run: the TTL is refreshed (as on an increment), and the index follows the key.
  local ttl = tonumber(h.ttl_ms or '')
  if not ttl or ttl <= 0 then ttl = QUOTA_RUN_TTL_DEFAULT_MS end
  redis.call('PEXPIRE', KEYS[1], ttl)
  expiry = now + ttl
  redis.call('ZADD', KEYS[3], string.format('%.0f', expiry), KEYS[1])
else
  -- calendar windows keep their cleanup TTL (HSET does not touch it)
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then expiry = now + pttl end
end

local data = {
  tenant_id = tenant, scope = scope, action_kind = kind, window = window, window_key = wkey,
  previous_used = previous, actor_id = ARGV[7],
}
if rc ~= '' then data.risk_class = rc end
if h.limit and h.limit ~= '' then data.limit = h.limit end
if h.policy_id and h.policy_id ~= '' then data.policy_id = h.policy_id end
if ARGV[8] ~= '' then data.reason = ARGV[8] end

local ctx = cjson.decode(ARGV[9])
ctx.correlation_id = quota_correlation(tenant, scope, rc ~= '' and rc or kind, window, wkey)
ctx.scope = scope
outbox(KEYS[2], 'quota.counter_reset', cjson.encode(data), now, ctx)

h.used = '0'
for _, f in ipairs(th) do h[f] = nil end
return cjson.encode({
  previous_used = previous, counter = h,
  expiry_ms = expiry and string.format('%.0f', expiry) or '',
  correlation_id = ctx.correlation_id,
})
