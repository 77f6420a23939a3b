// The requirement catalogue: every MUST / SHOULD of the upstream CONFORMANCE.md and the main
// HTTP-observable normative statements of the runtime spec's info.description (plus a few
// operation/schema descriptions they point at), each paraphrased in one line. Cases name the
// entries they check in `requirements`; an entry no case names is a coverage gap. Ids are
// stable: rename never, add freely.
import type { Requirement } from './requirements';

const CONF = 'CONFORMANCE.md';
const RT = 'cycles-protocol-v0.yaml';

const r = (id: string, level: Requirement['level'], source: string, text: string): Requirement => ({ id, level, source, text });

export const CATALOG: Requirement[] = [
  // ── CONFORMANCE.md §MUST / Runtime operations ──
  r('OPS.CREATE_RESERVATION', 'MUST', `${CONF} §MUST/Runtime operations`, 'POST /v1/reservations is implemented with its specified semantics.'),
  r('OPS.COMMIT_RESERVATION', 'MUST', `${CONF} §MUST/Runtime operations`, 'POST /v1/reservations/{id}/commit is implemented with its specified semantics.'),
  r('OPS.RELEASE_RESERVATION', 'MUST', `${CONF} §MUST/Runtime operations`, 'POST /v1/reservations/{id}/release is implemented with its specified semantics.'),
  r('OPS.EXTEND_RESERVATION', 'MUST', `${CONF} §MUST/Runtime operations`, 'POST /v1/reservations/{id}/extend is implemented as a TTL heartbeat.'),
  r('OPS.CONTRACT', 'MUST', `${CONF} §MUST/Runtime operations`, 'Every implemented endpoint keeps the specified paths, request/response schemas and error codes.'),

  // ── §MUST / Core invariants ──
  r('CORE.ATOMIC_RESERVATION', 'MUST', `${CONF} §MUST/Core invariants; ${RT} info CORE INVARIANTS`, 'A reserve locks every affected scope in one step or none of them.'),
  r('CORE.CONCURRENCY_SAFE', 'MUST', `${CONF} §MUST/Core invariants`, 'Concurrent reserves never oversubscribe a shared budget, ancestors included.'),
  r('CORE.IDEMPOTENT_SETTLEMENT', 'MUST', `${CONF} §MUST/Core invariants; ${RT} info CORE INVARIANTS`, 'Retried commits/releases are safe: one action settles at most once, never double-charged.'),
  r('CORE.UNIT_CONSISTENCY', 'MUST', `${CONF} §MUST/Core invariants`, 'Reserve, commit, release and event validate and keep the unit of the amounts.'),

  // ── §MUST / Error semantics (CONFORMANCE.md list + runtime ERROR SEMANTICS) ──
  r('ERR.BUDGET_EXCEEDED', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'A budget denial of a live reserve answers 409 BUDGET_EXCEEDED.'),
  r('ERR.OVERDRAFT_LIMIT_EXCEEDED', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'A commit whose overdraft would pass the limit, or a reserve on an over-limit scope, answers 409 OVERDRAFT_LIMIT_EXCEEDED.'),
  r('ERR.IDEMPOTENCY_MISMATCH', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info IDEMPOTENCY`, 'Reusing an idempotency key with another payload answers 409 IDEMPOTENCY_MISMATCH.'),
  r('ERR.RESERVATION_FINALIZED', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'Mutating a committed or released reservation answers 409 RESERVATION_FINALIZED.'),
  r('ERR.RESERVATION_EXPIRED', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'Mutating an expired reservation (past its cut-off) answers 410 RESERVATION_EXPIRED.'),
  r('ERR.UNIT_MISMATCH', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'A wrong unit on reserve/commit/event/decide answers 400 UNIT_MISMATCH.'),
  r('ERR.NOT_FOUND', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'An unknown reservation, or a subject with no budget at any derived scope, answers 404 NOT_FOUND.'),
  r('ERR.DEBT_OUTSTANDING', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS`, 'A reserve blocked by outstanding debt answers 409 DEBT_OUTSTANDING.'),
  r('ERR.TENANT_CLOSED.PERSISTING', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS (closed tenant)`, 'After the owning tenant is CLOSED, fresh reserve/commit/release/extend/createEvent answer 409 TENANT_CLOSED, ahead of reservation-state errors.'),
  r('ERR.TENANT_CLOSED.EVALUATION', 'MUST', `${CONF} §MUST/Error semantics; ${RT} info ERROR SEMANTICS (closed tenant)`, 'dry_run reserve and decide on a CLOSED tenant answer 200 DENY with reason TENANT_CLOSED, never 409.'),
  r('ERR.TENANT_CLOSED.READS', 'MUST', `${RT} info ERROR SEMANTICS (closed tenant)`, 'Reservation reads of a CLOSED tenant keep answering (never TENANT_CLOSED).'),
  r('ERR.ENVELOPE', 'MUST', `${RT} info ERROR SEMANTICS; ErrorResponse`, 'Errors carry the ErrorResponse body with a spec error code and the documented HTTP status.'),
  r('ERR.UNIT_MISMATCH.DETAILS', 'SHOULD', `${RT} info ERROR SEMANTICS (unit mismatch)`, 'A wrong-unit error names the scope, the requested unit and the units that do exist in details.'),

  // ── §MUST / Authentication & tenancy (runtime AUTH & TENANCY) ──
  r('AUTH.API_KEY', 'MUST', `${CONF} §MUST/Authentication & tenancy; ${RT} info AUTH & TENANCY`, 'Requests authenticate with X-Cycles-API-Key; a missing or invalid key is refused with 401.'),
  r('AUTH.SUBJECT_TENANT', 'MUST', `${RT} info AUTH & TENANCY`, 'A subject.tenant other than the key\'s tenant is refused with 403 FORBIDDEN.'),
  r('AUTH.RESERVATION_OWNERSHIP', 'MUST', `${RT} info AUTH & TENANCY`, 'Reading or settling another tenant\'s existing reservation answers 403 FORBIDDEN and changes nothing.'),
  r('AUTH.BALANCE_SCOPE', 'MUST', `${RT} info AUTH & TENANCY`, 'Balances are only those of the effective tenant; asking for another tenant answers 403.'),
  r('AUTH.LIST_SCOPE', 'MUST', `${RT} listReservations TENANCY`, 'listReservations only returns the effective tenant\'s rows; a foreign tenant filter answers 403; under the admin key tenant is required (400).'),
  r('AUTH.ADMIN_READS', 'MUST', `${RT} getReservation/listReservations TENANCY`, 'The admin key can read any tenant\'s reservation by id and list them with a tenant filter.'),
  r('AUTH.PERMISSIONS', 'MAY', `${CONF} §MUST/Authentication & tenancy (scoping is implementation-specific); admin Permission enum`, 'A key without the permission an operation needs is refused with 403 and changes nothing.'),

  // ── §MUST / Cross-plane operations, schemas, invariants ──
  r('XP.LIST_EVENTS', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/admin/events (listEvents) is implemented.'),
  r('XP.GET_EVENT', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/admin/events/{event_id} (getEvent) is implemented.'),
  r('XP.REPLAY_EVENTS', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'POST /v1/admin/webhooks/{id}/replay (replayEvents) is implemented.'),
  r('XP.LIST_TENANT_EVENTS', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/events (listTenantEvents) is implemented, tenant-scoped.'),
  r('XP.LIST_DELIVERIES', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/admin/webhooks/{id}/deliveries (listWebhookDeliveries) is implemented.'),
  r('XP.LIST_TENANT_DELIVERIES', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/webhooks/{id}/deliveries (listTenantWebhookDeliveries) is implemented, tenant-scoped.'),
  r('XP.GET_BALANCES', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/balances (getBalances) is implemented and keeps the ledger identity.'),
  r('XP.INTROSPECT', 'MUST', `${CONF} §MUST/Cross-plane operations`, 'GET /v1/auth/introspect (introspectAuth) is implemented.'),
  r('XP.SCHEMA.EVENT', 'MUST', `${CONF} §MUST/Normative schemas`, 'Emitted events follow the EventType enum and their EventData payload schema.'),
  r('XP.SCHEMA.WEBHOOK_DELIVERY', 'MUST', `${CONF} §MUST/Normative schemas`, 'Webhook deliveries follow the WebhookDelivery envelope, signature headers and retry policy.'),
  r('XP.SCHEMA.PERMISSION', 'MUST', `${CONF} §MUST/Normative schemas`, 'Only values of the Permission enum are accepted as key permissions.'),
  r('XP.WEBHOOK.SELECTOR_PRESENCE', 'MUST', `${CONF} §MUST/Normative invariants`, 'No subscription with both event_types and event_categories empty can be persisted (400).'),
  r('XP.WEBHOOK.TENANT_SELECTORS', 'MUST', `${CONF} §MUST/Normative invariants`, 'A tenant-owned subscription can never carry admin-only types/categories, on any write path.'),

  // ── §SHOULD ──
  r('SHOULD.EMIT_EVENTS', 'SHOULD', `${CONF} §SHOULD`, 'Budget-state changes produce events of the EventType enum.'),
  r('SHOULD.TRACE_PROPAGATION', 'SHOULD', `${CONF} §SHOULD`, 'X-Cycles-Trace-Id and traceparent are propagated per CORRELATION AND TRACING.'),
  r('SHOULD.DECIDE', 'SHOULD', `${CONF} §SHOULD`, 'POST /v1/decide is implemented.'),
  r('SHOULD.LIST_RESERVATIONS', 'SHOULD', `${CONF} §SHOULD`, 'GET /v1/reservations is implemented, with the time-window parameters.'),
  r('SHOULD.GET_RESERVATION', 'SHOULD', `${CONF} §SHOULD`, 'GET /v1/reservations/{id} is implemented.'),
  r('SHOULD.CREATE_EVENT', 'SHOULD', `${CONF} §SHOULD`, 'POST /v1/events is implemented.'),
  r('SHOULD.OVER_LIMIT_SIGNAL', 'SHOULD', `${CONF} §SHOULD; ${RT} info OVERDRAFT RECONCILIATION`, 'A scope entering is_over_limit is made visible to operators (log/metric/event).'),
  r('SHOULD.V0126', 'SHOULD', `${CONF} §Upcoming (v0.1.26)`, 'The v0.1.26 action-kind registry, evaluation order and governance fields are implemented.'),

  // ── §MAY with a conditional MUST ──
  r('EVIDENCE.CONFORMS', 'MUST', `${CONF} §MAY (CyclesEvidence)`, 'An evidence envelope the server does emit conforms to cycles-evidence-v0.2.yaml.'),
  r('EVIDENCE.CACHING', 'SHOULD', `${RT} getEvidence / getEvidenceJwks AUTH`, 'Envelopes are served Cache-Control public, immutable; the JWK Set with a short public max-age, never immutable.'),

  // ── runtime info.description: SCOPE DERIVATION ──
  r('RT.SCOPE.CANONICAL_ORDER', 'MUST', `${RT} info SCOPE DERIVATION`, 'affected_scopes lists the derived scopes root first in tenant→workspace→app→workflow→agent→toolset order.'),
  r('RT.SCOPE.GAPS_SKIPPED', 'MUST', `${RT} info SCOPE DERIVATION`, 'Subject levels not given are left out of scope paths, never filled with a default.'),
  r('RT.SCOPE.BUDGET_REQUIRED', 'MUST', `${RT} info SCOPE DERIVATION`, 'Unbudgeted derived scopes are skipped, but at least one derived scope must have a budget.'),
  r('RT.SCOPE.ANCESTORS_ENFORCED', 'MUST', `${RT} info SCOPE DERIVATION + CORE INVARIANTS`, 'Every budgeted derived scope is enforced: a short ancestor denies even when the leaf has room.'),

  // ── IDEMPOTENCY ──
  r('RT.IDEM.HEADER_MATCH', 'MUST', `${RT} info IDEMPOTENCY`, 'When both the X-Idempotency-Key header and body key are sent they must be equal.'),
  r('RT.IDEM.SCOPE', 'MUST', `${RT} info IDEMPOTENCY`, 'Idempotency is keyed per (effective tenant, endpoint, key): other tenants and endpoints are independent.'),
  r('RT.IDEM.REPLAY', 'MUST', `${RT} info IDEMPOTENCY`, 'A replay returns the original outcome and payload, server-generated ids included.'),
  r('RT.IDEM.CONCURRENT', 'MUST', `${RT} info IDEMPOTENCY + CORE INVARIANTS`, 'Concurrent requests with one key converge on a single effect and a single outcome.'),
  r('RT.IDEM.REMAINING_TTL', 'MUST', `${RT} info IDEMPOTENCY`, 'remaining_ttl_ms on a replayed reserve/extend is recomputed from the original expiry, not copied.'),

  // ── overage policies / OVERDRAFT RECONCILIATION ──
  r('RT.OVERAGE.REJECT', 'MUST', `${RT} CommitOveragePolicy`, 'Under REJECT a commit above the reservation is refused and the ledger is unchanged.'),
  r('RT.OVERAGE.ALLOW_IF_AVAILABLE', 'MUST', `${RT} CommitOveragePolicy`, 'Under ALLOW_IF_AVAILABLE an overage is charged up to what remains, never creates debt, and a capped commit marks the scope over-limit.'),
  r('RT.OVERAGE.ALLOW_WITH_OVERDRAFT', 'MUST', `${RT} CommitOveragePolicy`, 'Under ALLOW_WITH_OVERDRAFT an uncovered overage becomes debt within overdraft_limit, else 409 OVERDRAFT_LIMIT_EXCEEDED.'),
  r('RT.OVERDRAFT.OVER_LIMIT_BLOCKS', 'MUST', `${RT} info OVERDRAFT RECONCILIATION + ERROR SEMANTICS`, 'An over-limit scope refuses every new reserve with OVERDRAFT_LIMIT_EXCEEDED, ahead of DEBT_OUTSTANDING.'),
  r('RT.OVERDRAFT.AUTO_CLEAR', 'MUST', `${RT} info OVERDRAFT RECONCILIATION`, 'Once debt is repaid below the limit, is_over_limit goes back to false by itself.'),

  // ── expiry / grace / extend ──
  r('RT.EXPIRY.GRACE', 'MUST', `${RT} info ERROR SEMANTICS; createReservation`, 'Commit/release are accepted until expires_at_ms + grace_period_ms and answer 410 after it.'),
  r('RT.EXPIRY.EXTEND_CUTOFF', 'MUST', `${RT} info ERROR SEMANTICS; extendReservation`, 'Extend is accepted only up to expires_at_ms (no grace) and answers 410 after it.'),
  r('RT.EXPIRY.GET_EXPIRED', 'MUST', `${RT} getReservation EXPIRY`, 'getReservation of an EXPIRED reservation answers 410; listReservations still lists it.'),
  r('RT.EXTEND.SEMANTICS', 'MUST', `${RT} extendReservation SEMANTICS`, 'Extend moves only expires_at_ms, relative to the current expiry; amount, unit and scopes stay.'),
  r('RT.EXTEND.MAX_EXTENSIONS', 'MAY', `${RT} extendReservation HEARTBEAT GUIDANCE; admin Tenant.max_reservation_extensions`, 'A server limiting extensions refuses the one beyond the limit with 409 MAX_EXTENSIONS_EXCEEDED, leaving expiry as is.'),

  // ── dry_run / decide ──
  r('RT.DRY_RUN', 'MUST', `${RT} ReservationCreateRequest.dry_run`, 'dry_run evaluates like a reserve but persists nothing and moves no balance.'),
  r('RT.DECIDE.DENY_200', 'MUST', `${RT} decide; info ERROR SEMANTICS (unit mismatch (d))`, 'decide reports budget-state refusals as 200 DENY with a reason code, never a 4xx.'),

  // ── listReservations ──
  r('RT.LIST.STATUS_FILTER', 'SHOULD', `${RT} listReservations RECOVERY`, 'The status filter returns only reservations in that status.'),
  r('RT.LIST.IDEMPOTENCY_LOOKUP', 'SHOULD', `${RT} listReservations RECOVERY`, 'Filtering by idempotency_key recovers the one reservation that key created.'),
  r('RT.LIST.SUBJECT_FILTER', 'SHOULD', `${RT} listReservations SUBJECT FILTERS`, 'Subject-level query parameters filter on the reservation\'s subject.'),
  r('RT.LIST.TIME_WINDOWS', 'MUST', `${RT} listReservations TIME-RANGE FILTERS`, 'from/to, expires_from/expires_to and finalized_from/finalized_to bound their own timestamp, inclusive, ANDed.'),
  r('RT.LIST.WINDOW_VALIDATION', 'MUST', `${RT} listReservations TIME-RANGE FILTERS`, 'A window with from > to answers 400; blank bounds count as unset.'),
  r('RT.LIST.SORT', 'MUST', `${RT} listReservations sort_by; SortDirection`, 'sort_by orders rows by the named key in sort_dir (desc when omitted) and paging keeps that order.'),

  // ── CORRELATION AND TRACING ──
  r('RT.TRACE.ECHO', 'MUST', `${RT} info CORRELATION AND TRACING`, 'Every response on every plane carries X-Request-Id and a valid X-Cycles-Trace-Id.'),
  r('RT.TRACE.INBOUND', 'MUST', `${RT} info CORRELATION AND TRACING`, 'The trace id comes from a valid traceparent, else a valid X-Cycles-Trace-Id, else is generated; malformed headers never fail a request.'),
  r('RT.TRACE.ERROR_BODY', 'MUST', `${RT} info CORRELATION AND TRACING`, 'Error bodies carry request_id and trace_id equal to the response headers.'),
  r('RT.TRACE.DOWNSTREAM', 'MUST', `${RT} info CORRELATION AND TRACING`, 'Events, audit entries and webhook deliveries caused by a request carry its request_id / trace_id.'),
];
