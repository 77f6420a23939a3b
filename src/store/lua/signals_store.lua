-- signals_store.lua: system.store_connection_lost + system.store_connection_restored for one
-- outage one process saw (src/events/signals/store.ts, docs/decisions.md DV37). Both are
-- written only now, after the connection is back: while the store is unreachable nothing
-- can be written to it. Every process notices the same outage; the first to report it
-- wins and later reports whose loss began before that report are the same outage: skipped.
-- @include ledger_common.lua
-- @include signals_worker.lua
--
-- KEYS: 1 state hash (keys.signals('__system__')), 2 outbox (keys.outbox('__system__'))
-- ARGV: 1 lost_at ms (process clock), 2 process label, 3 reconnect attempts
-- Returns 1 when the two events were written, 0 when another process already did.

local lost_at = tonumber(ARGV[1])
local now = now_ms()
local last = tonumber(redis.call('HGET', KEYS[1], 'store_reported_ms') or '0') or 0
if lost_at <= last then return 0 end
redis.call('HSET', KEYS[1], 'store_reported_ms', string.format('%d', now))
local outage = math.max(0, now - lost_at)
local system = {actor_json = '{"type":"system"}'}
local details = {lost_at_ms = lost_at, restored_at_ms = now, outage_ms = outage, reported_by = ARGV[2],
  reconnect_attempts = tonumber(ARGV[3]) or 0}
signal_outbox(KEYS[2], 'system.store_connection_lost', {
  component = 'store', severity = 'critical',
  message = 'Connection to the backing store (Redis) was lost (recorded after it came back)',
  details = details,
}, now, system, 'cycles-server')
signal_outbox(KEYS[2], 'system.store_connection_restored', {
  component = 'store', severity = 'info',
  message = 'Connection to the backing store (Redis) restored after ' .. outage .. ' ms',
  details = details,
}, now, system, 'cycles-server')
return 1
