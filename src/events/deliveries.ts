// Webhook delivery reads and the two owner-triggered operations on a subscription's
// deliveries: listWebhookDeliveries / listTenantWebhookDeliveries, the test probe
// (testWebhookSubscription / testTenantWebhook) and replayEvents.
//
// Rows (docs/events.md): hash keys.webhookDelivery(owner, id) in the owner's slot (DK13), times as epoch ms (`created_ms`,
// `attempted_ms`, `completed_ms`, `next_retry_ms`), TTL = CYCLES_WEBHOOK_DELIVERY_RETENTION_DAYS;
// keys.webhookDeliveriesBySub(owner, sub) lists them by created ms.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { components } from '../generated/admin.types';
import { loadDocument } from '../generated/documents';
import type { Config } from '../config';
import type { HandlerContext } from '../http/types';
import type { Principal } from '../auth/authenticate';
import { ApiError, invalid } from '../errors';
import { keys } from '../store/keys';
import { stringify } from '../json';
import { loadScript, runScript } from '../store/scripts';
import { eventCtx } from '../admin/common';
import { openPage, comparePositions, parseLimit, type CursorPosition } from '../list/cursor';
import { comparePos, fieldsOf, parseEventId, posOf, renderEvent, SYSTEM_TENANT, type Event } from './model';
import { loadDispatchSubscription, matchSubscription, visibleRecord } from './subscriptions';
import { loadWebhookSecurityConfig } from './urlCheck';
import { deliveryHeaders, sendWebhook } from './dispatch';
import { DELIVERY_FAILED_TYPE, deliveryIdOfMember, enqueueDeliveries, type DeliveryItem } from './fanout';

export type WebhookDelivery = components['schemas']['WebhookDelivery'];
export type WebhookTestResponse = components['schemas']['WebhookTestResponse'];

const DAY_MS = 86_400_000;
/** Most index entries one list request examines (a page that runs out of budget ends early
 *  with has_more=true and a cursor at the last entry examined). */
export const DELIVERIES_SCAN_MAX = 5000;
const LIST_CHUNK = 200;
/** The REPLAY_IN_PROGRESS lock while a replay selects and enqueues ... */
const REPLAY_SELECT_LOCK_MS = 120_000;
/** ... and afterwards, until its last delivery is final (whd_finish.lua ends it sooner). */
export const REPLAY_LOCK_MAX_MS = DAY_MS;
export const REPLAY_MAX_EVENTS_DEFAULT = 100;
/** Event timestamps come from the writer's clock, stream ids from Redis': the stream is read
 *  this much wider than the window, then filtered by timestamp. */
const CLOCK_MARGIN_MS = 1000;

// ------------------------------------------------------------------ rendering
let eventTypes: Set<string> | undefined;
function knownEventType(t: string | undefined): boolean {
  if (!t) return false;
  eventTypes ??= new Set<string>(loadDocument('admin').components.schemas.EventType.enum as string[]);
  return eventTypes.has(t);
}

const iso = (v: string | undefined) => (v && /^\d{1,16}$/.test(v) && Number(v) > 0 ? new Date(Number(v)).toISOString() : undefined);
const intOf = (v: string | undefined) => (v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : undefined);

