// Webhook subscription writes: create, update (PATCH), delete — shared by the admin plane
// (/v1/admin/webhooks), the tenant plane (/v1/webhooks, tenant key or admin on behalf of the
// owner) and bulkActionWebhooks. Every path validates the EFFECTIVE state (stored ∪ request)
// against the normative WEBHOOK SUBSCRIPTION INVARIANTS before anything is written, and the
// Lua scripts check the selector invariants again on the state they persist (DV11).
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError, invalid } from '../errors';
import { keys } from '../store/keys';
import { isCluster } from '../store/cluster';
import { stringify } from '../json';
import { runAdminScript, type EventCtx } from '../admin/common';
import { categoryOf, SYSTEM_TENANT, TENANT_VISIBLE_CATEGORIES } from './model';
import type { SecretBox } from './secretBox';
import { checkWebhookUrl, loadWebhookSecurityConfig } from './urlCheck';
import {
  DEFAULT_DISABLE_AFTER_FAILURES, DEFAULT_RETRY_POLICY, HEADER_MASK, jsonField, notFound, readRecord,
  renderSubscription, type RetryPolicy, type WebhookStatus, type WebhookSubscription,
} from './subscriptions';

/** Most subscriptions one tenant (or `__system__`) may hold: the dispatcher keeps every
 *  ACTIVE one in memory, and admin lists read them all. */
export const MAX_WEBHOOKS_PER_TENANT = 200;
export const HEADERS_MAX = 32;
export const HEADER_VALUE_MAX_CHARS = 4096;
export const SECRET_MAX_CHARS = 512;
export const SCOPE_FILTER_MAX_CHARS = 1024;
export const DISABLE_AFTER_FAILURES_MAX = 1_000_000;
const UPDATE_RETRIES = 5;

export interface WriteCtx { ev: EventCtx; box: SecretBox }

// ------------------------------------------------------------------ validation
/** INVARIANT 1 (a selector) and INVARIANT 2 (a concrete tenant's subscription selects only
 *  tenant-visible types and categories), on the state about to be persisted. */
export function checkSelectors(owner: string, types: string[], categories: string[]): void {
  if (types.length === 0 && categories.length === 0) {
    throw invalid('At least one of event_types and event_categories must be non-empty (SUBSCRIPTION SELECTOR INVARIANT)');
  }
  if (owner === SYSTEM_TENANT) return;
  const badTypes = types.filter((t) => !TENANT_VISIBLE_CATEGORIES.has(categoryOf(t)));
  const badCats = categories.filter((c) => !TENANT_VISIBLE_CATEGORIES.has(c));
  if (badTypes.length > 0 || badCats.length > 0) {
    const what = [...badTypes.map((t) => `event type ${t}`), ...badCats.map((c) => `event category ${c}`)].join(', ');
    throw invalid(`${what}: admin-only; a subscription owned by tenant ${owner} may only select budget, reservation and tenant events (create a __system__ subscription for admin events)`);
  }
}

const strings = (v: unknown, name: string): string[] => {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(`${name} must be an array of strings`);
  return [...new Set(v as string[])];
};

function intIn(v: unknown, name: string, min: number, max: number): number {
  const n = typeof v === 'bigint' ? Number.NaN : Number(v);
  if (typeof v !== 'number' && typeof v !== 'bigint') throw invalid(`${name} must be an integer`);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw invalid(`${name} must be an integer between ${min} and ${max}`);
  return n;
}

/** WebhookRetryPolicy with its bounds (0-10, 100-60000, 1.0-10.0, 1000-3600000); omitted
 *  members take their defaults. */
