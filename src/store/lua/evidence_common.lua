-- evidence_common.lua: the durable source of a CyclesEvidence envelope (docs/decisions.md
-- DEV6). Library only: local definitions, no top-level code.
-- @include ledger_common.lua
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
--   endpoint    errors only: decide | reserve | commit | release (the route the error answered)
-- The signer (src/evidence/worker.ts) renders the response from `result` with the same
-- functions the handlers use, builds, hashes, signs, stores, then XACKs and XDELs.

-- Appends one source entry to `key`, which must be one of the calling script's KEYS (the
-- declared-keys guard, DK19, checks it once the caller leaves KEY_GUARD_EXEMPT).
local function evidence_append(key, fields)
  redis.call('XADD', key, '*', unpack(fields))
end

-- ev: {key = <source stream>, request = <normalized request JSON>}, or nil (evidence off).
local function evidence_source(ev, artifact, tenant, now_s, trace_id, result_json, reservation_id, endpoint)
  local fields = {'v', '1', 'artifact', artifact, 'tenant', tenant,
    'issued_ms', now_s, 'trace_id', trace_id, 'request', ev.request, 'result', result_json}
  if reservation_id then
    fields[#fields + 1] = 'reservation_id'
    fields[#fields + 1] = reservation_id
  end
  if endpoint then
    fields[#fields + 1] = 'endpoint'
    fields[#fields + 1] = endpoint
  end
  evidence_append(ev.key, fields)
end

-- The error codes that get `error` evidence (docs/decisions.md DEV8): outcomes of an
-- evaluation on the attested routes, never validation, auth, lookup or idempotency errors.
local EVIDENCE_ERROR_CODES = {
  BUDGET_EXCEEDED = true, BUDGET_FROZEN = true, BUDGET_CLOSED = true, OVERDRAFT_LIMIT_EXCEEDED = true,
  DEBT_OUTSTANDING = true, TENANT_CLOSED = true, RESERVATION_FINALIZED = true, RESERVATION_EXPIRED = true,
  UNIT_MISMATCH = true,
}

-- An error result (JSON text with `error` or `err` = code) as the script returns it; when
-- evidence is on and the code is attested, stamped with ev_ms / ev_trace / ev_rid (the
-- ErrorResponse's request_id) and recorded as an `error` source. Errors are never stored
-- for replay: every attempt that answers one is its own exchange and its own envelope.
local function evidence_error(ev, e_json, endpoint, tenant, trace_id, request_id, reservation_id)
  if not ev then return e_json end
  local e = cjson.decode(e_json)
  if not EVIDENCE_ERROR_CODES[e.error or e.err] then return e_json end
  local now_s = string.format('%d', now_ms())
  e.ev_ms = now_s
  e.ev_trace = trace_id
  e.ev_rid = request_id
  local enc = cjson.encode(e)
  evidence_source(ev, 'error', tenant, now_s, trace_id, enc, reservation_id, endpoint)
  return enc
end
