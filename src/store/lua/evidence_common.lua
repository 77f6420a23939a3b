-- evidence_common.lua: the durable source of a CyclesEvidence envelope (docs/decisions.md
-- DEV6). Library only: local definitions, no top-level code.
--
-- A ledger script that answers a decide / reserve / commit / release (or an attested
-- error) appends ONE entry to the tenant's evidence source stream (keys.evidenceSource,
-- same slot) in the same atomic step as the operation, so the envelope whose evidence_id
-- the response carries can always be signed later, even if the process dies right after
-- responding. The entry holds what the envelope is rebuilt from, nothing derived:
--   v           source layout version ('1')
--   artifact    decide | reserve | commit | release | error
--   tenant      the tenant (the stream is per tenant; kept for readers of one entry)
--   issued_ms   Redis TIME of this execution = the envelope's issued_at_ms
--   trace_id    the request's trace id = the envelope's trace_id
--   request     the normalized request JSON the server acted on (passed in by the caller)
--   result      the stored result JSON the response is rendered from (src/evidence/source.ts)
--   reservation_id   commit / release / their errors: the path argument
-- The signer (src/evidence/worker.ts) renders the response from `result` with the same
-- functions the handlers use, builds, hashes, signs, stores, then XACKs and XDELs.

-- ev: {key = <source stream>, request = <normalized request JSON>}, or nil (evidence off).
local function evidence_source(ev, artifact, tenant, now_s, trace_id, result_json, reservation_id)
  local args = {'XADD', ev.key, '*', 'v', '1', 'artifact', artifact, 'tenant', tenant,
    'issued_ms', now_s, 'trace_id', trace_id, 'request', ev.request, 'result', result_json}
  if reservation_id then
    args[#args + 1] = 'reservation_id'
    args[#args + 1] = reservation_id
  end
  redis.call(unpack(args))
end
