// Redis key layout. Every key that belongs to a tenant starts with the tenant's hash tag
// `{t:<tenant>}` so that each ledger script touches exactly one Cluster slot. Keys that
// must be found without knowing the tenant (API-key secrets, the tenant registry, the
// audit log) are separate, non-tenant keys written outside the ledger scripts. Reservation
// ids carry their tenant (src/ledger/reservationId.ts), so no reservation state lives
// outside its tenant's slot.
//
// Tenant ids, scope paths and idempotency keys can contain ':' — the unit / id is always
// the last segment, so the layouts stay unambiguous.

export const tenantTag = (tenant: string) => `{t:${tenant}}`;

export const keys = {
  /** hash: status + configuration of a tenant (written by the admin plane) */
  tenant: (t: string) => `${tenantTag(t)}:tenant`,
  /** hash: one budget ledger (allocated, remaining, reserved, spent, debt, ...) */
  budget: (t: string, scopePath: string, unit: string) => `${tenantTag(t)}:budget:${scopePath}:${unit}`,
  /** zset: every budget key of a tenant, member = "<scope_path>|<unit>", score 0 (lex order) */
  budgetIndex: (t: string) => `${tenantTag(t)}:budgets`,
  /** hash: one reservation */
  reservation: (t: string, id: string) => `${tenantTag(t)}:res:${id}`,
  /** zset: reservation ids of a tenant by created_at_ms */
  reservationIndex: (t: string) => `${tenantTag(t)}:res-by-created`,
  /** zset: ids of the tenant's ACTIVE reservations scored by expires_at + grace (the
   *  sweeper's work list; written by the same scripts that create and finish them) */
  expirySchedule: (t: string) => `${tenantTag(t)}:res-expiry`,
  /** string: idempotency record for (tenant, endpoint, key) */
  idem: (t: string, endpoint: string, key: string) => `${tenantTag(t)}:idem:${endpoint}:${key}`,
  /** string: one signed CyclesEvidence envelope, its canonical JSON bytes (served verbatim by
   *  getEvidence). Not tenant-scoped: the content hash alone addresses it (public fetch). */
  evidenceEnvelope: (id: string) => `cycles:evidence:${id}`,
  /** zset: every stored envelope, member = evidence_id, score = issued_at_ms (the time order
   *  `cycles evidence export` streams; written with the envelope) */
  evidenceIndex: () => 'cycles:evidence-by-time',
  /** hash: one action-quota counter (v0.1.26; src/governance/quota.ts, quota_common.lua).
   *  kindPart = the action kind, or `__risk__:<risk_class>` for a risk-class counter;
   *  windowKey = run_id (per_run) or the UTC bucket (YYYY-MM-DDTHH:MM / YYYY-MM-DDTHH /
   *  YYYY-MM-DD). Fields: used, limit, policy_id, scope, action_kind, risk_class, window,
   *  window_key, ttl_ms (per_run), created_ms, last_ms, th:<pct> (threshold fired). */
  quotaCounter: (t: string, scope: string, kindPart: string, window: string, windowKey: string) =>
    `${tenantTag(t)}:quota:${scope}:${kindPart}:${window}:${windowKey}`,
  /** prefix of every quota counter key of a tenant (the scripts append the rest) */
  quotaPrefix: (t: string) => `${tenantTag(t)}:quota:`,
  /** zset: every quota counter key of a tenant, score = the key's expiry (ms); members
   *  whose score is in the past name expired keys and may be removed */
  quotaIndex: (t: string) => `${tenantTag(t)}:quota-index`,
  /** stream: event outbox of a tenant, appended inside the same script as the change;
   *  consumer group `relay` (src/events/relay.ts); event_id = evt_<ms>_<seq>_<tenant> */
  outbox: (t: string) => `${tenantTag(t)}:outbox`,
  /** stream: unsigned sources of this tenant's evidence envelopes, appended by the ledger
   *  scripts in the same atomic step as the operation (evidence_common.lua); consumer group
   *  `evidence` (src/evidence/worker.ts signs, stores, acknowledges and deletes them) */
  evidenceSource: (t: string) => `${tenantTag(t)}:evidence-src`,
  /** string: lease of the relay process working on this tenant's outbox (token, PX) */
  outboxRelayLock: (t: string) => `${tenantTag(t)}:outbox:relay-lock`,
  /** hash: derived-signal state of a tenant (src/events/signals/): hysteresis of the rate
   *  spikes; on `__system__` also the auth/latency signals and the store-outage dedupe */
  signals: (t: string) => `${tenantTag(t)}:signals`,
  /** prefix of the signal time buckets `<prefix><metric>:<bucket start ms>` (HyperLogLog of
   *  outbox entry ids, or counter hashes on `__system__`), built from it inside the signal
   *  scripts (same slot), TTL = window */
  signalBucketPrefix: (t: string) => `${tenantTag(t)}:sig:`,
  /** hash: burn-rate state per budget of a tenant, field "<scope_path>|<unit>" */
  signalsBurn: (t: string) => `${tenantTag(t)}:sig-burn`,
  /** hash: one recorded createEvent (post-hoc accounting event), TTL =
   *  CYCLES_CREATE_EVENT_RETENTION_DAYS (none while the export job holds it, DX3) */
  eventRecord: (t: string, id: string) => `${tenantTag(t)}:event:${id}`,
  /** zset: createEvent record ids of a tenant by created_at_ms (written by event.lua with
   *  the record; trimmed by the retention worker, src/export/retention.ts) */
  eventRecordIndex: (t: string) => `${tenantTag(t)}:event-by-created`,
  /** hash: policies of a tenant, field = policy_id, value = JSON */
  policies: (t: string) => `${tenantTag(t)}:policies`,
  /** string: counter INCRed by every write of keys.policies(t) (policy_write.lua); the
   *  runtime caches parsed policies per tenant under this version (reserve.lua checks it) */
  policyVersion: (t: string) => `${tenantTag(t)}:policy-version`,
  /** zset: key_ids of a tenant's API keys, score created_at_ms (listing, close cascade) */
  apiKeyIndex: (t: string) => `${tenantTag(t)}:apikeys`,
  /** hash: state of a tenant-close cascade (origin request/trace ids, reserved snapshot
   *  per budget taken atomically with the CLOSED flip, completed_at_ms) */
  closeCascade: (t: string) => `${tenantTag(t)}:close-cascade`,

  // --- cross-tenant keys (not in a tenant slot) ---
  /** hash: API key record, tagged by the SHA-256 of its secret (lookup in one read) */
  apiKeyBySecret: (secretSha256: string) => `{k:${secretSha256}}:apikey`,
  /** string: key_id -> secret sha256 (admin operations address keys by id) */
  apiKeyId: (keyId: string) => `cycles:apikey-id:${keyId}`,
  /** set: every tenant id that has a tenant record or ledger data (the sweeper's tenant list) */
  tenants: () => 'cycles:tenants',

  /** hash: policy name -> policy_id of a tenant (name uniqueness, checked in the same script) */
  policyNames: (t: string) => `${tenantTag(t)}:policy-names`,

  /** string: policy_id -> owning tenant (updatePolicy addresses policies by id alone) */
  policyOwner: (policyId: string) => `cycles:policy-owner:${policyId}`,

  // --- audit log (cross-tenant; written by one pipelined write per request) ---
  /** string: one AuditLogEntry as JSON, with the retention tier's TTL */
  auditEntry: (logId: string) => `cycles:audit:entry:${logId}`,
  /** zset: every log_id, score = timestamp ms */
  auditAll: () => 'cycles:audit:idx:all',
  /** zset: log_ids of one audit tenant_id — only ids of the spec's tenant-id grammar and
   *  the __admin__ / __unauth__ sentinels (src/admin/audit.ts tenantIndexKey); expires
   *  with the retention */
  auditByTenant: (t: string) => `cycles:audit:idx:tenant:${t}`,
  /** zset: log_ids of every other audit tenant_id (junk, over-long, [REDACTED]) — one key,
   *  so request values cannot create keys; readers filter by the stored tenant_id */
  auditTenantOther: () => 'cycles:audit:idx:tenant-other',
  /** zset: log_ids written by one API key (expires with the retention) */
  auditByKey: (keyId: string) => `cycles:audit:idx:key:${keyId}`,
  /** zset: log_ids of one trace id (expires with the retention) */
  auditByTrace: (traceId: string) => `cycles:audit:idx:trace:${traceId}`,
  /** string: bulk-action idempotency record (endpoint = tenants | budgets | webhooks) */
  bulkIdem: (endpoint: string, key: string) => `cycles:bulk-idem:${endpoint}:${key}`,
  /** zset: tenant ids that have a tenant record (admin createTenant), score created_at_ms */
  tenantIndex: () => 'cycles:tenant-index',
  /** set: tenants whose close cascade has not completed (resumed by re-close / the worker) */
  closePending: () => 'cycles:tenant-close:pending',

  // --- events (src/events/relay.ts maintains these; trimmed with CYCLES_EVENT_RETENTION_DAYS) ---
  /** zset: every relayed event_id, score = event ms (listEvents without a tenant) */
  eventIndex: () => 'cycles:events:idx',
  /** zset: event_ids of one correlation_id / trace_id / request_id value (score ms, TTL =
   *  retention); `value` is the raw id, or `h:<sha256>` for long ones (src/events/relay.ts) */
  eventIndexBy: (kind: 'corr' | 'trace' | 'req', value: string) => `cycles:events:idx:${kind}:${value}`,
  /** string: lease of the process running the retention trim pass */
  eventTrimLock: () => 'cycles:events:trim-lock',

  // --- hot retention and cold export (src/export/, docs/decisions.md DX1–DX6) ---
  /** hash: export class -> epoch ms of the first UTC day the export job has NOT yet exported
   *  and released; while CYCLES_EXPORT_DIR is set nothing at or after it is expired */
  exportReleased: () => 'cycles:export:released',
  /** string: lease of the process running the export job (token, PX) */
  exportLock: () => 'cycles:export:lock',
  /** string: lease of the process running the reservation / createEvent index trim */
  retentionTrimLock: () => 'cycles:retention:trim-lock',

  // --- webhook subscriptions (src/events/subscriptions.ts, docs/events.md) ---
  /** hash: one subscription (tenant `__system__` for system-wide ones); id names its tenant */
  webhook: (t: string, id: string) => `${tenantTag(t)}:webhook:${id}`,
  /** zset: subscription ids of a tenant, score created_at_ms */
  webhookIndex: (t: string) => `${tenantTag(t)}:webhooks`,
  /** zset: every subscription id (cross-tenant registry: admin lists, dispatcher), score created_at_ms */
  webhooksAll: () => 'cycles:webhooks',
  /** string: counter INCRed by every subscription change (the dispatcher reloads on a move) */
  webhooksVersion: () => 'cycles:webhooks:version',
  /** string: WebhookSecurityConfig JSON (absent = the spec defaults) */
  webhookSecurityConfig: () => 'cycles:config:webhook-security',

  // --- webhook deliveries (src/events/dispatch.ts, deliveries.ts; docs/events.md) ---
  // Every delivery key lives in the slot of the subscription's owner `{t:<owner>}` (the
  // record and outbox whd_finish.lua writes are there too), so each delivery script runs on
  // one slot, on a single Redis and on a Redis Cluster alike (docs/decisions.md DK13).
  /** hash: one WebhookDelivery row (TTL = delivery retention); ids start with `dlv_` */
  webhookDelivery: (owner: string, id: string) => `${tenantTag(owner)}:whd:${id}`,
  /** zset: delivery ids of one subscription, score = created ms (delivery lists) */
  webhookDeliveriesBySub: (owner: string, subId: string) => `${tenantTag(owner)}:whd:sub:${subId}`,
  /** zset: queued deliveries of one subscription, score = due ms, member `<16-digit seq>|<delivery_id>` */
  webhookDue: (owner: string, subId: string) => `${tenantTag(owner)}:whd:due:${subId}`,
  /** zset: the owner's subscriptions with queued deliveries, score = when next eligible (head due ms or lease end) */
  webhookDueSubs: (owner: string) => `${tenantTag(owner)}:whd:subs`,
  /** string: a dispatcher's lease on one subscription's queue (worker token, PX lease) */
  webhookLease: (owner: string, subId: string) => `${tenantTag(owner)}:whd:lease:${subId}`,
  /** string: counter that orders the owner's queued deliveries (FIFO among equal due times) */
  webhookSeq: (owner: string) => `${tenantTag(owner)}:whd:seq`,
  /** string: replay in progress on a subscription (replay_id; PX safety bound) */
  webhookReplayLock: (owner: string, subId: string) => `${tenantTag(owner)}:whd:replay:${subId}`,
  /** string: deliveries of one replay not yet SUCCESS/FAILED (the lock ends at 0) */
  webhookReplayLeft: (owner: string, replayId: string) => `${tenantTag(owner)}:whd:replay-left:${replayId}`,
  /** zset: owners that may have due work, score = a lower bound of when (the dispatcher's
   *  index across slots; written outside the delivery scripts, repaired by a sweep: DK14) */
  webhookDueOwners: () => '{cycles:whd}:owners',
  /** hash: owner → generation, INCRed by every write that may make an owner due sooner (DK14) */
  webhookDueOwnersGen: () => '{cycles:whd}:owners-gen',
  /** the pre-DK13 layout (one key per delivery outside any tenant slot), read only by the
   *  upgrade that moves it (src/events/whdMigrate.ts) */
  legacyWebhookDelivery: (id: string) => `cycles:whd:${id}`,
  legacyWebhookDeliveriesBySub: (subId: string) => `cycles:whd:sub:${subId}`,
  legacyWebhookDue: (subId: string) => `cycles:whd:due:${subId}`,
  legacyWebhookDueSubs: () => 'cycles:whd:subs',
  legacyWebhookSeq: () => 'cycles:whd:seq',
  legacyWebhookReplayLock: (subId: string) => `cycles:whd:replay:${subId}`,
  legacyWebhookReplayLeft: (replayId: string) => `cycles:whd:replay-left:${replayId}`,
  /** string: '2' once the legacy delivery keys were moved (the upgrade runs until then) */
  webhookLayout: () => 'cycles:whd:layout',
  /** string: lease of the process moving the legacy delivery keys */
  webhookMigrateLock: () => 'cycles:whd:migrate-lock',
};