export function retryPolicy(v: unknown): RetryPolicy {
  if (v === undefined) return { ...DEFAULT_RETRY_POLICY };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('retry_policy must be an object');
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !(k in DEFAULT_RETRY_POLICY));
  if (unknown.length > 0) throw invalid(`retry_policy.${unknown[0]} is not a retry policy field`);
  const m = o.backoff_multiplier ?? DEFAULT_RETRY_POLICY.backoff_multiplier;
  if (typeof m !== 'number' || !Number.isFinite(m) || m < 1 || m > 10) throw invalid('retry_policy.backoff_multiplier must be a number between 1.0 and 10.0');
  return {
    max_retries: intIn(o.max_retries ?? DEFAULT_RETRY_POLICY.max_retries, 'retry_policy.max_retries', 0, 10),
    initial_delay_ms: intIn(o.initial_delay_ms ?? DEFAULT_RETRY_POLICY.initial_delay_ms, 'retry_policy.initial_delay_ms', 100, 60000),
    backoff_multiplier: m,
    max_delay_ms: intIn(o.max_delay_ms ?? DEFAULT_RETRY_POLICY.max_delay_ms, 'retry_policy.max_delay_ms', 1000, 3600000),
  };
}

const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
/** Headers the delivery itself sets (or that would break the HTTP exchange). */
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'content-encoding', 'host', 'connection', 'keep-alive',
  'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'proxy-connection', 'proxy-authorization', 'user-agent',
  'traceparent', 'tracestate', 'x-request-id']);

/** Custom headers: valid names (not ones the delivery sets, not X-Cycles-*), values without
 *  control characters, bounded. `prior` resolves masked values of a PATCH (DV12). */
export function checkHeaders(v: unknown, prior: Record<string, string> = {}): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('headers must be an object of strings');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > HEADERS_MAX) throw invalid(`headers holds at most ${HEADERS_MAX} entries`);
  const out: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [name, value] of entries) {
    if (!HEADER_NAME_RE.test(name)) throw invalid(`headers: "${name.slice(0, 64)}" is not a valid HTTP header name`);
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower.startsWith('x-cycles-')) throw invalid(`headers: ${name} is set by the delivery itself and cannot be overridden`);
    if (seen.has(lower)) throw invalid(`headers: ${name} is given twice`);
    seen.add(lower);
    if (typeof value !== 'string') throw invalid(`headers.${name} must be a string`);
    let real = value;
    if (value === HEADER_MASK) {
      const kept = Object.keys(prior).find((k) => k.toLowerCase() === lower);
      if (kept === undefined) throw invalid(`headers.${name}: "${HEADER_MASK}" is the masked form of a stored value, and no value is stored for ${name}`);
      real = prior[kept];
    }
    if (real.length > HEADER_VALUE_MAX_CHARS || /[\r\n\0]/.test(real)) {
      throw invalid(`headers.${name} must be at most ${HEADER_VALUE_MAX_CHARS} characters without CR, LF or NUL`);
    }
    out[name] = real;
  }
  return out;
}

/** scope_filter: exact scope or a trailing `*` (strictly deeper); '' = none (DV16). */
export function scopeFilter(v: unknown): string | undefined {
  if (typeof v !== 'string') throw invalid('scope_filter must be a string');
  const f = v.trim();
  if (f === '') return undefined;
  if (f.length > SCOPE_FILTER_MAX_CHARS) throw invalid(`scope_filter must be at most ${SCOPE_FILTER_MAX_CHARS} characters`);
  if (f.slice(0, -1).includes('*')) throw invalid('scope_filter supports one wildcard, a trailing "*" (e.g. tenant:acme/*); "*" elsewhere never matches');
  return f;
}

function checkSecret(v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > SECRET_MAX_CHARS) {
    throw invalid(`signing_secret must be a non-empty string of at most ${SECRET_MAX_CHARS} characters`);
  }
  return v;
}

/** whsec_ + base64url of 32 random bytes. */
export const newSigningSecret = () => `whsec_${randomBytes(32).toString('base64url')}`;
const newId = (owner: string) => `whsub_${owner}_${randomBytes(12).toString('hex')}`;

async function checkUrl(redis: Redis, url: string): Promise<void> {
  await checkWebhookUrl(url, await loadWebhookSecurityConfig(redis), { allowUnresolved: true });
}

