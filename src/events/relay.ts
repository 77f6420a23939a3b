// Event relay: the worker that turns every tenant's outbox into (1) the event indexes that
// listEvents reads and (2) calls of the registered hooks (webhook fan-out), at least once,
// in stream order per tenant, safe with any number of worker processes.
//
// Per tenant outbox (relay_claim.lua / relay_ack.lua, one Cluster slot each):
//   claim  — under a per-tenant lease: entries still pending in group `relay` first
//            (XAUTOCLAIM: a crashed or failed holder's batch), else XREADGROUP `>`;
//   relay  — render (renderEvent), write the indexes, run the hooks in registration order;
//   ack    — XACK and release the lease. A hook that throws leaves the batch pending: the
//            next claim re-relays it (after a per-tenant backoff), before anything newer.
//
// Which tenants to look at (decision DV4): Redis keyspace notifications for XADD
// (`notify-keyspace-events` gets `E` and `t` added at start) tell every relay process which
// outbox just grew, so a new event is usually relayed within milliseconds and idle tenants
// cost nothing. Notifications are fire-and-forget (lost on reconnect, unavailable where
// CONFIG is disabled), so a full sweep over every tenant (SSCAN keys.tenants() plus
// __system__) runs every CYCLES_EVENT_RELAY_SWEEP_MS as the safety net.
//
// Retention (DV3): every TRIM_INTERVAL_MS one process (lease keys.eventTrimLock()) trims
// each outbox with XTRIM MINID ~ (now − CYCLES_EVENT_RETENTION_DAYS) LIMIT, and the global
// index by score, both bounded per pass; the per-value indexes are trimmed on every write
// and expire with the retention.
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { isCluster, masterNodes, nodeOptions } from '../store/cluster';
import type { Logger } from 'pino';
import type { Deps } from '../http/types';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { fieldsOf, renderEvent, SYSTEM_TENANT, type Event } from './model';
import { trimCutoff } from '../export/hold';

export interface RelayedEvent { tenant: string; streamId: string; event: Event }
export type EventHook = (redis: Redis, batch: RelayedEvent[]) => Promise<void>;

const hooks: { name: string; hook: EventHook }[] = [];

/** Hooks run in registration order for every relayed batch, before the batch is acked;
 *  a hook that throws leaves the batch un-acked and it is relayed again later, so hooks
 *  must be idempotent (at-least-once). Each tenant's batches arrive in stream order. */
export function registerEventHook(name: string, hook: EventHook): void {
  const i = hooks.findIndex((h) => h.name === name);
  if (i >= 0) hooks[i] = { name, hook };
  else hooks.push({ name, hook });
}

/** Registered hooks (the relay and tests). */
export function eventHooks(): readonly { name: string; hook: EventHook }[] {
  return hooks;
}

/** Entries claimed from one outbox per round trip. */
export const RELAY_BATCH = 200;
/** Tenants claimed in one auto-pipelined round. */
const TENANT_CHUNK = 100;
/** Lease on a tenant's outbox while its batch is relayed; a crashed holder's batch is
 *  re-claimed after at most this long. Hooks must finish well within it. */
export const RELAY_LEASE_MS = 30_000;
/** A batch whose hooks have not settled by then counts as failed (relayed again later). */
const HOOK_TIMEOUT_MS = 20_000;
/** Retry of a tenant whose lease another process holds (it may miss the newest entry). */
const LOCKED_RETRY_MS = 50;
const LOCKED_RETRY_MAX_MS = 1000;
/** Backoff after a failed batch: doubles from MIN to MAX per consecutive failure. */
const FAIL_BACKOFF_MIN_MS = 200;
const FAIL_BACKOFF_MAX_MS = 30_000;
/** Retention trim cadence and per-pass bounds. */
export const TRIM_INTERVAL_MS = 60_000;
const TRIM_XTRIM_LIMIT = 10_000;
const TRIM_INDEX_BATCH = 10_000;
const TRIM_INDEX_ROUNDS = 20;
/** Full sweep interval floor while keyspace notifications are active. */
const NOTIFIED_SWEEP_MIN_MS = 10_000;
/** How often the notification setting is re-checked (a restarted Redis forgets CONFIG SET). */
const NOTIFY_RECHECK_MS = 30_000;
/** Per-value index members are the raw id up to this length, else h:<sha256>. */
const INDEX_VALUE_MAX = 128;

const DAY_MS = 86_400_000;

/** Member key of a per-value index (correlation / trace / request id). */
export function indexValue(v: string): string {
  return v.length <= INDEX_VALUE_MAX && !v.startsWith('h:') ? v : `h:${createHash('sha256').update(v).digest('hex')}`;
}

