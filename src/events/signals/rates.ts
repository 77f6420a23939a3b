// reservation.denial_rate_spike and reservation.expiry_rate_spike (docs/decisions.md DV33):
// a hook of the event relay. Every relayed batch of a tenant that holds reservation.denied
// or reservation.expired entries is counted and judged in one script
// (src/store/lua/signals_rate.lua). The request path pays nothing: the denials and
// expiries are already outbox entries, and the denominator (reservations created in the
// window) is the tenant's created-at index.
import type { Redis } from 'ioredis';
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
  for (const [tenant, t] of perTenant) {
    const raw = await runScript(redis, loadScript('signals_rate'),
      [keys.signals(tenant), keys.outbox(tenant), keys.reservationIndex(tenant)],
      [JSON.stringify({
        prefix: keys.signalBucketPrefix(tenant),
        bucket_ms: bucketMs,
        window_ms: cfg.rateWindowMs,
        min_samples: cfg.rateMinSamples,
        rearm: cfg.rearmRatio,
        add: { denied: t.denied, expired: t.expired },
        thresholds: { denied: cfg.denialRateThreshold, expired: cfg.expiryRateThreshold },
      })]);
    emitted.push(...(JSON.parse(String(raw)) as { emitted: string[] }).emitted);
  }
  return emitted;
}
