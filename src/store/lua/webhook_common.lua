-- webhook_common.lua: helpers of the webhook subscription scripts (include with
-- `-- @include webhook_common.lua` after ledger_common.lua). Library only.
-- Record layout: src/events/subscriptions.ts (hash keys.webhook(tenant, id)).

local WH_SYSTEM = '__system__'
local WH_TENANT_CATEGORIES = {budget = true, reservation = true, tenant = true}

-- WEBHOOK SUBSCRIPTION INVARIANTS 1 and 2 (admin spec info.description) on the selectors
-- about to be persisted: at least one selector, and a concrete tenant's subscription only
-- selects budget / reservation / tenant events. The TypeScript caller checks the same rules
-- first (with friendlier messages); this check makes a violating state unreachable by any
-- path that writes through these scripts. Returns nil or the problem.
local function wh_selector_problem(tenant, types_json, cats_json)
  local ok1, types = pcall(cjson.decode, types_json or '[]')
  local ok2, cats = pcall(cjson.decode, cats_json or '[]')
  if not ok1 or not ok2 or type(types) ~= 'table' or type(cats) ~= 'table' then
    return 'the selectors are unreadable'
  end
  if #types == 0 and #cats == 0 then
    return 'at least one of event_types and event_categories must be non-empty'
  end
  if tenant ~= WH_SYSTEM then
    for _, t in ipairs(types) do
      local cat = type(t) == 'string' and string.match(t, '^([^.]+)%.') or nil
      if not cat or not WH_TENANT_CATEGORIES[cat] then
        return 'event type ' .. tostring(t) .. ' is admin-only; a subscription owned by a tenant may only select budget.*, reservation.* and tenant.* events'
      end
    end
    for _, c in ipairs(cats) do
      if type(c) ~= 'string' or not WH_TENANT_CATEGORIES[c] then
        return 'event category ' .. tostring(c) .. ' is admin-only; a subscription owned by a tenant may only select the budget, reservation and tenant categories'
      end
    end
  end
  return nil
end

local function wh_err(code, message)
  return cjson.encode({error = code, message = message})
end

-- Rule 2 of CASCADE SEMANTICS for a subscription's owner (none for __system__).
-- Returns an error reply or nil.
local function wh_owner_guard(tenant, tenant_key)
  if tenant == WH_SYSTEM then return nil end
  local g = tenant_guard(tenant_key)
  if g == 'TENANT_CLOSED' then return wh_err('TENANT_CLOSED', 'The owning tenant ' .. tenant .. ' is CLOSED') end
  if g then error('tenant record of ' .. tenant .. ' is corrupt (status missing or unknown)') end
  return nil
end

-- HSET of a Lua table of string fields.
local function wh_hset(key, t)
  local flat = {}
  for k, v in pairs(t) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end
