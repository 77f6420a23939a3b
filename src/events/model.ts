// The Event model: ids, the one renderer from an outbox stream entry to the spec's `Event`,
// and the event-type tables (category visibility, EventData variant per type).
//
// Storage is the outbox (docs/events.md): one stream entry per event in
// keys.outbox(tenant), fields `type`, `data` (JSON, int64 as strings), `ts_ms`, `trace_id`,
// `request_id`, `actor` (JSON), plus `correlation_id`, `scope` and `source` when set.
// event_id = evt_<ms>_<seq>_<tenant> where <ms>-<seq> is the stream entry id: globally
// unique, time-sorted within a tenant, and it locates the entry without any other key.
import { loadDocument } from '../generated/documents';
import type { components } from '../generated/admin.types';

export type Event = components['schemas']['Event'];

/** Tenant id of system-level events (Event.tenant_id description). */
export const SYSTEM_TENANT = '__system__';

/** Categories a tenant key may read (listTenantEvents) or subscribe to (INVARIANT 2). */
export const TENANT_VISIBLE_CATEGORIES: ReadonlySet<string> = new Set(['budget', 'reservation', 'tenant']);

/** Default Event.source when the entry does not name one. */
export const DEFAULT_SOURCE = 'cycles-server';

const STREAM_ID_RE = /^(\d{1,20})-(\d{1,20})$/;
const EVENT_ID_RE = /^evt_(\d{1,20})_(\d{1,20})_(.+)$/s;

export function eventIdOf(tenant: string, streamId: string): string {
  const m = STREAM_ID_RE.exec(streamId);
  if (!m) throw new Error(`not a stream entry id: ${streamId}`);
  return `evt_${m[1]}_${m[2]}_${tenant}`;
}

/** Inverse of eventIdOf; undefined for anything that is not one of our ids. */
export function parseEventId(id: string): { tenant: string; streamId: string; ms: bigint; seq: bigint } | undefined {
  if (typeof id !== 'string' || id.length > 512) return undefined;
  const m = EVENT_ID_RE.exec(id);
  if (!m) return undefined;
  // canonical decimal only (no leading zeros), so one entry has exactly one id
  if ((m[1].length > 1 && m[1][0] === '0') || (m[2].length > 1 && m[2][0] === '0')) return undefined;
  const ms = BigInt(m[1]);
  const seq = BigInt(m[2]);
  if (ms >= 2n ** 64n || seq >= 2n ** 64n) return undefined;
  return { tenant: m[3], streamId: `${m[1]}-${m[2]}`, ms, seq };
}

/** Prefixes whose events belong to another EventCategory: the v0.1.26 quota.* types have
 *  no `quota` category in the EventCategory enum; their rules are policy rules
 *  (docs/decisions.md DG7). */
const CATEGORY_OF_PREFIX: Readonly<Record<string, string>> = { quota: 'policy' };

/** Category of an event type: its prefix before the first dot (mapped by CATEGORY_OF_PREFIX). */
export function categoryOf(eventType: string): string {
  const dot = eventType.indexOf('.');
  const prefix = dot < 0 ? eventType : eventType.slice(0, dot);
  return CATEGORY_OF_PREFIX[prefix] ?? prefix;
}

/**
 * EventData variant of each event type (admin spec: each EventData* schema's
 * "Payload for ..." description; admin-digest Appendix R2). test/events-model.test.ts
 * checks this table against the spec text, so a type added upstream is noticed.
 */
