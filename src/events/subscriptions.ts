// Webhook subscriptions: the stored record, reads (get, lists, overview counts), the view the
// delivery worker works from, matching, and the tenant-close cascade step. Writes live in
// src/events/webhookWrites.ts (one Lua script per change: src/store/lua/webhook_*.lua).
//
// Record (docs/events.md): hash keys.webhook(tenant, id), tenant `__system__` for system-wide
// subscriptions. One field per WebhookSubscription property — strings as is, arrays and
// objects as JSON text, integers as decimal text, absent = field missing — except the times,
// kept as epoch ms in `<name>_ms` (created_at_ms, updated_at_ms, last_triggered_at_ms,
// last_success_at_ms, last_failure_at_ms). `headers` holds the header NAMES with masked
// values; the real values are in `headers_enc` and the signing secret in `secret_enc`
// (src/events/secretBox.ts, AAD `<id>:headers` / `<id>:signing_secret`). `rev` counts the
// configuration changes (optimistic concurrency of PATCH). event_categories, retry_policy
// (defaults filled), disable_after_failures and consecutive_failures are always present.
// Indexes: keys.webhookIndex(tenant) and the registry keys.webhooksAll(), both by created_at.
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { keys } from '../store/keys';
import { isCluster } from '../store/cluster';
import { parseJsonBody } from '../json';
import type { Principal } from '../auth/authenticate';
import type { components } from '../generated/admin.types';
import { hgetallMany, iso, LIST_SCAN_MAX, searchTerm, runAdminScript } from '../admin/common';
import type { CascadeStepContext } from '../admin/cascade';
import { paginate, parseLimit, type SortDir } from '../list/cursor';
import { categoryOf, SYSTEM_TENANT, TENANT_VISIBLE_CATEGORIES, type Event } from './model';
import { defaultSecretBox, secretBoxFor, type SecretBox } from './secretBox';
import type { Config } from '../config';
import { registerWorker } from '../workers';

export type WebhookSubscription = components['schemas']['WebhookSubscription'];
export type WebhookStatus = 'ACTIVE' | 'PAUSED' | 'DISABLED';
export const HEADER_MASK = '********';
export interface RetryPolicy { max_retries: number; initial_delay_ms: number; backoff_multiplier: number; max_delay_ms: number }
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({ max_retries: 5, initial_delay_ms: 1000, backoff_multiplier: 2.0, max_delay_ms: 60000 });
export const DEFAULT_DISABLE_AFTER_FAILURES = 10;

/** WebhookSubscription + decrypted secrets: what the delivery worker signs and sends with. */
export interface DispatchSubscription {
  subscription_id: string; tenant_id: string; url: string; status: WebhookStatus;
  event_types: string[]; event_categories: string[]; scope_filter?: string;
  retry_policy: RetryPolicy;
  disable_after_failures: number; consecutive_failures: number;
  signing_secret: string; headers: Record<string, string>;
  /** set when the stored secrets do not open (wrong CYCLES_WEBHOOK_SECRET_KEY, tampering):
   *  signing_secret is '' and headers {}; the caller must fail the delivery with this
   *  message, never send it unsigned */
  secret_error?: string;
}

// ------------------------------------------------------------------ ids and records
const ID_RE = /^whsub_(.+)_([0-9a-f]{24})$/s;

/** The tenant a subscription id names (`whsub_<tenant>_<24 hex>`), or undefined. */
export function ownerOf(id: string): string | undefined {
  if (typeof id !== 'string' || id.length > 300) return undefined;
  const m = ID_RE.exec(id);
  return m ? m[1] : undefined;
}

export async function readRecord(redis: Redis, id: string): Promise<Record<string, string> | undefined> {
  const owner = ownerOf(id);
  if (owner === undefined) return undefined;
  const h = await redis.hgetall(keys.webhook(owner, id));
  return h && h.subscription_id === id && h.tenant_id === owner ? h : undefined;
}

export const notFound = (id: string) => new ApiError('WEBHOOK_NOT_FOUND', `Webhook subscription ${String(id).slice(0, 300)} not found`);

/**
 * The record of `id` as `p` may see it: an API key sees only its own tenant's
 * subscriptions (another tenant's id is 404, exactly like an unknown one); the admin key
 * sees every subscription.
 */
export async function visibleRecord(redis: Redis, p: Principal, id: string): Promise<Record<string, string>> {
  if (p.kind === 'tenant' && ownerOf(id) !== p.tenantId) throw notFound(id);
  const h = await readRecord(redis, id);
  if (!h) throw notFound(id);
  return h;
}