const recordKeys = (owner: string, id: string) => ({
  tenant: keys.tenant(owner), record: keys.webhook(owner, id), index: keys.webhookIndex(owner),
  outbox: keys.outbox(owner),
});

// ------------------------------------------------------------------ create
/** Creates a subscription owned by `owner` (a tenant id or `__system__`). The caller has
 *  resolved the owner (and its existence where the operation requires it). */
export async function createSubscription(
  redis: Redis, owner: string, body: Record<string, any>, c: WriteCtx,
): Promise<{ subscription: WebhookSubscription; signing_secret: string }> {
  const types = strings(body.event_types, 'event_types');
  if (types.length === 0) throw invalid('event_types must list at least one event type on create');
  const categories = body.event_categories === undefined ? [] : strings(body.event_categories, 'event_categories');
  checkSelectors(owner, types, categories);
  const retry = retryPolicy(body.retry_policy);
  const headers = body.headers === undefined ? {} : checkHeaders(body.headers);
  const filter = body.scope_filter === undefined ? undefined : scopeFilter(body.scope_filter);
  const secret = body.signing_secret === undefined ? newSigningSecret() : checkSecret(body.signing_secret);
  const disableAfter = body.disable_after_failures === undefined ? DEFAULT_DISABLE_AFTER_FAILURES
    : intIn(body.disable_after_failures, 'disable_after_failures', 1, DISABLE_AFTER_FAILURES_MAX);
  await checkUrl(redis, String(body.url));

  const id = newId(owner);
  const f: Record<string, string> = {
    subscription_id: id, tenant_id: owner, url: body.url,
    event_types: JSON.stringify(types), event_categories: JSON.stringify(categories),
    retry_policy: JSON.stringify(retry), disable_after_failures: String(disableAfter),
    secret_enc: c.box.seal(secret, `${id}:signing_secret`),
  };
  if (body.name !== undefined) f.name = body.name;
  if (body.description !== undefined) f.description = body.description;
  if (filter !== undefined) f.scope_filter = filter;
  if (body.thresholds !== undefined) f.thresholds = stringify(body.thresholds);
  if (body.metadata !== undefined) f.metadata = stringify(body.metadata);
  if (Object.keys(headers).length > 0) {
    f.headers = JSON.stringify(Object.fromEntries(Object.keys(headers).map((k) => [k, HEADER_MASK])));
    f.headers_enc = c.box.seal(JSON.stringify(headers), `${id}:headers`);
  }
  const k = recordKeys(owner, id);
  const cluster = isCluster(redis);
  // Redis Cluster (DK6): the registry entry first (readers skip an id without a record),
  // taken back if the script refuses; the version after.
  if (cluster) await redis.zadd(keys.webhooksAll(), Date.now(), id);
  let res: { record: Record<string, string> };
  try {
    res = await runAdminScript<{ record: Record<string, string> }>(redis, 'webhook_create',
      cluster ? [k.tenant, k.record, k.index, k.outbox] : [k.tenant, k.record, k.index, keys.webhooksAll(), keys.webhooksVersion(), k.outbox],
      [JSON.stringify(f), JSON.stringify(c.ev), MAX_WEBHOOKS_PER_TENANT],
      { LIMIT_EXCEEDED: new ApiError('LIMIT_EXCEEDED', `Tenant ${owner} already holds ${MAX_WEBHOOKS_PER_TENANT} webhook subscriptions; delete one first`, { limit: MAX_WEBHOOKS_PER_TENANT }, 400) });
  } catch (e) {
    if (cluster && !(await redis.exists(k.record))) await redis.zrem(keys.webhooksAll(), id);
    throw e;
  }
  if (cluster) {
    await redis.zadd(keys.webhooksAll(), 'XX', res.record.created_at_ms ?? Date.now(), id);
    await redis.incr(keys.webhooksVersion());
  }
  return { subscription: renderSubscription(res.record), signing_secret: secret };
}

