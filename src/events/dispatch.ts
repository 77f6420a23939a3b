// Webhook delivery worker: takes queued deliveries (src/events/fanout.ts, replay), POSTs the
// signed Event bytes, and records each attempt (whd_finish.lua: retries, FAILED,
// consecutive failures, auto-disable). Safe with any number of worker processes.
//
// Every delivery key lives in the slot of the subscription's owner (DK13), so each script
// runs on one slot, on a single Redis and a Redis Cluster alike. The dispatcher finds owners
// with due work in a cross-slot index (whd_owners.lua, DK14), claims per owner, and a
// repair sweep re-marks every owner whose own scheduler holds work (a crash between a
// script and its index write loses nothing).
//
// Ownership is per subscription queue, under a lease (whd_claim.lua): one holder sends a
// subscription's due deliveries in queue order (first attempts in event order; a retry is
// re-queued at its due time and may overtake nothing that was due before it). A holder
// renews its leases every lease/3 (whd_renew.lua); when it dies, the queue — whose entries
// leave only when an attempt is recorded — is taken again after the lease: at-least-once,
// and no duplicate sends unless a worker dies (or stalls past its lease) mid-attempt.
// Bounded everywhere: CYCLES_WEBHOOK_CONCURRENCY sends per process,
// CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY per subscription, QUEUE_BATCH deliveries per
// claimed queue, CYCLES_WEBHOOK_TIMEOUT_MS per attempt. A slow receiver occupies its own
// queue's slots only; the scheduler never looks at a held queue.
//
// Wire format (admin spec, WebhookSubscription / admin-digest A131, A132): body = the
// Event JSON bytes, serialised once and signed as sent; X-Cycles-Signature:
// sha256=<lowercase hex HMAC-SHA256(secret, body)>. The URL is checked again before every
// attempt (checkWebhookUrl) and the connection goes only to the addresses that check
// vetted (DNS-rebinding safe); redirects are never followed; only 2xx is success.
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LookupFunction } from 'node:net';
import { Agent, request } from 'undici';
import type { Deps } from '../http/types';
import { REPO_ROOT } from '../config';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { stringify } from '../json';
import { ApiError } from '../errors';
import { fieldsOf, parseEventId, renderEvent, type Event } from './model';
import { checkWebhookUrl, loadWebhookSecurityConfig, type EffectiveSecurityConfig } from './urlCheck';
import { loadDispatchSubscription, ownerOf, type DispatchSubscription } from './subscriptions';
import { configureFanout, deliveryIdOfMember, markOwnerDue, onEnqueued, subscriptionTable } from './fanout';
import { migrateLegacyDeliveries } from './whdMigrate';
import { countWebhookDelivery } from '../metrics';

/** Deliveries taken from one queue per claim (then the queue is let go and rescheduled). */
export const QUEUE_BATCH = 50;
/** Batches one claim may work in a row before the queue is let go (see startQueue). */
export const QUEUE_BATCHES_PER_CLAIM = 4;
/** Response bytes read (and discarded) per attempt; the rest is cut off. */
const RESPONSE_READ_MAX = 64 * 1024;
/** Kept connection pools (one per origin + vetted address set); least recently used go. */
const AGENTS_MAX = 256;
const ERROR_MESSAGE_MAX = 512;
/** Attempt outcomes sent to Redis and not yet answered, per queue (see workQueue). */
export const FINISH_WINDOW = 8;
/** Pause of the claim loop after a failed claim (Redis unreachable): no log storm. */
const CLAIM_ERROR_BACKOFF_MS = 1000;
/** Rendered events kept per dispatcher: every subscription of one event sends the same
 *  bytes (only the signature differs), so they are read and serialised once. */
const EVENT_CACHE_MAX = 4096;
/** Owners read from the cross-slot due index per claim round. */
const OWNERS_PER_ROUND = 64;
/** How often the repair sweep re-marks owners whose own scheduler holds work (DK14). */
export const REPAIR_SWEEP_MS = 30_000;
/** Owners whose scheduler one sweep round reads at once. */
const REPAIR_BATCH = 200;

