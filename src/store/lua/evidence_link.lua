-- evidence_link.lua: records a signed envelope's reference on its reservation (the
-- ReservationEvidence map getReservation / listReservations?include=evidence render), once
-- the envelope is stored. Transport metadata, not attested. A reservation that no longer
-- exists (retention) is not recreated.
-- KEYS[1] reservation hash   ARGV[1] field (`ev:reserve` | `ev:commit` | `ev:release`)
-- ARGV[2] CyclesEvidenceRef JSON
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