// ------------------------------------------------------------------ update
const PLAIN = ['name', 'description', 'url'] as const;
const JSON_FIELDS = ['event_types', 'event_categories', 'thresholds', 'metadata', 'retry_policy'] as const;

interface Plan { set: Record<string, string>; unset: string[]; changed: string[]; status: WebhookStatus; resetFailures: boolean }

/** The writes a PATCH body makes to the stored record `h` (validated; nothing written). */
function planUpdate(h: Record<string, string>, body: Record<string, any>, box: SecretBox): Plan {
  const id = h.subscription_id;
  const p: Plan = { set: {}, unset: [], changed: [], status: h.status as WebhookStatus, resetFailures: false };
  const put = (field: string, stored: string, name = field) => {
    if (h[field] !== stored) { p.set[field] = stored; if (!p.changed.includes(name)) p.changed.push(name); }
  };
  for (const k of PLAIN) if (body[k] !== undefined) put(k, String(body[k]));
  if (body.scope_filter !== undefined) {
    const f = scopeFilter(body.scope_filter);
    if (f !== undefined) put('scope_filter', f);
    else if (h.scope_filter !== undefined) { p.unset.push('scope_filter'); p.changed.push('scope_filter'); }
  }
  const next: Record<string, unknown> = {
    event_types: body.event_types === undefined ? undefined : strings(body.event_types, 'event_types'),
    event_categories: body.event_categories === undefined ? undefined : strings(body.event_categories, 'event_categories'),
    thresholds: body.thresholds, metadata: body.metadata,
    retry_policy: body.retry_policy === undefined ? undefined : retryPolicy(body.retry_policy),
  };
  for (const k of JSON_FIELDS) {
    if (next[k] === undefined) continue;
    const stored = stringify(next[k]);
    const cur = h[k] === undefined ? undefined : stringify(jsonField(h[k], null));
    if (cur !== stored) { p.set[k] = stored; p.changed.push(k); }
  }
  if (body.disable_after_failures !== undefined) {
    put('disable_after_failures', String(intIn(body.disable_after_failures, 'disable_after_failures', 1, DISABLE_AFTER_FAILURES_MAX)));
  }
  if (body.signing_secret !== undefined) {
    const secret = checkSecret(body.signing_secret);
    let cur: string | undefined;
    try { cur = box.open(h.secret_enc, `${id}:signing_secret`); } catch { cur = undefined; }
    if (cur !== secret) { p.set.secret_enc = box.seal(secret, `${id}:signing_secret`); p.changed.push('signing_secret'); }
  }
  if (body.headers !== undefined) {
    let prior: Record<string, string> = {};
    try { prior = h.headers_enc ? JSON.parse(box.open(h.headers_enc, `${id}:headers`)) as Record<string, string> : {}; } catch { prior = {}; }
    const headers = checkHeaders(body.headers, prior);
    if (stringify(headers) !== stringify(prior)) {
      p.changed.push('headers');
      if (Object.keys(headers).length === 0) {
        p.unset.push('headers', 'headers_enc');
      } else {
        p.set.headers = JSON.stringify(Object.fromEntries(Object.keys(headers).map((k) => [k, HEADER_MASK])));
        p.set.headers_enc = box.seal(JSON.stringify(headers), `${id}:headers`);
      }
    }
  }
  if (body.status !== undefined) {
    if (body.status !== 'ACTIVE' && body.status !== 'PAUSED') {
      throw invalid('status can only be set to ACTIVE or PAUSED (DISABLED is set by the server after repeated delivery failures)');
    }
    if (body.status !== h.status) {
      p.status = body.status;
      p.set.status = body.status;
      p.resetFailures = h.status === 'DISABLED' && body.status === 'ACTIVE';
    }
  }
  return p;
}

/**
 * PATCH of subscription `id` owned by `owner`; `opts.correlation` defaults to the single-op
 * webhook_update:<id>:<request_id>; `opts.fromStatus` (bulk) refuses the change when the
 * live status is another one. Returns the stored view after the change (the current one
 * for a no-op PATCH, which writes and emits nothing).
 */