const VERSION = (() => {
  try { return String(JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version ?? '0'); } catch { return '0'; }
})();
export const USER_AGENT = `cycles-server/${VERSION} (webhook)`;

// ------------------------------------------------------------------ sending
/** Names a subscription's custom headers cannot set: the protocol's own headers win, and
 *  transport headers are undici's business. Compared lower-case. */
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host', 'user-agent', 'traceparent', 'tracestate',
  'x-request-id', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect',
  'proxy-authorization', 'proxy-connection']);
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
// eslint-disable-next-line no-control-regex
const HEADER_VALUE_BAD_RE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export function signatureOf(secret: string, body: Buffer): string {
  return `sha256=${createHmac('sha256', Buffer.from(secret, 'utf8')).update(body).digest('hex')}`;
}

// span ids from a pooled random buffer: one CSPRNG call per 512 deliveries
let spanPool = Buffer.alloc(0);
let spanOffset = 0;
function spanId(): string {
  for (;;) {
    if (spanOffset >= spanPool.length) { spanPool = randomBytes(8 * 512); spanOffset = 0; }
    const s = spanPool.toString('hex', spanOffset, spanOffset + 8);
    spanOffset += 8;
    if (s !== '0000000000000000') return s;
  }
}

/** Every header of one delivery (names lower-case). */
export function deliveryHeaders(
  event: Pick<Event, 'event_id' | 'event_type' | 'trace_id' | 'request_id'>, body: Buffer, secret: string,
  custom: Record<string, string>, traceFlags = '01',
): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [name, value] of Object.entries(custom)) {
    const n = name.toLowerCase();
    if (RESERVED_HEADERS.has(n) || n.startsWith('x-cycles-') || !HEADER_NAME_RE.test(name)) continue;
    if (typeof value !== 'string' || HEADER_VALUE_BAD_RE.test(value)) continue;
    h[n] = value;
  }
  h['content-type'] = 'application/json';
  h['user-agent'] = USER_AGENT;
  h['x-cycles-event-id'] = event.event_id;
  h['x-cycles-event-type'] = event.event_type;
  h['x-cycles-signature'] = signatureOf(secret, body);
  // An event without a trace id (written before tracing existed) still gets a valid
  // traceparent: the delivery starts its own trace.
  const trace = event.trace_id && /^[0-9a-f]{32}$/.test(event.trace_id) ? event.trace_id : undefined;
  if (trace) h['x-cycles-trace-id'] = trace;
  const flags = /^[0-9a-f]{2}$/.test(traceFlags) ? traceFlags : '01';
  h.traceparent = `00-${trace ?? randomBytes(16).toString('hex')}-${spanId()}-${flags}`;
  if (event.request_id) h['x-request-id'] = event.request_id;
  return h;
}

const agents = new Map<string, Agent>();

/** A connection pool whose every connection goes to the vetted addresses, whatever DNS
 *  says by then (TLS still verifies the URL's host name: SNI and certificate). */
function agentFor(u: URL, addresses: string[], timeoutMs: number): Agent {
  const key = `${u.protocol}//${u.host}|${addresses.join(',')}|${timeoutMs}`;
  const hit = agents.get(key);
  if (hit) {
    agents.delete(key);
    agents.set(key, hit);
    return hit;
  }
  const family = (a: string) => (a.includes(':') ? 6 : 4);
  const lookup: LookupFunction = (_host, opts, cb) => {
    if (opts && (opts as { all?: boolean }).all) {
      (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, addresses.map((a) => ({ address: a, family: family(a) })));
    } else {
      cb(null, addresses[0], family(addresses[0]));
    }
  };
  const agent = new Agent({
    connect: { lookup, timeout: timeoutMs },
    keepAliveTimeout: 4_000,
    connections: 64,
    pipelining: 1,
    // undici's own header/body timers are its coarse "fast timers" (a ~0.5 s tick: they can
    // fire that much early or late); the request's AbortSignal.timeout is the exact bound,
    // these only back it up
    headersTimeout: timeoutMs + 1000,
    bodyTimeout: timeoutMs + 1000,
  });
  agents.set(key, agent);
  while (agents.size > AGENTS_MAX) {
    const [oldKey, old] = agents.entries().next().value as [string, Agent];
    agents.delete(oldKey);
    void old.close().catch(() => {});
  }
  return agent;
}