export function renderDelivery(h: Record<string, string>): WebhookDelivery {
  const out: WebhookDelivery = {
    delivery_id: h.delivery_id,
    subscription_id: h.subscription_id,
    event_id: h.event_id,
    status: h.status as WebhookDelivery['status'],
    // PENDING rows have not been attempted yet: attempted_at (required) is when they were queued
    attempted_at: iso(h.attempted_ms) ?? iso(h.created_ms) ?? new Date(0).toISOString(),
  };
  if (knownEventType(h.event_type)) out.event_type = h.event_type as WebhookDelivery['event_type'];
  const completed = iso(h.completed_ms);
  if (completed) out.completed_at = completed;
  out.attempts = intOf(h.attempts) ?? 0;
  const rs = intOf(h.response_status);
  if (rs !== undefined) out.response_status = rs;
  const rt = intOf(h.response_time_ms);
  if (rt !== undefined) out.response_time_ms = rt;
  if (h.error_message) out.error_message = h.error_message;
  if (h.status === 'RETRYING') {
    const next = iso(h.next_retry_ms);
    if (next) out.next_retry_at = next;
  }
  if (h.trace_id && /^[0-9a-f]{32}$/.test(h.trace_id)) out.trace_id = h.trace_id;
  if (h.trace_flags && /^[0-9a-f]{2}$/.test(h.trace_flags)) out.trace_flags = h.trace_flags;
  return out;
}

// ------------------------------------------------------------------ lists
function timeParam(v: unknown, name: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const ms = Date.parse(String(v));
  if (!Number.isFinite(ms)) throw invalid(`${name} must be an RFC 3339 date-time`);
  return ms;
}

/** Sort value of an index entry: newest first = (created ms, member) descending, which is
 *  exactly ZREVRANGEBYSCORE's order (equal scores: member descending; members are
 *  `<16-digit seq>|<delivery_id>`, so equal ms keep the order the rows were queued in). */
const posValue = (ms: number, id: string) => `${String(ms).padStart(16, '0')}|${id}`;
const msOfValue = (v: string) => Number(v.slice(0, 16));

/**
 * One page of a subscription's deliveries, newest first; `status`, `from`, `to` (created
 * time, inclusive) AND-combined; keyset cursor. The caller must be allowed to see the
 * subscription (visibleRecord: unknown id or another tenant's → 404 WEBHOOK_NOT_FOUND).
 */
export async function listDeliveries(redis: Redis, principal: Principal, subscriptionId: string, q: Record<string, any>) {
  const owner = (await visibleRecord(redis, principal, subscriptionId)).tenant_id;
  const status = typeof q.status === 'string' && q.status !== '' ? q.status : undefined;
  const fromMs = timeParam(q.from, 'from');
  const toMs = timeParam(q.to, 'to');
  if (fromMs !== undefined && toMs !== undefined && fromMs > toMs) throw invalid('from must not be after to');
  const limit = Math.min(parseLimit(q.limit), 100);
  const page = openPage({
    sort: { name: 'created_at', value: (v: string) => v }, dir: 'desc', limit,
    filters: { subscription_id: subscriptionId, status, from: fromMs, to: toMs },
    cursor: typeof q.cursor === 'string' ? q.cursor : undefined,
  });
  const after = page.after as CursorPosition | undefined;
  const key = keys.webhookDeliveriesBySub(owner, subscriptionId);
  const max = after ? String(msOfValue(String(after.value))) : toMs !== undefined ? String(toMs) : '+inf';
  const min = fromMs !== undefined ? String(fromMs) : '-inf';

  const rows: { h: Record<string, string>; pos: CursorPosition }[] = [];
  let scanned = 0;
  let last: CursorPosition | undefined;
  let exhausted = false;
  while (rows.length <= limit && scanned < DELIVERIES_SCAN_MAX) {
    const n = Math.min(LIST_CHUNK, DELIVERIES_SCAN_MAX - scanned);
    // a fixed [min, max] window walked by offset: new rows (newer than max) never shift it
    const flat = await redis.zrevrangebyscore(key, max, min, 'WITHSCORES', 'LIMIT', scanned, n);
    scanned += flat.length / 2;
    if (flat.length / 2 < n) exhausted = true;
    const cands: CursorPosition[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      // member = <16-digit seq>|<delivery_id>: equal ms → queue order
      const pos = { value: posValue(Number(flat[i + 1]), flat[i]), id: flat[i] };
      if (after && comparePositions(pos, after, 'desc') <= 0) continue; // same ms, already served
      cands.push(pos);
    }
    const hs = await Promise.all(cands.map((c) => redis.hgetall(keys.webhookDelivery(owner, deliveryIdOfMember(c.id)))));
    for (let i = 0; i < cands.length && rows.length <= limit; i++) {
      last = cands[i];
      const h = hs[i];
      if (!h || !h.delivery_id) continue; // expired row (its index entry goes with the next trim)
      if (status && h.status !== status) continue;
      rows.push({ h, pos: cands[i] });
    }
    if (exhausted) break;
  }
  const hasMore = rows.length > limit || (!exhausted && last !== undefined);
  const take = rows.slice(0, limit);
  const cursorAt = rows.length > limit ? take[take.length - 1]?.pos : last;
  return {
    deliveries: take.map((r) => renderDelivery(r.h)),
    has_more: hasMore,
    ...(hasMore && cursorAt ? { next_cursor: page.mint(cursorAt) } : {}),
  };
}