export async function updateSubscription(
  redis: Redis, owner: string, id: string, body: Record<string, any>, c: WriteCtx,
  opts: { correlation?: string; fromStatus?: WebhookStatus } = {},
): Promise<WebhookSubscription> {
  const conflict = new ApiError('INTERNAL_ERROR', 'conflict');
  const correlation = opts.correlation;
  for (let attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
    const h = await readRecord(redis, id);
    if (!h || h.tenant_id !== owner) throw notFound(id);
    if (opts.fromStatus && h.status !== opts.fromStatus) {
      throw new ApiError('INVALID_REQUEST', `Subscription ${id} is ${h.status} now (was ${opts.fromStatus} when selected); not changed`);
    }
    const p = planUpdate(h, body, c.box);
    checkSelectors(owner,
      jsonField<string[]>(p.set.event_types ?? h.event_types, []),
      jsonField<string[]>(p.set.event_categories ?? h.event_categories, []));
    if (p.set.url !== undefined) await checkUrl(redis, p.set.url);
    let type = '';
    if (p.status !== h.status) type = p.status === 'PAUSED' ? 'webhook.paused' : 'webhook.resumed';
    else if (p.changed.length > 0) type = 'webhook.updated';
    const data = { subscription_id: id, tenant_id: owner, previous_status: h.status, new_status: p.status, changed_fields: p.changed };
    const ev = { ...c.ev, correlation_id: correlation ?? `webhook_update:${id}:${c.ev.request_id}` };
    const k = recordKeys(owner, id);
    try {
      const cluster = isCluster(redis);
      const res = await runAdminScript<{ record: Record<string, string> }>(redis, 'webhook_update',
        cluster ? [k.tenant, k.record, k.outbox] : [k.tenant, k.record, k.outbox, keys.webhooksVersion()],
        ['patch', h.rev ?? '0', h.status, JSON.stringify(type ? p.set : {}), JSON.stringify(type ? p.unset : []),
          type, JSON.stringify(data), JSON.stringify(ev), p.resetFailures ? '1' : '0'],
        { CONFLICT: conflict, NOT_FOUND: notFound(id) });
      if (cluster && type) await redis.incr(keys.webhooksVersion()); // DK6
      return renderSubscription(res.record);
    } catch (e) {
      if (e !== conflict) throw e;
    }
  }
  throw new ApiError('INTERNAL_ERROR', `Webhook subscription ${id} is being changed concurrently; retry`);
}

// ------------------------------------------------------------------ delete
export async function deleteSubscription(redis: Redis, owner: string, id: string, ev: EventCtx, correlation?: string): Promise<string> {
  const k = recordKeys(owner, id);
  const cluster = isCluster(redis);
  const res = await runAdminScript<{ previous_status: string }>(redis, 'webhook_delete',
    cluster ? [k.tenant, k.record, k.index, k.outbox] : [k.tenant, k.record, k.index, keys.webhooksAll(), keys.webhooksVersion(), k.outbox],
    [id, JSON.stringify({ ...ev, correlation_id: correlation ?? `webhook_delete:${id}` })],
    { NOT_FOUND: notFound(id) });
  if (cluster) { // DK6
    await redis.zrem(keys.webhooksAll(), id);
    await redis.incr(keys.webhooksVersion());
  }
  return res.previous_status;
}

/** Whether a concrete tenant may own subscriptions created under the admin key: it must
 *  exist (a tenant record, or ledger data that made it known). */
export async function requireTenant(redis: Redis, tenant: string): Promise<void> {
  const known = (await redis.exists(keys.tenant(tenant))) === 1 || (await redis.sismember(keys.tenants(), tenant)) === 1;
  if (!known) throw new ApiError('TENANT_NOT_FOUND', `Tenant ${tenant.slice(0, 128)} not found`);
}