export interface SendResult {
  ok: boolean;
  status?: number;
  timeMs: number;
  error?: string;
  /** the request was cut short by the caller (shutdown): not an attempt */
  aborted?: boolean;
}

function errorText(e: unknown): string {
  const err = e as { code?: string; message?: string; name?: string; cause?: { code?: string; message?: string } };
  const code = err?.code ?? err?.cause?.code;
  const msg = err?.message ?? String(e);
  return (code && !msg.includes(code) ? `${code}: ${msg}` : msg).slice(0, ERROR_MESSAGE_MAX);
}

/**
 * One signed POST. Never throws: every failure (URL refused, DNS, connect, timeout, non-2xx)
 * is a result with ok=false and a short error message (no URL, no header values).
 */
export async function sendWebhook(
  target: { url: string; headers: Record<string, string> }, body: Buffer, headers: Record<string, string>,
  cfg: EffectiveSecurityConfig, timeoutMs: number, stop?: AbortSignal,
): Promise<SendResult> {
  const t0 = performance.now();
  const elapsed = () => Math.max(0, Math.round(performance.now() - t0));
  let vetted: { url: URL; addresses: string[] };
  try {
    vetted = await checkWebhookUrl(target.url, cfg);
  } catch (e) {
    return { ok: false, timeMs: elapsed(), error: e instanceof ApiError ? e.message : errorText(e) };
  }
  const signal = stop ? AbortSignal.any([stop, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
  try {
    const res = await request(vetted.url, {
      method: 'POST', headers, body, signal,
      dispatcher: agentFor(vetted.url, vetted.addresses, timeoutMs),
    });
    const timeMs = elapsed();
    await res.body.dump({ limit: RESPONSE_READ_MAX }).catch(() => {});
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    return ok ? { ok, status: res.statusCode, timeMs } : { ok, status: res.statusCode, timeMs, error: `HTTP ${res.statusCode}` };
  } catch (e) {
    if (stop?.aborted) return { ok: false, timeMs: elapsed(), aborted: true };
    const timedOut = signal.aborted || (e as { name?: string })?.name === 'TimeoutError'
      || ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'].includes((e as { code?: string })?.code ?? '');
    return { ok: false, timeMs: elapsed(), error: timedOut ? `timed out after ${timeoutMs} ms` : errorText(e) };
  }
}

// ------------------------------------------------------------------ the worker
interface FinishReply { state: string; sub_status: string; attempts?: number; next_retry_ms?: number; disabled?: boolean }

interface QueueWork { owner: string; lost: boolean; done: Promise<void> }

interface CachedEvent { event: Event; body: Buffer; traceFlags?: string }

export interface DispatcherStats { sent: number; succeeded: number; failed: number; skipped: number; claims: number }

export interface WebhookDispatcher {
  stop(): Promise<void>;
  /** claim now instead of at the next poll */
  wake(): void;
  /** counters of this process (tests, diagnostics) */
  stats: DispatcherStats;
}

export function startWebhookDispatcher(deps: Deps): WebhookDispatcher {
  const { redis, config, log } = deps;
  configureFanout(redis, config);
  const token = randomBytes(12).toString('hex');
  const perSub = config.webhookSubscriptionConcurrency;
  const maxQueues = Math.max(1, Math.floor(config.webhookConcurrency / perSub));
  const leaseMs = config.webhookLeaseMs;
  const stopCtl = new AbortController();
  const active = new Map<string, QueueWork>();
  const stats: DispatcherStats = { sent: 0, succeeded: 0, failed: 0, skipped: 0, claims: 0 };
  const scripts = {
    claim: loadScript('whd_claim'), renew: loadScript('whd_renew'),
    release: loadScript('whd_release'), finish: loadScript('whd_finish'), owners: loadScript('whd_owners'),
  };
  const ownerKeys = [keys.webhookDueOwners(), keys.webhookDueOwnersGen()];
  let stopped = false;
  // The claim loop sleeps until the poll interval ends or someone wakes it (fan-out queued
  // work, a queue was let go, stop); a wake while it is not sleeping ends the next sleep at once.
  let wakeUp: (() => void) | undefined;
  let wokenEarly = false;
  const wake = () => { if (wakeUp) wakeUp(); else wokenEarly = true; };
  const idle = (ms: number) => new Promise<void>((resolve) => {
    if (wokenEarly || stopped) { wokenEarly = false; resolve(); return; }
    const done = () => { clearTimeout(t); wakeUp = undefined; resolve(); };
    const t = setTimeout(done, ms);
    wakeUp = done;
  });
  const unsubscribe = onEnqueued(redis, wake);
  const eventCache = new Map<string, CachedEvent>();
  const cacheEvent = (event: Event, traceFlags?: string): CachedEvent => {
    const c: CachedEvent = { event, body: Buffer.from(stringify(event), 'utf8'), traceFlags };
    eventCache.set(event.event_id, c);
    if (eventCache.size > EVENT_CACHE_MAX) eventCache.delete(eventCache.keys().next().value as string);
    return c;
  };

  /** `rp`: the row's replay id as read before the attempt ('' none), so the script can
   *  declare that replay's counter among its KEYS (DK13). */
  const finish = async (sub: { id: string; owner: string }, member: string, outcome: 'ok' | 'fail' | 'skip',
    r: { status?: number; timeMs?: number; error?: string }, ev: { trace_id?: string; request_id?: string }, rp = ''): Promise<FinishReply> => {
    const id = deliveryIdOfMember(member);
    const raw = await runScript(redis, scripts.finish,
      [keys.webhookDelivery(sub.owner, id), keys.webhookDue(sub.owner, sub.id), keys.webhookLease(sub.owner, sub.id),
        keys.webhook(sub.owner, sub.id), keys.outbox(sub.owner), keys.webhookReplayLock(sub.owner, sub.id),
        keys.webhookReplayLeft(sub.owner, rp)],
      [token, outcome, r.status ?? '', r.timeMs ?? '', (r.error ?? '').slice(0, ERROR_MESSAGE_MAX), member,
        rp, '',
        JSON.stringify({ trace_id: ev.trace_id ?? '', request_id: ev.request_id ?? '' }), sub.id, sub.owner]);
    const reply = JSON.parse(String(raw)) as FinishReply;
    // the one cross-tenant key of an auto-disable, outside the owner's slot (DK13); the
    // fan-out table that lags without it is only a hint (whd_enqueue.lua re-reads the status)
    if (reply.disabled) await redis.incr(keys.webhooksVersion());
    countWebhookDelivery(outcome, reply.state);
    if (outcome === 'skip') stats.skipped++;
    else if (reply.state === 'SUCCESS') stats.succeeded++;
    else if (reply.state === 'RETRYING' || reply.state === 'FAILED') stats.failed++;
    return reply;
  };

  /** Works through one claimed queue: `members` in queue order. */
  const workQueue = async (subId: string, members: string[], cfg: EffectiveSecurityConfig, work: QueueWork): Promise<void> => {
    const owner = work.owner;
    if (ownerOf(subId) !== owner) {
      // not one of our ids (never minted by subscriptions.ts), or not this owner's: nothing
      // can be delivered
      log.error({ subscription_id: subId }, 'webhook dispatch: dropping the queue of an unparsable subscription id');
      await redis.del(keys.webhookDue(owner, subId));
      return;
    }
    const ref = { id: subId, owner };
    const table = await subscriptionTable(redis);
    let sub: DispatchSubscription | undefined = table.byId.get(subId);
    const recStatus = await redis.hget(keys.webhook(owner, subId), 'status');
    if (recStatus === 'ACTIVE' && !sub) sub = await loadDispatchSubscription(redis, subId, config);
    if (recStatus !== 'ACTIVE' || !sub || sub.status !== 'ACTIVE') {
      // Deleted: every queued delivery ends FAILED now (not only the due ones);
      // PAUSED / DISABLED: the due ones (later ones when they come due).
      const gone = recStatus === null || (recStatus === 'ACTIVE' && !sub);
      const list = gone ? await redis.zrange(keys.webhookDue(owner, subId), 0, QUEUE_BATCH - 1) : members;
      const reason = gone ? 'subscription deleted' : `subscription is ${recStatus}`;
      // each row's replay id, so a skipped replay delivery still counts down its replay
      const rps = await Promise.all(list.map((m) => redis.hget(keys.webhookDelivery(owner, deliveryIdOfMember(m)), 'rp')));
      for (const [j, m] of list.entries()) {
        if (work.lost) return;
        const r = await finish(ref, m, 'skip', { error: `not sent: ${reason}` }, {}, rps[j] ?? '');
        if (r.state === 'stale') { work.lost = true; return; }
      }
      return;
    }

    // rows, then the events they point at (two pipelined round trips; events another
    // subscription's queue just rendered come from the cache)
    const rowsRes = (await redis.pipeline(members.map((m) => ['hgetall', keys.webhookDelivery(owner, deliveryIdOfMember(m))])).exec()) ?? [];
    const rows = rowsRes.map(([err, h]) => (err ? undefined : (h as Record<string, string>)));
    const locs = rows.map((h) => (h && h.event_id ? parseEventId(h.event_id) : undefined));
    const bodies: (CachedEvent | undefined)[] = rows.map((h) => (h?.event_id ? eventCache.get(h.event_id) : undefined));
    const misses = locs.map((l, i) => (l && !bodies[i] ? i : -1)).filter((i) => i >= 0);
    if (misses.length > 0) {
      const evRes = (await redis.pipeline(misses.map((i) => ['xrange', keys.outbox(locs[i]!.tenant), locs[i]!.streamId, locs[i]!.streamId])).exec()) ?? [];
      misses.forEach((i, j) => {
        const entries = evRes[j]?.[1] as [string, string[]][] | undefined;
        if (!entries || entries.length === 0) return;
        const fields = fieldsOf(entries[0][1]);
        const event = renderEvent(locs[i]!.tenant, locs[i]!.streamId, fields);
        bodies[i] = cacheEvent(event, fields.trace_flags);
      });
    }

    let halt: string | undefined;
    let next = 0;
    // Successful attempts are recorded in order on one connection without waiting for each
    // reply (a round trip per delivery would bound a subscription to 1/RTT); at most
    // FINISH_WINDOW replies are outstanding, and the status each reply carries stops the
    // queue: after a pause or delete at most that many more are sent. After a FAILED
    // attempt the queue waits for every reply (the auto-disable decision) before going on.
    const outstanding: Promise<void>[] = [];
    const onReply = (reply: FinishReply) => {
      if (reply.state === 'stale') { work.lost = true; halt = 'lost'; return; }
      if (reply.sub_status !== 'ACTIVE' && halt === undefined) halt = reply.sub_status === 'DELETED' ? 'subscription deleted' : `subscription is ${reply.sub_status}`;
    };
    const record = async (p: Promise<FinishReply>) => {
      // a failed write (Redis down) stops the queue; its entries stay queued and are taken
      // again (the attempt may then be repeated: at-least-once)
      outstanding.push(p.then(onReply, (err: unknown) => {
        if (halt !== 'lost') log.error({ err, subscription_id: subId }, 'webhook dispatch: recording an attempt failed');
        halt = 'lost';
      }));
      while (outstanding.length >= FINISH_WINDOW) await outstanding.shift();
    };
    const one = async (i: number): Promise<void> => {
      const member = members[i];
      const row = rows[i];
      const rp = row?.rp ?? '';
      if (halt !== undefined) {
        if (halt !== 'lost') await record(finish(ref, member, 'skip', { error: `not sent: ${halt}` }, {}, rp));
        return;
      }
      if (!row || Object.keys(row).length === 0 || row.status === 'SUCCESS' || row.status === 'FAILED') {
        // expired or already final: the script only tidies the queue
        await record(finish(ref, member, 'skip', { error: 'not sent: delivery row expired' }, {}, rp));
        return;
      }
      const cached = bodies[i];
      if (!cached) {
        await record(finish(ref, member, 'skip', { error: `not sent: event ${row.event_id ?? '?'} is no longer stored (retention)` }, { trace_id: row.trace_id }, rp));
        return;
      }
      const { event, body } = cached;
      const ev = { trace_id: event.trace_id, request_id: event.request_id };
      let result: SendResult;
      if (sub!.secret_error) {
        result = { ok: false, timeMs: 0, error: 'the stored signing secret cannot be decrypted (CYCLES_WEBHOOK_SECRET_KEY?)' };
        log.error({ subscription_id: subId }, sub!.secret_error);
      } else {
        const headers = deliveryHeaders(event, body, sub!.signing_secret, sub!.headers, row.trace_flags || cached.traceFlags || '01');
        stats.sent++;
        result = await sendWebhook(sub!, body, headers, cfg, config.webhookTimeoutMs, stopCtl.signal);
      }
      if (result.aborted) { halt = 'lost'; return; } // shutdown: not an attempt; re-sent later
      if (work.lost) { halt = 'lost'; return; }
      await record(finish(ref, member, result.ok ? 'ok' : 'fail', { status: result.status, timeMs: result.timeMs, error: result.error }, ev, rp));
      // a failure may be the one that disables the subscription: nothing more is sent
      // before its reply is in
      if (!result.ok) await Promise.all(outstanding.splice(0));
    };
    // in queue order; up to perSub at once
    const lanes = Array.from({ length: Math.min(perSub, members.length) }, async () => {
      while (next < members.length) {
        if (work.lost || stopped) { halt ??= 'lost'; }
        const i = next++;
        if (halt === 'lost') return;
        await one(i);
      }
    });
    await Promise.all(lanes);
    await Promise.all(outstanding);
  };

  /** Claims up to `free` queues: owners with due work from the cross-slot index, then each
   *  owner's own scheduler (its slot); the owner's index entry is settled to its real next
   *  time unless an enqueue marked it meanwhile (DK14). */
  const claimRound = async (free: number): Promise<number> => {
    const flat = (await runScript(redis, scripts.owners, ownerKeys, ['due', Math.min(OWNERS_PER_ROUND, free * 4 + 16)])) as string[];
    if (flat.length === 0) return 0;
    let cfg: EffectiveSecurityConfig | undefined;
    let total = 0;
    const settles: Promise<unknown>[] = [];
    for (let i = 0; i < flat.length && total < free; i += 2) {
      const owner = flat[i];
      const gen = flat[i + 1];
      // the owner's lowest-scored subscriptions first, so the claim can declare their keys
      const cands = await redis.zrange(keys.webhookDueSubs(owner), 0, (free - total) * 4 + 15);
      const candKeys = cands.flatMap((sub) => [keys.webhookDue(owner, sub), keys.webhookLease(owner, sub)]);
      const [claimed, nextMs] = (await runScript(redis, scripts.claim, [keys.webhookDueSubs(owner), ...candKeys],
        [token, leaseMs, free - total, QUEUE_BATCH, ...cands])) as [[string, string[]][], string];
      // settled while the claimed queues already start (a failed settle only leaves the
      // owner's entry low: one more look later)
      settles.push(runScript(redis, scripts.owners, ownerKeys, ['settle', owner, gen, nextMs])
        .catch((err: unknown) => { log.warn({ err, owner }, 'webhook dispatch: settling the due index failed'); }));
      if (claimed.length === 0) continue;
      total += claimed.length;
      stats.claims += claimed.length;
      cfg ??= await loadCfg();
      for (const [subId, members] of claimed) startQueue(owner, subId, members, cfg);
    }
    await Promise.all(settles);
    return total;
  };

  const loadCfg = async (): Promise<EffectiveSecurityConfig> => {
    try {
      return await loadWebhookSecurityConfig(redis);
    } catch (e) {
      // unreadable config: refuse every URL (fail closed) rather than loosen the check
      log.error({ err: e }, 'webhook dispatch: security config unreadable; every attempt fails');
      return { blocked_cidr_ranges: ['0.0.0.0/0', '::/0'], allowed_url_patterns: [], allow_http: false };
    }
  };

  /** Works a claimed queue batch by batch: after each batch whd_release.lua either hands
   *  back the next due batch under the renewed lease (at most QUEUE_BATCHES_PER_CLAIM in a
   *  row, so other worker processes get their turn, and only while this process has a free
   *  queue slot, so no other queue waits for this one here) or lets the queue go. */
  const startQueue = (owner: string, subId: string, first: string[], firstCfg: EffectiveSecurityConfig) => {
    const work: QueueWork = { owner, lost: false, done: Promise.resolve() };
    active.set(subId, work);
    work.done = (async () => {
      let members = first;
      let cfg = firstCfg;
      let batches = 0;
      for (;;) {
        await workQueue(subId, members, cfg, work)
          .catch((err: unknown) => { log.error({ err, subscription_id: subId }, 'webhook dispatch: queue failed'); });
        if (work.lost) return;
        // only a full batch (a backlog) goes on: a queue that keeps up is let go each time,
        // so several worker processes keep sharing the queues
        const more = !stopped && members.length >= QUEUE_BATCH && ++batches < QUEUE_BATCHES_PER_CLAIM
          && active.size < maxQueues ? QUEUE_BATCH : 0;
        let reply: unknown;
        try {
          // the security config is read again for every batch, as for every claim
          const [r, c] = await Promise.all([
            runScript(redis, scripts.release, [keys.webhookDueSubs(owner), keys.webhookDue(owner, subId), keys.webhookLease(owner, subId)],
              [token, subId, more, leaseMs]),
            more > 0 ? loadCfg() : Promise.resolve(cfg),
          ]);
          reply = r;
          cfg = c;
        } catch (err) {
          log.warn({ err, subscription_id: subId }, 'webhook dispatch: release failed (the lease will lapse)');
          return;
        }
        if (!Array.isArray(reply)) return; // someone else's queue now
        const [state, value] = reply as [string, string[] | string];
        if (state === 'next') { members = value as string[]; stats.claims++; continue; }
        if (typeof value === 'string' && value !== '') {
          await markOwnerDue(redis, owner, value).catch((err: unknown) => {
            log.warn({ err, owner }, 'webhook dispatch: marking the due index failed (the repair sweep will)');
          });
        }
        return;
      }
    })().finally(() => { active.delete(subId); wake(); });
  };

  /** Re-marks every owner whose own scheduler holds work: repairs a crash between a
   *  delivery script and its index write (DK14), and a lost index after a failover. The
   *  owners looked at: those of every subscription (registry) and every owner the index
   *  ever knew (its generation hash) — not every tenant. */
  const repairSweep = async () => {
    const owners = new Set<string>();
    let cursor = '0';
    do {
      const [next, flat] = await redis.zscan(keys.webhooksAll(), cursor, 'COUNT', REPAIR_BATCH);
      cursor = next;
      for (let i = 0; i < flat.length; i += 2) { const o = ownerOf(flat[i]); if (o !== undefined) owners.add(o); }
    } while (cursor !== '0' && !stopped);
    do {
      const [next, flat] = await redis.hscan(keys.webhookDueOwnersGen(), cursor, 'COUNT', REPAIR_BATCH);
      cursor = next;
      for (let i = 0; i < flat.length; i += 2) owners.add(flat[i]);
    } while (cursor !== '0' && !stopped);
    const list = [...owners];
    for (let i = 0; i < list.length && !stopped; i += REPAIR_BATCH) {
      const part = list.slice(i, i + REPAIR_BATCH);
      const heads = await Promise.all(part.map((o) => redis.zrange(keys.webhookDueSubs(o), 0, 0, 'WITHSCORES')));
      await Promise.all(part.map((o, j) => (heads[j].length === 2 ? markOwnerDue(redis, o, heads[j][1]) : undefined)));
    }
  };

  const loop = (async () => {
    // the pre-DK13 layout's queued deliveries move into their owners' slots first (once per
    // Redis; a no-op afterwards), then every owner with work is marked
    try {
      await migrateLegacyDeliveries(redis, log);
      await repairSweep();
    } catch (err) {
      log.error({ err }, 'webhook dispatch: start-up sweep failed (retried every 30 s)');
    }
    while (!stopped) {
      const free = maxQueues - active.size;
      let claimed = 0;
      if (free > 0) {
        try {
          claimed = await claimRound(free);
        } catch (err) {
          log.error({ err }, 'webhook dispatch: claim failed');
          await idle(CLAIM_ERROR_BACKOFF_MS);
          continue;
        }
      }
      if (stopped) break;
      if (free <= 0 || claimed < free) await idle(config.webhookPollMs);
    }
  })();

  const heartbeat = setInterval(() => {
    if (active.size === 0) return;
    // the work objects as they are now: a queue released and claimed again while the renewal
    // is under way is new work, and a "lost" answer about the old lease is not about it
    const snapshot = new Map(active);
    const byOwner = new Map<string, string[]>();
    for (const [subId, w] of snapshot) {
      let l = byOwner.get(w.owner);
      if (!l) byOwner.set(w.owner, (l = []));
      l.push(subId);
    }
    for (const [owner, subIds] of byOwner) {
      runScript(redis, scripts.renew, [keys.webhookDueSubs(owner), ...subIds.map((sub) => keys.webhookLease(owner, sub))], [token, leaseMs, ...subIds])
        .then((lost) => {
          for (const s of lost as string[]) {
            const w = snapshot.get(s);
            if (!w || active.get(s) !== w) continue;
            w.lost = true;
            log.warn({ subscription_id: s }, 'webhook dispatch: lease lost; another worker owns the queue now');
          }
        })
        .catch((err: unknown) => { log.warn({ err }, 'webhook dispatch: lease renewal failed'); });
    }
  }, Math.max(100, Math.floor(leaseMs / 3)));
  heartbeat.unref();
  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping || stopped) return;
    sweeping = true;
    repairSweep()
      .catch((err: unknown) => { log.warn({ err }, 'webhook dispatch: repair sweep failed'); })
      .finally(() => { sweeping = false; });
  }, REPAIR_SWEEP_MS);
  sweeper.unref();

  return {
    stats,
    wake,
    async stop() {
      if (stopped) return;
      stopped = true;
      unsubscribe();
      stopCtl.abort();
      wake();
      await loop;
      await Promise.all([...active.values()].map((w) => w.done));
      clearInterval(heartbeat);
      clearInterval(sweeper);
    },
  };
}