/** `{t:<tenant>}:outbox` → tenant (keyspace notification payloads). */
export function tenantOfOutboxKey(key: string): string | undefined {
  const m = /^\{t:(.*)\}:outbox$/s.exec(key);
  return m ? m[1] : undefined;
}

export interface RelayOptions {
  /** lease on a tenant outbox (tests shorten it to exercise crash recovery) */
  leaseMs?: number;
  /** full sweep interval (default config.eventRelaySweepMs) */
  sweepMs?: number;
  /** false: no keyspace notifications (sweep only) */
  notifications?: boolean;
}

export interface RelayStats {
  batches: number;
  events: number;
  failures: number;
  passes: number;
  /** keyspace notifications are active for this relay */
  notifying: boolean;
}

export interface EventRelay {
  stop(): Promise<void>;
  /** marks tenants for an immediate pass (tests; callers that know an outbox grew) */
  poke(...tenants: string[]): void;
  /** resolves when no tenant is marked and no pass runs */
  idle(): Promise<void>;
  stats: RelayStats;
}

/** Writes the listEvents indexes of one relayed batch (idempotent: ZADD). */
export async function indexBatch(redis: Redis, batch: RelayedEvent[], retentionDays: number, nowMs = Date.now()): Promise<void> {
  if (batch.length === 0) return;
  const retentionMs = retentionDays * DAY_MS;
  const cutoff = nowMs - retentionMs;
  const p = redis.pipeline();
  const byValue = new Map<string, [number, string][]>();
  for (const { event } of batch) {
    const ms = Date.parse(event.timestamp);
    const score = Number.isFinite(ms) ? ms : 0;
    p.zadd(keys.eventIndex(), score, event.event_id);
    const add = (kind: 'corr' | 'trace' | 'req', v: string | undefined) => {
      if (!v) return;
      const k = keys.eventIndexBy(kind, indexValue(v));
      let l = byValue.get(k);
      if (!l) byValue.set(k, (l = []));
      l.push([score, event.event_id]);
    };
    add('corr', event.correlation_id);
    add('trace', event.trace_id);
    add('req', event.request_id);
  }
  for (const [k, members] of byValue) {
    p.zadd(k, ...members.flatMap(([s, id]) => [s, id]));
    p.zremrangebyscore(k, '-inf', `(${cutoff}`);
    p.pexpire(k, retentionMs);
  }
  const res = (await p.exec()) ?? [];
  for (const [err] of res) if (err) throw err;
}

/** One bounded retention pass (any process; the caller holds the trim lease or is a test).
 *  `cutoffMs` overrides now − retention (the export job's hold, src/export/hold.ts). */
export async function trimOnce(redis: Redis, retentionDays: number, nowMs = Date.now(), cutoffMs?: number): Promise<{ tenants: number; indexRemoved: number }> {
  const cutoff = cutoffMs ?? nowMs - retentionDays * DAY_MS;
  let tenants = 0;
  const trimTenants = async (list: string[]) => {
    await Promise.all(list.map((t) => redis.xtrim(keys.outbox(t), 'MINID', '~', String(cutoff), 'LIMIT', TRIM_XTRIM_LIMIT)));
    tenants += list.length;
  };
  await trimTenants([SYSTEM_TENANT]);
  let cursor = '0';
  do {
    const [next, list] = await redis.sscan(keys.tenants(), cursor, 'COUNT', 500);
    cursor = next;
    if (list.length) await trimTenants(list);
  } while (cursor !== '0');

  // Global index: whole rank batches while the batch's last member is older than the
  // cutoff, then the (smaller than a batch) remainder by score.
  let indexRemoved = 0;
  for (let round = 0; round < TRIM_INDEX_ROUNDS; round++) {
    const last = await redis.zrange(keys.eventIndex(), TRIM_INDEX_BATCH - 1, TRIM_INDEX_BATCH - 1, 'WITHSCORES');
    if (last.length === 2 && Number(last[1]) < cutoff) {
      indexRemoved += await redis.zremrangebyrank(keys.eventIndex(), 0, TRIM_INDEX_BATCH - 1);
      continue;
    }
    indexRemoved += await redis.zremrangebyscore(keys.eventIndex(), '-inf', `(${cutoff}`);
    break;
  }
  return { tenants, indexRemoved };
}

/** Adds `E` and `t` to notify-keyspace-events (keeps what is set). False when CONFIG is
 *  not available (managed Redis): the sweep alone then bounds the relay latency. */