/** Lossless JSON of a stored field (metadata may hold int64 beyond 2^53). */
export function jsonField<T = unknown>(raw: string | undefined, fallback: T): T {
  if (raw === undefined || raw === '') return fallback;
  try { return parseJsonBody(raw).value as T; } catch { return fallback; }
}

const int = (v: string | undefined, d: number) => (v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : d);

/** The API view of a record: no secret, header values masked. */
export function renderSubscription(h: Record<string, string>): WebhookSubscription {
  const out: Record<string, unknown> = {
    subscription_id: h.subscription_id,
    tenant_id: h.tenant_id,
  };
  if (h.name !== undefined) out.name = h.name;
  if (h.description !== undefined) out.description = h.description;
  out.url = h.url;
  out.event_types = jsonField<string[]>(h.event_types, []);
  out.event_categories = jsonField<string[]>(h.event_categories, []);
  if (h.scope_filter) out.scope_filter = h.scope_filter;
  if (h.thresholds) out.thresholds = jsonField(h.thresholds, undefined);
  if (h.headers) {
    const names = Object.keys(jsonField<Record<string, string>>(h.headers, {}));
    if (names.length > 0) out.headers = Object.fromEntries(names.map((n) => [n, HEADER_MASK]));
  }
  out.status = h.status;
  out.retry_policy = { ...DEFAULT_RETRY_POLICY, ...jsonField<object>(h.retry_policy, {}) };
  out.disable_after_failures = int(h.disable_after_failures, DEFAULT_DISABLE_AFTER_FAILURES);
  out.consecutive_failures = int(h.consecutive_failures, 0);
  out.created_at = iso(h.created_at_ms) ?? new Date(0).toISOString();
  for (const t of ['updated_at', 'last_triggered_at', 'last_success_at', 'last_failure_at']) {
    const v = iso(h[`${t}_ms`]);
    if (v) out[t] = v;
  }
  if (h.metadata) out.metadata = jsonField(h.metadata, undefined);
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as WebhookSubscription;
}

// ------------------------------------------------------------------ the delivery worker's view
function dispatchView(h: Record<string, string>, box: SecretBox): DispatchSubscription {
  const id = h.subscription_id;
  const v = renderSubscription(h);
  const out: DispatchSubscription = {
    subscription_id: id, tenant_id: h.tenant_id, url: h.url, status: h.status as WebhookStatus,
    event_types: v.event_types as string[], event_categories: (v.event_categories ?? []) as string[],
    retry_policy: v.retry_policy as DispatchSubscription['retry_policy'],
    disable_after_failures: v.disable_after_failures!, consecutive_failures: v.consecutive_failures!,
    signing_secret: '', headers: {},
  };
  if (h.scope_filter) out.scope_filter = h.scope_filter;
  try {
    out.signing_secret = box.open(h.secret_enc, `${id}:signing_secret`);
    out.headers = h.headers_enc ? JSON.parse(box.open(h.headers_enc, `${id}:headers`)) as Record<string, string> : {};
  } catch (e) {
    out.signing_secret = '';
    out.headers = {};
    out.secret_error = `stored signing secret of ${id} cannot be decrypted: ${(e as Error).message}`;
  }
  return out;
}

async function boxOf(config?: Pick<Config, 'webhookSecretKey' | 'dataDir' | 'production'>): Promise<SecretBox> {
  return config ? secretBoxFor(config) : defaultSecretBox();
}

/** Every ACTIVE subscription (all tenants, `__system__` included), decrypted. Pass the
 *  process config when you have it; without, the last configured key is used. */
export async function loadDispatchSubscriptions(
  redis: Redis, config?: Pick<Config, 'webhookSecretKey' | 'dataDir' | 'production'>,
): Promise<DispatchSubscription[]> {
  const box = await boxOf(config);
  const ids = await redis.zrange(keys.webhooksAll(), 0, LIST_SCAN_MAX - 1);
  const rows = await recordsOf(redis, ids);
  return rows.filter((h) => h.status === 'ACTIVE').map((h) => dispatchView(h, box));
}

/** One subscription in any status, decrypted; undefined when it does not exist. */
export async function loadDispatchSubscription(
  redis: Redis, id: string, config?: Pick<Config, 'webhookSecretKey' | 'dataDir' | 'production'>,
): Promise<DispatchSubscription | undefined> {
  const h = await readRecord(redis, id);
  return h ? dispatchView(h, await boxOf(config)) : undefined;
}

export async function webhooksVersion(redis: Redis): Promise<number> {
  return Number((await redis.get(keys.webhooksVersion())) ?? 0);
}

