-- whd_renew: a dispatcher extends its leases on the queues it is working on (heartbeat,
-- every lease/3). A lease that is gone or held by another token is reported back: the
-- worker stops sending from that queue (someone else owns it now). One call per owner:
-- every key is in the owner's slot and declared (DK13).
-- KEYS: 1 the owner's due-subscriptions zset, 1 + i the lease of subscription ARGV[2 + i]
-- ARGV: 1 token, 2 lease ms, 3.. subscription ids
-- Returns the subscription ids whose lease was lost.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token, lease_ms = ARGV[1], tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local sub = ARGV[i]
  local lk = KEYS[i - 1]
  if redis.call('GET', lk) == token then
    redis.call('PEXPIRE', lk, lease_ms)
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, sub)
  else
    lost[#lost + 1] = sub
  end
end
return lost
