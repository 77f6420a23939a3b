-- @include ledger_common.lua
-- updateTenant: compare-and-write of the patch, status lifecycle, and the CLOSED flip of
-- the close cascade (Mode B, flip first: docs/decisions.md). On the flip the script also
-- snapshots every budget's `reserved` into the cascade state hash, atomically with the
-- flip, so the per-budget reservation.released_via_tenant_cascade aggregate is exact even
-- if the cascade is interrupted and resumed later.
-- KEYS: 1 tenant hash, 2 outbox, 3 close-cascade hash, 4 budget index zset,
--       5.. (a close only) every budget key of the index (docs/decisions.md DK8): a missing
--       one → {"need_keys": [...]} before anything is written
-- ARGV: 1 patch JSON (field -> string; `status` optional), 2 event ctx JSON,
--       3 budget key prefix ("{t:<id>}:budget:"), 4 correlation id for a close
local t = hgetall(KEYS[1])
if not t then return cjson.encode({error = 'TENANT_NOT_FOUND', message = 'Tenant not found'}) end
local patch = cjson.decode(ARGV[1])
local ctx = cjson.decode(ARGV[2])
local cur = t.status
local target = patch.status
patch.status = nil

-- Which fields actually change, and which event each belongs to.
local SETTINGS = {default_commit_overage_policy = true, default_reservation_ttl_ms = true,
  max_reservation_ttl_ms = true, max_reservation_extensions = true, observe_mode = true}
local changed, updated_fields, settings_fields = {}, {}, {}
local names = {}
for k in pairs(patch) do names[#names + 1] = k end
table.sort(names)
for _, k in ipairs(names) do
  local v = patch[k]
  local old = t[k]
  if k == 'observe_mode' and old == nil then old = 'ENFORCE' end
  if old ~= v then
    changed[#changed + 1] = k
    if SETTINGS[k] then settings_fields[#settings_fields + 1] = k else updated_fields[#updated_fields + 1] = k end
  end
end

if cur == 'CLOSED' then
  if target ~= nil and target ~= 'CLOSED' then
    return cjson.encode({error = 'INVALID_REQUEST', message = 'Tenant is CLOSED; closing is irreversible (status ' .. target .. ' not allowed)'})
  end
  if #changed > 0 then
    return cjson.encode({error = 'TENANT_CLOSED', message = 'Tenant is CLOSED; its settings can no longer change'})
  end
  return cjson.encode({tenant = t, already_closed = true})
end

local status_changes = target ~= nil and target ~= cur
if #changed == 0 and not status_changes then return cjson.encode({tenant = t}) end

-- A close snapshots every budget's `reserved`: those keys must be declared (DK8).
local budget_keys = nil -- member → key
if status_changes and target == 'CLOSED' then
  budget_keys = {}
  local list = {}
  for _, member in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    local scope, unit = string.match(member, '^(.*)|([^|]+)$')
    if scope then
      budget_keys[#budget_keys + 1] = {member = member, key = ARGV[3] .. scope .. ':' .. unit}
      list[#list + 1] = budget_keys[#budget_keys].key
    end
  end
  local nk = need_keys(list)
  if nk then return nk end
end

local now = now_ms()
local writes = {'updated_at_ms', tostring(now)}
for _, k in ipairs(changed) do writes[#writes + 1] = k; writes[#writes + 1] = patch[k] end
local final = cur
if status_changes then
  final = target
  writes[#writes + 1] = 'status'; writes[#writes + 1] = target
  if target == 'SUSPENDED' then writes[#writes + 1] = 'suspended_at_ms'; writes[#writes + 1] = tostring(now) end
  if target == 'CLOSED' then writes[#writes + 1] = 'closed_at_ms'; writes[#writes + 1] = tostring(now) end
end
redis.call('HSET', KEYS[1], unpack(writes))

local function emit(event_type, fields_list, c)
  local data = {tenant_id = t.tenant_id, previous_status = cur, new_status = final}
  local json = cjson.encode(data)
  -- cjson cannot tell an empty array from an empty object; splice the list in by hand.
  local list = #fields_list > 0 and cjson.encode(fields_list) or '[]'
  json = string.sub(json, 1, -2) .. ',"changed_fields":' .. list .. '}'
  outbox(KEYS[2], event_type, json, now, c or ctx)
end
if #updated_fields > 0 then emit('tenant.updated', updated_fields) end
if #settings_fields > 0 then emit('tenant.settings_changed', settings_fields) end

local closed_now = false
if status_changes then
  if target == 'SUSPENDED' then emit('tenant.suspended', {'status'})
  elseif target == 'ACTIVE' then emit('tenant.reactivated', {'status'})
  elseif target == 'CLOSED' then
    closed_now = true
    -- The parent event of a bulk CLOSE carries the bulk id (ctx.correlation_id); a single
    -- close uses the cascade id, which the cascade children always carry (admin spec,
    -- bulkActionTenants EVENTS).
    local cctx = {trace_id = ctx.trace_id, request_id = ctx.request_id, actor_json = ctx.actor_json,
      correlation_id = (ctx.correlation_id and ctx.correlation_id ~= '' and ctx.correlation_id) or ARGV[4]}
    emit('tenant.closed', {'status'}, cctx)
    local state = {'request_id', ctx.request_id or '', 'trace_id', ctx.trace_id or '',
      'actor_json', ctx.actor_json or '{}', 'correlation_id', ARGV[4], 'started_at_ms', tostring(now)}
    for _, b in ipairs(budget_keys) do
      local ki = key_index(b.key)
      local reserved = redis.call('HGET', KEYS[ki], 'reserved')
      if reserved and reserved ~= '0' then
        state[#state + 1] = 'reserved:' .. b.member; state[#state + 1] = reserved
      end
    end
    redis.call('DEL', KEYS[3])
    redis.call('HSET', KEYS[3], unpack(state))
  end
end
return cjson.encode({tenant = hgetall(KEYS[1]), closed_now = closed_now})