// ------------------------------------------------------------------ shared guards
async function requireOwnerOpen(redis: Redis, owner: string): Promise<void> {
  if (owner === SYSTEM_TENANT) return;
  if ((await redis.hget(keys.tenant(owner), 'status')) === 'CLOSED') {
    throw new ApiError('TENANT_CLOSED', `The owning tenant ${owner} is CLOSED`);
  }
}

// ------------------------------------------------------------------ test probe
/**
 * Sends one synthetic system.webhook_test event, signed with the subscription's secret,
 * straight to its URL (URL checks as for deliveries). Never changes the subscription (status,
 * consecutive_failures, last_* times); the outcome is recorded as one delivery row
 * (`dlv_test_…`, not queued) and returned as WebhookTestResponse — a failing endpoint is
 * success=false with 200, not an HTTP error.
 */
export async function testSubscription(ctx: HandlerContext, onBehalf: boolean): Promise<WebhookTestResponse> {
  const { redis, config } = ctx.deps;
  const id = ctx.params.subscription_id;
  const h = await visibleRecord(redis, ctx.principal, id);
  await requireOwnerOpen(redis, h.tenant_id);
  const sub = await loadDispatchSubscription(redis, id, config);
  if (!sub) throw new ApiError('WEBHOOK_NOT_FOUND', `Webhook subscription ${id} not found`);
  const ev = eventCtx(ctx, onBehalf && ctx.principal.kind === 'admin');
  const event: Event = {
    event_id: `evt_test_${randomBytes(12).toString('hex')}`,
    event_type: 'system.webhook_test',
    category: 'system',
    timestamp: new Date().toISOString(),
    tenant_id: sub.tenant_id,
    source: 'cycles-server',
    actor: JSON.parse(ev.actor_json) as Event['actor'],
    data: {
      component: 'webhook_dispatcher', severity: 'info',
      message: `Test event for webhook subscription ${id}`,
      details: { subscription_id: id, test: true },
    },
    request_id: ctx.requestId,
    trace_id: ctx.traceId,
  };
  let result: { ok: boolean; status?: number; timeMs: number; error?: string };
  if (sub.secret_error) {
    result = { ok: false, timeMs: 0, error: 'the stored signing secret cannot be decrypted (CYCLES_WEBHOOK_SECRET_KEY?)' };
  } else {
    const body = Buffer.from(stringify(event), 'utf8');
    const headers = deliveryHeaders(event, body, sub.signing_secret, sub.headers);
    result = await sendWebhook(sub, body, headers, await loadWebhookSecurityConfig(redis), config.webhookTimeoutMs);
  }
  await recordTestRow(redis, config, h.tenant_id, id, event, result);
  const out: WebhookTestResponse = { success: result.ok, response_time_ms: result.timeMs, event_id: event.event_id };
  if (result.status !== undefined) out.response_status = result.status;
  if (result.error) out.error_message = result.error;
  return out;
}

