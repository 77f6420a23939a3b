-- @include ledger_common.lua
-- Tenant-close cascade, one budget: drive it to CLOSED (draining any reserved amount back
-- into remaining) and emit budget.closed_via_tenant_cascade plus, when the budget held
-- reservations at the moment of the flip, reservation.released_via_tenant_cascade with
-- that snapshot as released_amount. Idempotent: a CLOSED budget is left alone and emits
-- nothing, so a resumed cascade never duplicates events.
-- KEYS: 1 budget hash, 2 outbox, 3 close-cascade hash
-- ARGV: 1 index member "<scope>|<unit>", 2 event ctx JSON (with correlation_id)
local b = hgetall(KEYS[1])
if not b or b.status == 'CLOSED' then return cjson.encode({changed = false}) end
local ctx = cjson.decode(ARGV[2])
ctx.scope = b.scope
local now = now_ms()
local reserved = b.reserved or '0'
local remaining = i64_add(b.remaining or '0', reserved)
if not remaining then error('int64 overflow draining reserved on ' .. KEYS[1]) end
redis.call('HSET', KEYS[1], 'status', 'CLOSED', 'reserved', '0', 'remaining', remaining,
  'closed_at_ms', tostring(now), 'updated_at_ms', tostring(now))
assert_invariant(KEYS[1])
local snap = redis.call('HGET', KEYS[3], 'reserved:' .. ARGV[1])
outbox(KEYS[2], 'budget.closed_via_tenant_cascade', cjson.encode({ledger_id = b.ledger_id, scope = b.scope,
  unit = b.unit, prior_status = b.status or 'ACTIVE', new_status = 'CLOSED', cascade_reason = 'tenant_closed'}), now, ctx)
local released = snap
if not released or released == '0' then
  if reserved ~= '0' then released = reserved else released = nil end
end
if released then
  outbox(KEYS[2], 'reservation.released_via_tenant_cascade', cjson.encode({ledger_id = b.ledger_id, scope = b.scope,
    unit = b.unit, prior_status = b.status or 'ACTIVE', released_amount = released, cascade_reason = 'tenant_closed'}), now, ctx)
end
return cjson.encode({changed = true, prior_status = b.status, drained = reserved})