async function recordsOf(redis: Redis, ids: string[]): Promise<Record<string, string>[]> {
  const withOwner = ids.map((id) => ({ id, owner: ownerOf(id) })).filter((x) => x.owner !== undefined);
  const rows = await hgetallMany(redis, withOwner.map((x) => keys.webhook(x.owner!, x.id)));
  return rows.filter((h) => h.subscription_id && ownerOf(h.subscription_id) === h.tenant_id);
}

// ------------------------------------------------------------------ matching
/** Whether `scope` is selected by a subscription scope_filter: exact, or with a trailing
 *  `*` every strictly deeper scope (admin-digest A138). Case-insensitive. */
export function scopeMatches(filter: string, scope: string): boolean {
  const f = filter.toLowerCase();
  const s = scope.toLowerCase();
  if (f.endsWith('*')) {
    const prefix = f.slice(0, -1);
    return s.length > prefix.length && s.startsWith(prefix);
  }
  return s === f;
}

/**
 * Whether `event` goes to `sub` (fan-out and replay). Tenant: a `__system__` subscription
 * receives every tenant's events, any other only its own tenant's. Fail-closed guard: a
 * concrete tenant's subscription never receives an event whose type or category is not
 * tenant-visible, whatever its stored selectors say. Selectors: type listed OR category
 * listed. scope_filter: when set, events without a scope never match.
 */
export function matchSubscription(
  sub: Pick<DispatchSubscription, 'tenant_id' | 'event_types' | 'event_categories' | 'scope_filter'>,
  event: Pick<Event, 'tenant_id' | 'event_type' | 'category' | 'scope'>,
): boolean {
  if (sub.tenant_id !== SYSTEM_TENANT) {
    if (event.tenant_id !== sub.tenant_id) return false;
    if (!TENANT_VISIBLE_CATEGORIES.has(String(event.category)) || !TENANT_VISIBLE_CATEGORIES.has(categoryOf(String(event.event_type)))) {
      return false;
    }
  }
  const selected = (sub.event_types ?? []).includes(event.event_type) || (sub.event_categories ?? []).includes(String(event.category));
  if (!selected) return false;
  if (sub.scope_filter) return typeof event.scope === 'string' && event.scope !== '' && scopeMatches(sub.scope_filter, event.scope);
  return true;
}

// ------------------------------------------------------------------ lists
const SORT_KEYS: Record<string, (h: Record<string, string>) => string | bigint> = {
  url: (h) => h.url ?? '',
  tenant_id: (h) => h.tenant_id,
  status: (h) => h.status ?? '',
  consecutive_failures: (h) => BigInt(int(h.consecutive_failures, 0)),
};

/** listWebhookSubscriptions / the bulk filter: tenant_id, status, event_type (listed in
 *  event_types), search (subscription_id, url). */
export interface WebhookFilter { tenant_id?: string; status?: string; event_type?: string; search?: string }

export function filterPredicate(f: WebhookFilter): (h: Record<string, string>) => boolean {
  const search = searchTerm(f.search);
  return (h) => (!f.status || h.status === f.status)
    && (!f.tenant_id || h.tenant_id === f.tenant_id)
    && (!f.event_type || jsonField<string[]>(h.event_types, []).includes(f.event_type))
    && (!search || h.subscription_id.toLowerCase().includes(search) || (h.url ?? '').toLowerCase().includes(search));
}

/** The records a filter selects (a tenant filter reads only that tenant's index). */
export async function filteredRecords(redis: Redis, f: WebhookFilter): Promise<Record<string, string>[]> {
  const ids = f.tenant_id
    ? await redis.zrange(keys.webhookIndex(f.tenant_id), 0, LIST_SCAN_MAX - 1)
    : await redis.zrange(keys.webhooksAll(), 0, LIST_SCAN_MAX - 1);
  return (await recordsOf(redis, ids)).filter(filterPredicate(f));
}

export async function listSubscriptions(redis: Redis, q: Record<string, any>) {
  const f: WebhookFilter = { tenant_id: q.tenant_id || undefined, status: q.status, event_type: q.event_type, search: q.search };
  const rows = await filteredRecords(redis, f);
  const sortBy = typeof q.sort_by === 'string' && q.sort_by !== '' ? q.sort_by : 'consecutive_failures';
  const value = SORT_KEYS[sortBy];
  if (!value) throw new ApiError('INVALID_REQUEST', `sort_by must be one of ${Object.keys(SORT_KEYS).join(', ')}`);
  const dir: SortDir = q.sort_dir === 'asc' ? 'asc' : 'desc';
  const page = paginate(rows, {
    sort: { name: sortBy, value }, dir, id: (h) => h.subscription_id, limit: Math.min(parseLimit(q.limit), 100),
    filters: { tenant_id: f.tenant_id, status: f.status, event_type: f.event_type, search: searchTerm(f.search) },
    cursor: q.cursor,
  });
  return listBody(page);
}