export async function enableXaddNotifications(redis: Redis): Promise<boolean> {
  // On a cluster each master notifies only about its own keys (docs/decisions.md DK4).
  if (isCluster(redis)) {
    const nodes = masterNodes(redis);
    return nodes.length > 0 && (await Promise.all(nodes.map((n) => enableXaddNotifications(n)))).every(Boolean);
  }
  try {
    const got = await redis.config('GET', 'notify-keyspace-events') as string[];
    const cur = String(got?.[1] ?? '');
    const hasT = cur.includes('t') || cur.includes('A');
    if (cur.includes('E') && hasT) return true;
    let next = cur;
    if (!next.includes('E')) next += 'E';
    if (!hasT) next += 't';
    await redis.config('SET', 'notify-keyspace-events', next);
    return true;
  } catch {
    return false;
  }
}

/**
 * Subscribes to XADD keyspace notifications on a dedicated connection (the event relay and
 * the evidence worker both wake per tenant this way). `onKey` gets every XADDed key; on
 * every (re)connect notifications are re-enabled (a restarted Redis has forgotten CONFIG
 * SET) and `onReady` runs so the caller sweeps for what was written while it was down;
 * `onNotifying` reports whether notifications are on. Returns the subscriber (disconnect
 * it on stop).
 */
export function watchXadds(redis: Redis, log: Logger, o: {
  label: string;
  onKey: (key: string) => void;
  onReady: () => void;
  onNotifying: (on: boolean) => void;
  stopped: () => boolean;
  /** warned once when CONFIG cannot enable notifications at start */
  unavailableWarning?: string;
}): { disconnect(): void } {
  if (isCluster(redis)) return watchXaddsCluster(redis, log, o);
  const sub = redis.duplicate({ enableAutoPipelining: false, lazyConnect: true });
  sub.on('error', (err: Error) => log.debug({ err }, `${o.label} notification connection error`));
  sub.on('message', (_ch: string, key: string) => o.onKey(key));
  sub.on('ready', () => {
    enableXaddNotifications(redis).then(o.onNotifying, () => undefined);
    o.onReady();
  });
  (async () => {
    const on = await enableXaddNotifications(redis);
    o.onNotifying(on);
    // subscribe anyway when off: an operator may have set notify-keyspace-events where
    // CONFIG is disabled (managed Redis); the caller's sweep keeps its full rate then
    if (!on && o.unavailableWarning) log.warn(o.unavailableWarning);
    if (o.stopped()) return;
    await sub.connect();
    if (o.stopped()) { sub.disconnect(); return; }
    const db = Number((redis.options as { db?: number }).db ?? 0);
    await sub.subscribe(`__keyevent@${db}__:xadd`);
  })().catch((err: unknown) => {
    o.onNotifying(false);
    if (!o.stopped()) log.warn({ err }, `${o.label}: keyspace notifications unavailable; relying on the sweep`);
  });
  return sub;
}

/** watchXadds on a cluster: one subscriber per master (keyspace notifications are
 *  node-local), re-opened whenever the master set changes (failover, resharding), with a
 *  sweep (onReady) after each change since a new master's events were not watched. */
function watchXaddsCluster(redis: Redis, log: Logger, o: Parameters<typeof watchXadds>[2]): { disconnect(): void } {
  let subs: Redis[] = [];
  let timer: NodeJS.Timeout | undefined;
  let warned = false;
  const open = async () => {
    const old = subs;
    subs = [];
    for (const s of old) s.disconnect();
    if (o.stopped()) return;
    const on = await enableXaddNotifications(redis);
    o.onNotifying(on);
    if (!on && o.unavailableWarning && !warned) { warned = true; log.warn(o.unavailableWarning); }
    const next = masterNodes(redis).map((node) => {
      const sub = new Redis(nodeOptions(node, { enableAutoPipelining: false, lazyConnect: true }));
      sub.on('error', (err: Error) => log.debug({ err }, `${o.label} notification connection error`));
      sub.on('message', (_ch: string, key: string) => o.onKey(key));
      sub.on('ready', () => o.onReady());
      return sub;
    });
    subs = next;
    await Promise.all(next.map(async (sub) => { await sub.connect(); await sub.subscribe('__keyevent@0__:xadd'); }));
    o.onReady();
  };
  const reopen = () => {
    if (timer || o.stopped()) return;
    timer = setTimeout(() => {
      timer = undefined;
      open().catch((err: unknown) => { o.onNotifying(false); if (!o.stopped()) log.warn({ err }, `${o.label}: keyspace notifications unavailable on a master; relying on the sweep`); });
    }, 250);
    timer.unref();
  };
  const emitter = redis as unknown as NodeJS.EventEmitter;
  emitter.on('+node', reopen);
  emitter.on('-node', reopen);
  open().catch((err: unknown) => {
    o.onNotifying(false);
    if (!o.stopped()) log.warn({ err }, `${o.label}: keyspace notifications unavailable; relying on the sweep`);
  });
  return {
    disconnect() {
      emitter.off('+node', reopen);
      emitter.off('-node', reopen);
      clearTimeout(timer);
      for (const s of subs) s.disconnect();
      subs = [];
    },
  };
}