export const EVENT_DATA_SCHEMA: Readonly<Record<string, string>> = Object.freeze({
  ...Object.fromEntries(['budget.created', 'budget.updated', 'budget.funded', 'budget.debited', 'budget.reset',
    'budget.reset_spent', 'budget.debt_repaid', 'budget.frozen', 'budget.unfrozen', 'budget.closed']
    .map((t) => [t, 'EventDataBudgetLifecycle'])),
  'budget.threshold_crossed': 'EventDataBudgetThreshold',
  'budget.exhausted': 'EventDataBudgetThreshold',
  'budget.over_limit_entered': 'EventDataBudgetOverLimit',
  'budget.over_limit_exited': 'EventDataBudgetOverLimit',
  'budget.debt_incurred': 'EventDataBudgetDebtIncurred',
  'budget.burn_rate_anomaly': 'EventDataBurnRateAnomaly',
  'reservation.denied': 'EventDataReservationDenied',
  'reservation.expired': 'EventDataReservationExpired',
  'reservation.denial_rate_spike': 'EventDataRateSpike',
  'reservation.expiry_rate_spike': 'EventDataRateSpike',
  'api_key.auth_failure_rate_spike': 'EventDataRateSpike',
  'reservation.commit_overage': 'EventDataCommitOverage',
  ...Object.fromEntries(['tenant.created', 'tenant.updated', 'tenant.suspended', 'tenant.reactivated',
    'tenant.closed', 'tenant.settings_changed'].map((t) => [t, 'EventDataTenantLifecycle'])),
  ...Object.fromEntries(['webhook.created', 'webhook.updated', 'webhook.paused', 'webhook.resumed',
    'webhook.disabled', 'webhook.deleted'].map((t) => [t, 'EventDataWebhookLifecycle'])),
  ...Object.fromEntries(['api_key.created', 'api_key.revoked', 'api_key.expired', 'api_key.permissions_changed',
    'api_key.auth_failed'].map((t) => [t, 'EventDataApiKey'])),
  ...Object.fromEntries(['policy.created', 'policy.updated', 'policy.deleted'].map((t) => [t, 'EventDataPolicy'])),
  ...Object.fromEntries(['system.store_connection_lost', 'system.store_connection_restored', 'system.high_latency',
    'system.webhook_delivery_failed', 'system.webhook_test'].map((t) => [t, 'EventDataSystem'])),
  ...Object.fromEntries(['budget.closed_via_tenant_cascade', 'reservation.released_via_tenant_cascade',
    'webhook.disabled_via_tenant_cascade', 'api_key.revoked_via_tenant_cascade'].map((t) => [t, 'EventDataTenantCascade'])),
  // v0.1.26 extension types (cycles-governance-extensions / protocol-extensions)
  'reservation.observed_denied': 'EventDataObservedDenied',
  'reservation.observed_allowed': 'EventDataObservedAllowed',
  'quota.threshold_approaching': 'EventDataQuotaThresholdApproaching',
  'quota.counter_reset': 'EventDataQuotaCounterReset',
});

// ---- rendering ----------------------------------------------------------------------

type Schema = Record<string, any>;
let schemas: Record<string, Schema> | undefined;
function componentSchemas(): Record<string, Schema> {
  if (!schemas) schemas = loadDocument('admin').components.schemas as Record<string, Schema>;
  return schemas;
}

function resolve(s: Schema | undefined): Schema | undefined {
  let cur = s;
  for (let i = 0; cur && typeof cur.$ref === 'string' && i < 8; i++) {
    cur = componentSchemas()[cur.$ref.replace('#/components/schemas/', '')];
  }
  if (cur && Array.isArray(cur.allOf) && cur.allOf.length === 1) return resolve(cur.allOf[0]);
  return cur;
}

const INT_RE = /^-?\d{1,20}$/;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** int64 as stored (decimal string) → number when exact, else BigInt (lossless JSON). */
function toInt(v: string): number | bigint {
  const b = BigInt(v);
  return b <= SAFE_MAX && b >= -SAFE_MAX ? Number(b) : b;
}

function msToIso(v: unknown): string | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? new Date(n).toISOString() : undefined;
}

/**
 * Brings a stored payload to its EventData schema: the Lua scripts write int64 amounts
 * as decimal strings (cjson has no exact int64) and times as `<name>_ms`; the wire form
 * has integers and `<name>` date-times. Driven by the generated schema, so every type
 * (including ones other modules add) is rendered the same way. Unknown members are kept
 * (the EventData schemas are open).
 */
function normalize(value: Record<string, unknown>, schema: Schema | undefined): Record<string, unknown> {
  const s = resolve(schema);
  const props: Record<string, Schema> = s?.properties ?? {};
  const out: Record<string, unknown> = { ...value };
  for (const [name, raw] of Object.entries(props)) {
    const p = resolve(raw) ?? {};
    const v = out[name];
    if (v === undefined) {
      if (p.format === 'date-time' && out[`${name}_ms`] !== undefined) {
        const iso = msToIso(out[`${name}_ms`]);
        if (iso) out[name] = iso;
        delete out[`${name}_ms`];
      }
      continue;
    }
    if (p.type === 'integer' && typeof v === 'string' && INT_RE.test(v)) out[name] = toInt(v);
    else if (p.type === 'number' && typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) out[name] = Number(v);
    else if (p.type === 'boolean' && (v === '1' || v === '0' || v === 'true' || v === 'false')) out[name] = v === '1' || v === 'true';
    else if (p.type === 'object' && p.properties && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      out[name] = normalize(v as Record<string, unknown>, p);
    } else if (p.type === 'array' && v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) {
      out[name] = []; // cjson encodes an empty Lua table as {}
    } else if (p.format === 'date-time' && (typeof v === 'number' || (typeof v === 'string' && /^\d{1,16}$/.test(v)))) {
      const iso = msToIso(v);
      if (iso) out[name] = iso;
    }
  }
  return out;
}

/** Renders the EventData payload of one event type (exported for appendEvent callers'
 *  tests and the replay/test-probe code paths that build events without a stream). */