/** listTenantWebhooks for one tenant: newest first. */
export async function listTenantSubscriptions(redis: Redis, tenant: string, q: Record<string, any>) {
  const ids = await redis.zrange(keys.webhookIndex(tenant), 0, LIST_SCAN_MAX - 1);
  const rows = (await recordsOf(redis, ids)).filter((h) => !q.status || h.status === q.status);
  const page = paginate(rows, {
    sort: { name: 'created_at', value: (h) => BigInt(int(h.created_at_ms, 0)) }, dir: 'desc',
    id: (h) => h.subscription_id, limit: Math.min(parseLimit(q.limit), 100),
    filters: { tenant, status: q.status }, cursor: q.cursor,
  });
  return listBody(page);
}

function listBody(page: { rows: Record<string, string>[]; hasMore: boolean; nextCursor?: string }) {
  return {
    subscriptions: page.rows.map(renderSubscription),
    has_more: page.hasMore,
    ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
  };
}

// ------------------------------------------------------------------ overview
export const OVERVIEW_WEBHOOKS_MAX = LIST_SCAN_MAX;

/** getAdminOverview's webhook_counts (active = ACTIVE only, disabled = DISABLED only,
 *  PAUSED in total only) and the top 10 failing subscriptions. */
export async function webhookOverview(redis: Redis) {
  const ids = await redis.zrange(keys.webhooksAll(), 0, OVERVIEW_WEBHOOKS_MAX - 1);
  const counts = { total: 0, active: 0, disabled: 0, with_failures: 0 };
  const failing: { subscription_id: string; url: string; consecutive_failures: number; last_failure_at?: string }[] = [];
  const BATCH = 500;
  for (let i = 0; i < ids.length; i += BATCH) {
    const part = ids.slice(i, i + BATCH).filter((id) => ownerOf(id) !== undefined);
    const rows = await Promise.all(part.map((id) =>
      redis.hmget(keys.webhook(ownerOf(id)!, id), 'status', 'consecutive_failures', 'url', 'last_failure_at_ms')));
    rows.forEach(([status, fails, url, lastFail], j) => {
      if (!status) return;
      counts.total++;
      if (status === 'ACTIVE') counts.active++;
      else if (status === 'DISABLED') counts.disabled++;
      const n = int(fails ?? undefined, 0);
      if (n > 0) {
        counts.with_failures++;
        const row: (typeof failing)[number] = { subscription_id: part[j], url: url ?? '', consecutive_failures: n };
        const at = iso(lastFail);
        if (at) row.last_failure_at = at;
        failing.push(row);
      }
    });
  }
  failing.sort((a, b) => b.consecutive_failures - a.consecutive_failures || (a.subscription_id < b.subscription_id ? -1 : 1));
  return { webhook_counts: counts, failing_webhooks: failing.slice(0, 10) };
}

// ------------------------------------------------------------------ tenant-close cascade
/** CASCADE SEMANTICS Rule 1 for webhooks: every ACTIVE/PAUSED subscription of the closed
 *  tenant → DISABLED, one webhook.disabled_via_tenant_cascade each under the cascade's
 *  correlation id; DISABLED ones are left alone (idempotent re-close). */
export async function disableWebhooksForCascade(c: CascadeStepContext): Promise<number> {
  let n = 0;
  for (const id of await c.redis.zrange(keys.webhookIndex(c.tenant), 0, -1)) {
    const cluster = isCluster(c.redis);
    const tenantKeys = [keys.tenant(c.tenant), keys.webhook(c.tenant, id), keys.outbox(c.tenant)];
    const res = await runAdminScript(c.redis, 'webhook_update',
      cluster ? tenantKeys : [...tenantKeys, keys.webhooksVersion()],
      ['cascade', '', '', '{}', '[]', '', '', JSON.stringify(c.ev), '0']);
    if (res.changed && cluster) await c.redis.incr(keys.webhooksVersion()); // DK6
    if (res.changed) { n += 1; c.step(); }
  }
  return n;
}

// A worker-only process holds no handler context: configure its default key at start, so
// loadDispatchSubscriptions(redis) without a config opens with this server's key.
registerWorker((deps) => {
  try { secretBoxFor(deps.config); } catch (e) { deps.log.warn({ err: e }, 'webhook secret key unavailable'); }
  return { async stop() {} };
});