type ClaimReply = ['locked'] | ['empty'] | ['batch', [string, string[]][], number];

/** Starts the relay. Safe in several processes at once (per-tenant lease). */
export function startEventRelay(deps: Deps, opts: RelayOptions = {}): EventRelay {
  const { redis, log, config } = deps;
  const leaseMs = opts.leaseMs ?? RELAY_LEASE_MS;
  const sweepMs = opts.sweepMs ?? config.eventRelaySweepMs;
  const token = `${process.pid}:${randomBytes(8).toString('hex')}`;
  const claimScript = loadScript('relay_claim');
  const ackScript = loadScript('relay_ack');
  const stats: RelayStats = { batches: 0, events: 0, failures: 0, passes: 0, notifying: false };

  let stopped = false;
  const dirty = new Set<string>();
  const failCount = new Map<string, number>();
  const lockedCount = new Map<string, number>();
  const notBefore = new Map<string, number>();
  let running: Promise<void> | undefined;
  let kickScheduled = false;
  const timers = new Set<NodeJS.Timeout>();
  let idleWaiters: (() => void)[] = [];

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  };

  const kick = () => {
    if (stopped || kickScheduled) return;
    kickScheduled = true;
    setImmediate(() => {
      kickScheduled = false;
      if (stopped || running) return;
      running = pass().catch((err: unknown) => log.error({ err }, 'event relay pass failed')).finally(() => {
        running = undefined;
        if (dirty.size && !stopped) kick();
        else if (!dirty.size) { const w = idleWaiters; idleWaiters = []; for (const f of w) f(); }
      });
    });
  };

  const mark = (t: string) => { dirty.add(t); kick(); };

  const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T> => new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`hooks did not settle within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
  });

  /** Relays one claimed batch; returns whether it was acknowledged. */
  const relayBatch = async (tenant: string, entries: [string, string[]][], more: boolean): Promise<boolean> => {
    const batch: RelayedEvent[] = [];
    for (const [streamId, flat] of entries) {
      const f = fieldsOf(flat ?? []);
      if (!f.type) continue; // not an event entry (never written by us): acked, skipped
      batch.push({ tenant, streamId, event: renderEvent(tenant, streamId, f) });
    }
    const ids = entries.map(([id]) => id);
    try {
      await indexBatch(redis, batch, config.eventRetentionDays);
      if (batch.length) {
        await withTimeout((async () => {
          for (const { name, hook } of hooks) {
            try { await hook(redis, batch); } catch (err) { throw Object.assign(new Error(`event hook ${name} failed`), { cause: err }); }
          }
        })(), HOOK_TIMEOUT_MS);
      }
    } catch (err) {
      stats.failures++;
      const n = (failCount.get(tenant) ?? 0) + 1;
      failCount.set(tenant, n);
      const wait = Math.min(FAIL_BACKOFF_MAX_MS, FAIL_BACKOFF_MIN_MS * 2 ** Math.min(n - 1, 16));
      notBefore.set(tenant, Date.now() + wait);
      log.error({ err, tenant, first: ids[0], events: ids.length, attempt: n, retry_in_ms: wait }, 'event relay: batch not acknowledged, will retry');
      await runScript(redis, ackScript, [keys.outbox(tenant), keys.outboxRelayLock(tenant)], [token, '1', leaseMs]).catch(() => undefined);
      later(wait, () => mark(tenant));
      return false;
    }
    failCount.delete(tenant);
    await runScript(redis, ackScript, [keys.outbox(tenant), keys.outboxRelayLock(tenant)], [token, more ? '0' : '1', leaseMs, ...ids]);
    stats.batches++;
    stats.events += batch.length;
    // a full or re-claimed batch may have entries behind it: keep the lease, go again
    if (more) dirty.add(tenant);
    return true;
  };

  const relayTenants = async (tenants: string[]) => {
    const now = Date.now();
    // a tenant backing off after a failure is skipped: its timer marks it again
    const due = tenants.filter((t) => (notBefore.get(t) ?? 0) <= now);
    const replies = await Promise.all(due.map((t) =>
      runScript(redis, claimScript, [keys.outbox(t), keys.outboxRelayLock(t)], [token, leaseMs, RELAY_BATCH])
        .then((r) => ({ t, r: r as ClaimReply }), (err: unknown) => ({ t, err }))));
    await Promise.all(replies.map(async (x) => {
      if ('err' in x) {
        log.error({ err: x.err, tenant: x.t }, 'event relay: claim failed');
        later(FAIL_BACKOFF_MIN_MS, () => mark(x.t));
        return;
      }
      const r = x.r;
      if (r[0] === 'locked') {
        // another process is relaying this tenant; look again (it may have missed the
        // newest entry), backing off while a crashed holder's lease runs out
        const n = (lockedCount.get(x.t) ?? 0) + 1;
        lockedCount.set(x.t, n);
        later(Math.min(LOCKED_RETRY_MAX_MS, LOCKED_RETRY_MS * 2 ** Math.min(n - 1, 10)), () => mark(x.t));
        return;
      }
      lockedCount.delete(x.t);
      if (r[0] === 'batch') await relayBatch(x.t, r[1], r[2] === 1);
    }));
  };

  const pass = async () => {
    stats.passes++;
    while (dirty.size && !stopped) {
      const list = [...dirty].slice(0, TENANT_CHUNK);
      for (const t of list) dirty.delete(t);
      await relayTenants(list);
    }
  };

  // --- full sweep (safety net) ---
  let lastNotifyCheck = 0;
  const sweep = async () => {
    if (notifySub && Date.now() - lastNotifyCheck > NOTIFY_RECHECK_MS) {
      lastNotifyCheck = Date.now();
      stats.notifying = await enableXaddNotifications(redis);
    }
    dirty.add(SYSTEM_TENANT);
    let cursor = '0';
    do {
      const [next, list] = await redis.sscan(keys.tenants(), cursor, 'COUNT', 500);
      cursor = next;
      for (const t of list) dirty.add(t);
      kick();
      // let the pass drain this chunk before adding the next (bounded memory)
      if (dirty.size > 5000) await idle();
    } while (cursor !== '0' && !stopped);
  };
  let sweeping = false;
  const sweepNow = () => {
    if (stopped || sweeping) return;
    sweeping = true;
    sweep().catch((err: unknown) => log.error({ err }, 'event relay sweep failed')).finally(() => { sweeping = false; });
  };
  const sweepLoop = () => {
    if (stopped) return;
    sweepNow();
    // with notifications the sweep only catches what a dropped subscription missed (a
    // reconnect sweeps at once), so it can be rarer; without them it is the relay's clock
    later(stats.notifying && opts.sweepMs === undefined ? Math.max(sweepMs, NOTIFIED_SWEEP_MIN_MS) : sweepMs, sweepLoop);
  };

  // --- retention ---
  const trimLoop = () => {
    if (stopped) return;
    (async () => {
      const got = await redis.set(keys.eventTrimLock(), token, 'PX', TRIM_INTERVAL_MS - 1000, 'NX');
      if (got !== 'OK') return;
      // while the export job holds records (CYCLES_EXPORT_DIR), never past its watermark
      const now = Date.now();
      const cutoff = await trimCutoff(redis, config, 'events', now - config.eventRetentionDays * DAY_MS);
      if (cutoff === undefined) return;
      const r = await trimOnce(redis, config.eventRetentionDays, now, cutoff);
      if (r.indexRemoved) log.info(r, 'event retention trim');
    })().catch((err: unknown) => log.error({ err }, 'event retention trim failed'))
      .finally(() => later(TRIM_INTERVAL_MS, trimLoop));
  };

  // --- keyspace notifications ---
  const notifySub = opts.notifications === false ? undefined : watchXadds(redis, log, {
    label: 'event relay',
    onKey: (key) => { const t = tenantOfOutboxKey(key); if (t !== undefined) mark(t); },
    onReady: sweepNow,
    onNotifying: (on) => { stats.notifying = on; lastNotifyCheck = Date.now(); },
    stopped: () => stopped,
    unavailableWarning: 'event relay: cannot enable keyspace notifications (CONFIG unavailable); unless notify-keyspace-events includes "Et", new events wait for the sweep (CYCLES_EVENT_RELAY_SWEEP_MS)',
  });

  const idle = () => new Promise<void>((resolve) => {
    if (!running && !dirty.size && !kickScheduled) resolve();
    else idleWaiters.push(resolve);
  });

  later(0, sweepLoop);
  later(1000, trimLoop);

  return {
    stats,
    poke(...tenants: string[]) { for (const t of tenants) mark(t); },
    idle,
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (running) await running;
      const w = idleWaiters; idleWaiters = []; for (const f of w) f();
      if (notifySub) notifySub.disconnect();
    },
  };
}