export function renderEventData(eventType: string, data: Record<string, unknown>): Record<string, unknown> {
  const variant = EVENT_DATA_SCHEMA[eventType];
  const out = normalize(data, variant ? componentSchemas()[variant] : undefined);
  // DenyDetail (reservation.denied, reservation.observed_denied): budget_remaining is an
  // int64 the scripts write as a string; reservation.denied types deny_detail as an open
  // object, so the schema walk above does not reach it.
  const dd = out.deny_detail;
  if (dd && typeof dd === 'object' && !Array.isArray(dd)) {
    const br = (dd as Record<string, unknown>).budget_remaining;
    if (typeof br === 'string' && INT_RE.test(br)) out.deny_detail = { ...(dd as object), budget_remaining: toInt(br) };
  }
  if (eventType === 'reservation.expired' && out.ttl_ms === undefined) {
    // ttl of the reservation: the scripts record created_at_ms and expires_at_ms
    const c = data.created_at_ms;
    const e = data.expires_at_ms;
    if (typeof c === 'string' && typeof e === 'string' && INT_RE.test(c) && INT_RE.test(e)) {
      const ttl = Number(BigInt(e) - BigInt(c));
      if (Number.isSafeInteger(ttl) && ttl >= 0) out.ttl_ms = ttl;
    }
  }
  return out;
}

const ACTOR_TYPES = new Set(['admin', 'api_key', 'admin_on_behalf_of', 'system', 'scheduler']);

function renderActor(raw: string | undefined): Event['actor'] | undefined {
  if (!raw) return undefined;
  try {
    const a = JSON.parse(raw) as Record<string, unknown>;
    if (!a || typeof a !== 'object' || !ACTOR_TYPES.has(String(a.type))) return undefined;
    const out: NonNullable<Event['actor']> = { type: a.type as NonNullable<Event['actor']>['type'] };
    if (typeof a.key_id === 'string' && a.key_id) out.key_id = a.key_id;
    if (typeof a.source_ip === 'string' && a.source_ip) out.source_ip = a.source_ip;
    return out;
  } catch {
    return undefined;
  }
}

/** Flat XRANGE field list → record. */
export function fieldsOf(flat: string[]): Record<string, string> {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]] = flat[i + 1];
  return f;
}

const TRACE_RE = /^[0-9a-f]{32}$/;

/**
 * The only function that turns an outbox entry into the spec's `Event`. Fields that are
 * empty or malformed are omitted rather than rendered invalid (Event is a closed schema).
 * `scope` falls back to data.scope: budget and reservation payloads carry the scope they
 * act on even when the writing script did not set the entry's scope field.
 */
export function renderEvent(tenant: string, streamId: string, fields: Record<string, string>): Event {
  const type = fields.type ?? '';
  // Event.timestamp is the stream entry's time (Redis clock, DESIGN §4 "one clock"): the
  // same ms that orders, pages and time-filters events; ts_ms only when the id has none.
  const m = STREAM_ID_RE.exec(streamId);
  const ms = m ? Number(m[1]) : fields.ts_ms && /^\d{1,16}$/.test(fields.ts_ms) ? Number(fields.ts_ms) : 0;
  let data: Record<string, unknown> | undefined;
  if (fields.data) {
    try {
      const d = JSON.parse(fields.data) as unknown;
      if (d && typeof d === 'object' && !Array.isArray(d)) data = renderEventData(type, d as Record<string, unknown>);
    } catch { /* unparsable payload: omitted */ }
  }
  const ev: Event = {
    event_id: eventIdOf(tenant, streamId),
    event_type: type as Event['event_type'],
    category: categoryOf(type) as Event['category'],
    timestamp: new Date(ms).toISOString(),
    tenant_id: tenant,
    source: fields.source || DEFAULT_SOURCE,
  };
  const scope = fields.scope || (typeof data?.scope === 'string' ? data.scope : undefined);
  if (scope) ev.scope = scope;
  const actor = renderActor(fields.actor);
  if (actor) ev.actor = actor;
  if (data) ev.data = data;
  if (fields.correlation_id) ev.correlation_id = fields.correlation_id;
  if (fields.request_id) ev.request_id = fields.request_id;
  if (fields.trace_id && TRACE_RE.test(fields.trace_id)) ev.trace_id = fields.trace_id;
  if (fields.metadata) {
    try {
      const md = JSON.parse(fields.metadata) as unknown;
      if (md && typeof md === 'object' && !Array.isArray(md)) ev.metadata = md as Record<string, unknown>;
    } catch { /* omitted */ }
  }
  return ev;
}

/** Sort position of an event: (ms, seq, tenant). Stream order within a tenant. */
export interface EventPos { ms: bigint; seq: bigint; tenant: string }

export function posOf(eventId: string): EventPos | undefined {
  const p = parseEventId(eventId);
  return p ? { ms: p.ms, seq: p.seq, tenant: p.tenant } : undefined;
}

/** Ascending order of positions; desc is its exact reverse (newest first). */
export function comparePos(a: EventPos, b: EventPos): number {
  if (a.ms !== b.ms) return a.ms < b.ms ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : 0;
}