async function recordTestRow(redis: Redis, config: Config, owner: string, subId: string, event: Event,
  r: { ok: boolean; status?: number; timeMs: number; error?: string }): Promise<void> {
  const id = `dlv_test_${randomBytes(12).toString('hex')}`;
  const [sec, usec] = await redis.time();
  const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  const retentionMs = config.webhookDeliveryRetentionDays * DAY_MS;
  const row: Record<string, string> = {
    delivery_id: id, subscription_id: subId, event_id: event.event_id, event_type: event.event_type,
    status: r.ok ? 'SUCCESS' : 'FAILED', attempts: '1', created_ms: String(now - r.timeMs),
    attempted_ms: String(now - r.timeMs), completed_ms: String(now), response_time_ms: String(r.timeMs),
  };
  if (r.status !== undefined) row.response_status = String(r.status);
  if (r.error) row.error_message = r.error;
  if (event.trace_id) row.trace_id = event.trace_id;
  const bySub = keys.webhookDeliveriesBySub(owner, subId);
  const member = `${String(await redis.incr(keys.webhookSeq(owner))).padStart(16, '0')}|${id}`;
  await redis.multi()
    .hset(keys.webhookDelivery(owner, id), row)
    .pexpire(keys.webhookDelivery(owner, id), retentionMs)
    .zadd(bySub, now - r.timeMs, member)
    .zremrangebyscore(bySub, '-inf', `(${now - retentionMs}`)
    .pexpire(bySub, retentionMs)
    .exec();
}

// ------------------------------------------------------------------ replay
interface Candidate { event: Event; order: NonNullable<ReturnType<typeof posOf>> }

/** Every stored event with timestamp in [fromMs, toMs] that a subscription of `owner` could
 *  receive, oldest first; throws 400 past the scan limit. */
async function replayCandidates(redis: Redis, owner: string, fromMs: number, toMs: number, scanLimit: number): Promise<Candidate[]> {
  const tooMany = () => invalid(`The replay window holds more than ${scanLimit} stored events (the server's scan limit); narrow from/to`,
    { scan_limit: scanLimit });
  const out: Candidate[] = [];
  const inWindow = (e: Event) => { const t = Date.parse(e.timestamp); return t >= fromMs && t <= toMs; };
  if (owner !== SYSTEM_TENANT) {
    const start = String(Math.max(0, fromMs - CLOCK_MARGIN_MS));
    const end = String(toMs + CLOCK_MARGIN_MS);
    const entries = await redis.xrange(keys.outbox(owner), start, end, 'COUNT', scanLimit + 1);
    if (entries.length > scanLimit) throw tooMany();
    for (const [streamId, flat] of entries) {
      const event = renderEvent(owner, streamId, fieldsOf(flat));
      if (inWindow(event)) out.push({ event, order: posOf(event.event_id)! });
    }
  } else {
    // every tenant: the relay's global time index (score = event timestamp ms)
    const ids = await redis.zrangebyscore(keys.eventIndex(), fromMs, toMs, 'LIMIT', 0, scanLimit + 1);
    if (ids.length > scanLimit) throw tooMany();
    for (let i = 0; i < ids.length; i += 500) {
      const part = ids.slice(i, i + 500).map((id) => ({ id, loc: parseEventId(id) })).filter((x) => x.loc);
      const res = (await redis.pipeline(part.map((x) => ['xrange', keys.outbox(x.loc!.tenant), x.loc!.streamId, x.loc!.streamId])).exec()) ?? [];
      res.forEach(([err, entries], j) => {
        const list = entries as [string, string[]][] | undefined;
        if (err || !list || list.length === 0) return; // trimmed since it was indexed
        const { tenant, streamId } = part[j].loc!;
        const event = renderEvent(tenant, streamId, fieldsOf(list[0][1]));
        if (inWindow(event)) out.push({ event, order: posOf(event.event_id)! });
      });
    }
  }
  return out.sort((a, b) => comparePos(a.order, b.order));
}

