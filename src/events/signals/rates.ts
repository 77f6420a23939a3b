// reservation.denial_rate_spike and reservation.expiry_rate_spike (docs/decisions.md DV33):
// a hook of the event relay. Every relayed batch of a tenant that holds reservation.denied
// or reservation.expired entries is counted and judged in one script
// (src/store/lua/signals_rate.lua). The request path pays nothing: the denials and
// expiries are already outbox entries, and the denominator (reservations created in the
// window) is the tenant's created-at index.
import type { Redis } from 'ioredis';
import { redisNowMs } from '../../governance/quotaCounters';
import { keys } from '../../store/keys';
import { loadScript, runScript } from '../../store/scripts';
import { SYSTEM_TENANT } from '../model';
import type { RelayedEvent } from '../relay';
import type { SignalConfig } from './config';

const COUNTED: Record<string, 'denied' | 'expired'> = {
  'reservation.denied': 'denied',
  'reservation.expired': 'expired',
};

/** Buckets per window: the window slides in steps of window/30 (at least 1 s). */
export function bucketMsOf(windowMs: number): number {
  return Math.max(1000, Math.ceil(windowMs / 30 / 1000) * 1000);
}

/** Start ms of every bucket of width bucketMs that overlaps (nowMs - windowMs, nowMs]. */
export function windowBuckets(nowMs: number, windowMs: number, bucketMs: number): number[] {
  const out: number[] = [];
  for (let b = Math.floor((nowMs - windowMs) / bucketMs) * bucketMs; b <= nowMs; b += bucketMs) out.push(b);
  return out;
}

/** Entries judged per script call (the relay's batches are smaller; this bounds a call). */
const MAX_IDS_PER_CALL = 1000;

/** The relay hook: counts and judges each tenant's denials and expiries. Returns the
 *  event types written (tests). */
export async function rateHook(redis: Redis, batch: RelayedEvent[], cfg: SignalConfig): Promise<string[]> {
  if (batch.length > MAX_IDS_PER_CALL) {
    const out: string[] = [];
    for (let i = 0; i < batch.length; i += MAX_IDS_PER_CALL) out.push(...await rateHook(redis, batch.slice(i, i + MAX_IDS_PER_CALL), cfg));
    return out;
  }
  const perTenant = new Map<string, { denied: Record<string, string[]>; expired: Record<string, string[]>; n: number }>();
  const bucketMs = bucketMsOf(cfg.rateWindowMs);
  for (const { tenant, streamId, event } of batch) {
    const metric = COUNTED[event.event_type];
    if (!metric || tenant === SYSTEM_TENANT) continue;
    let t = perTenant.get(tenant);
    if (!t) perTenant.set(tenant, (t = { denied: {}, expired: {}, n: 0 }));
    const ms = Number(streamId.slice(0, streamId.indexOf('-')));
    const bucket = String(Math.floor(ms / bucketMs) * bucketMs);
    (t[metric][bucket] ??= []).push(streamId);
    t.n++;
  }
  const emitted: string[] = [];
  if (perTenant.size === 0) return emitted;
  // the script's clock, read here so every bucket it touches is declared in KEYS (DK20)
  const now = await redisNowMs(redis);
  const window = windowBuckets(now, cfg.rateWindowMs, bucketMs);
  for (const [tenant, t] of perTenant) {
    const prefix = keys.signalBucketPrefix(tenant);
    const keyList = [keys.signals(tenant), keys.outbox(tenant), keys.reservationIndex(tenant)];
    const slot = new Map<string, number>(); // bucket key → its KEYS index (1-based, as in Lua)
    const keyOf = (k: string): number => {
      let i = slot.get(k);
      if (i === undefined) { keyList.push(k); slot.set(k, (i = keyList.length)); }
      return i;
    };
    const metrics: Record<string, { first: number; last: number; add: { k: number; ids: string[] }[] }> = {};
    for (const metric of ['denied', 'expired'] as const) {
      const first = keyList.length + 1;
      for (const b of window) keyOf(`${prefix}${metric}:${b}`);
      metrics[metric] = { first, last: keyList.length, add: [] };
    }
    for (const metric of ['denied', 'expired'] as const) {
      for (const [bucket, ids] of Object.entries(t[metric])) metrics[metric].add.push({ k: keyOf(`${prefix}${metric}:${bucket}`), ids });
    }
    const raw = await runScript(redis, loadScript('signals_rate'), keyList,
      [JSON.stringify({
        now,
        bucket_ms: bucketMs,
        window_ms: cfg.rateWindowMs,
        min_samples: cfg.rateMinSamples,
        rearm: cfg.rearmRatio,
        metrics,
        thresholds: { denied: cfg.denialRateThreshold, expired: cfg.expiryRateThreshold },
      })]);
    emitted.push(...(JSON.parse(String(raw)) as { emitted: string[] }).emitted);
  }
  return emitted;
}