export interface ReplayAccepted { replay_id: string; events_queued: number; estimated_completion_seconds: number }

/**
 * replayEvents (normative): selects EVERY deliverable event of [from, to] — the subscription's
 * own selectors, scope_filter and ownership guard (matchSubscription), narrowed by the
 * request's event_types — or rejects the whole request (400) when that is more than
 * max_events or the window exceeds the scan limit; then queues each selected event as a
 * new delivery, oldest first. One replay per subscription at a time (409
 * REPLAY_IN_PROGRESS) until its last delivery is final. Not idempotent.
 */
export async function replayEvents(ctx: HandlerContext): Promise<ReplayAccepted> {
  const { redis, config } = ctx.deps;
  const id = ctx.params.subscription_id;
  const h = await visibleRecord(redis, ctx.principal, id);
  await requireOwnerOpen(redis, h.tenant_id);
  const body = (ctx.body ?? {}) as { from?: string; to?: string; event_types?: string[]; max_events?: number | bigint };
  const maxEvents = body.max_events === undefined ? REPLAY_MAX_EVENTS_DEFAULT : Number(body.max_events);
  if (!Number.isInteger(maxEvents) || maxEvents < 1 || maxEvents > 1000) throw invalid('max_events must be between 1 and 1000');
  const fromMs = timeParam(body.from, 'from') ?? 0;
  const toMs = timeParam(body.to, 'to') ?? Date.now();
  if (fromMs > toMs) throw invalid('from must not be after to');
  const types = Array.isArray(body.event_types) && body.event_types.length > 0 ? new Set(body.event_types) : undefined;

  const sub = await loadDispatchSubscription(redis, id, config);
  if (!sub) throw new ApiError('WEBHOOK_NOT_FOUND', `Webhook subscription ${id} not found`);
  const replayId = `rpl_${randomBytes(12).toString('hex')}`;
  const lock = keys.webhookReplayLock(sub.tenant_id, id);
  if ((await redis.set(lock, replayId, 'PX', REPLAY_SELECT_LOCK_MS, 'NX')) !== 'OK') {
    throw new ApiError('REPLAY_IN_PROGRESS', `A replay to subscription ${id} is still in progress; retry when its deliveries have finished`);
  }
  let queued = 0;
  try {
    const cands = await replayCandidates(redis, sub.tenant_id, fromMs, toMs, config.webhookReplayScanLimit);
    const selected = cands.filter(({ event }) => matchSubscription(sub, event)
      && (!types || types.has(event.event_type))
      && !(event.event_type === DELIVERY_FAILED_TYPE
        && (event.data as { details?: { subscription_id?: unknown } } | undefined)?.details?.subscription_id === id));
    if (selected.length > maxEvents) {
      throw invalid(`The replay window holds ${selected.length} deliverable events, more than max_events=${maxEvents}; narrow from/to or raise max_events (up to 1000)`,
        { deliverable_events: selected.length, max_events: maxEvents });
    }
    const width = String(selected.length).length;
    const items: DeliveryItem[] = selected.map(({ event }, i) => ({
      deliveryId: `dlv_rp_${replayId.slice(4)}_${String(i).padStart(width, '0')}`,
      subscriptionId: id, eventId: event.event_id, eventType: event.event_type, traceId: event.trace_id,
    }));
    const res = await enqueueDeliveries(redis, items, { mode: 'replay', replayId, replayLockTtlMs: REPLAY_LOCK_MAX_MS });
    queued = res.created;
  } finally {
    if (queued === 0) {
      // nothing in flight: the lock ends now (only ours: compare, then delete)
      await runScript(redis, loadScript('whd_unlock'), [lock], [replayId]);
    }
  }
  return { replay_id: replayId, events_queued: queued, estimated_completion_seconds: queued === 0 ? 0 : Math.max(1, Math.ceil(queued / 10)) };
}
