// api_key.auth_failure_rate_spike and system.high_latency (docs/decisions.md DV35, DV36).
// Every HTTP process counts, in memory, the requests that needed a credential, those
// answered 401, and a latency histogram of every request (the plane's onResponse hook:
// after the response, no Redis call). Every flushMs the process adds its counts to the
// deployment's time buckets and the same script judges the window (signals_system.lua),
// so several processes give one judgement and one event per crossing.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ResponseInfo } from '../../http/types';
import { keys } from '../../store/keys';
import { loadScript, runScript } from '../../store/scripts';
import { SYSTEM_TENANT } from '../model';
import { redisNowMs } from '../../governance/quotaCounters';
import { bucketMsOf, windowBuckets } from './rates';
import type { SignalConfig } from './config';

/** Upper bounds (ms) of the latency histogram: 25% steps from 1 ms to ~70 s, then open. */
export const LATENCY_BOUNDS_MS: readonly number[] = (() => {
  const out: number[] = [];
  for (let b = 1; b < 70_000; b *= 1.25) out.push(Math.round(b * 1000) / 1000);
  return out;
})();

function bucketOf(ms: number): number {
  // binary search: first bound >= ms (index into LATENCY_BOUNDS_MS; length = open bucket)
  let lo = 0;
  let hi = LATENCY_BOUNDS_MS.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (LATENCY_BOUNDS_MS[mid] >= ms) hi = mid; else lo = mid + 1;
  }
  return lo;
}

export interface SignalObserver {
  /** PlaneAppOptions.onResponse: counts one finished request (in memory only) */
  onResponse(info: ResponseInfo): void;
  /** adds the counts so far to Redis and judges the window; returns the event types written */
  flush(): Promise<string[]>;
  /** stops the timer after a last flush */
  stop(): Promise<void>;
}

export function createSignalObserver(redis: Redis, cfg: SignalConfig, log: Logger): SignalObserver {
  let attempts = 0;
  let failures = 0;
  let lat = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
  let timed = 0;
  let flushing: Promise<string[]> | undefined;

  const flush = async (): Promise<string[]> => {
    if (flushing) return flushing;
    if (attempts === 0 && timed === 0) return [];
    const bucketMs = bucketMsOf(cfg.rateWindowMs);
    const args = {
      now: 0,
      bucket_ms: bucketMs,
      window_ms: cfg.rateWindowMs,
      min_samples: cfg.rateMinSamples,
      rearm: cfg.rearmRatio,
      a: attempts,
      f: failures,
      lat,
      bounds: LATENCY_BOUNDS_MS,
      auth_threshold: cfg.authFailureRateThreshold,
      p99_ms: cfg.latencyP99Ms,
    };
    attempts = 0;
    failures = 0;
    lat = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    timed = 0;
    // the script's clock, read here so every bucket it touches is declared in KEYS (DK20)
    flushing = redisNowMs(redis)
      .then((now) => {
        args.now = now;
        const prefix = keys.signalBucketPrefix(SYSTEM_TENANT);
        return runScript(redis, loadScript('signals_system'), [keys.signals(SYSTEM_TENANT), keys.outbox(SYSTEM_TENANT),
          ...windowBuckets(now, cfg.rateWindowMs, bucketMs).map((b) => `${prefix}sys:${b}`)], [JSON.stringify(args)]);
      })
      .then((raw) => (JSON.parse(String(raw)) as { emitted: string[] }).emitted)
      .catch((err: unknown) => {
        // counts of this interval are dropped: a signal, not a ledger
        log.warn({ err }, 'signal counters flush failed');
        return [];
      })
      .finally(() => { flushing = undefined; });
    return flushing;
  };

  const timer = setInterval(() => { void flush(); }, cfg.flushMs);
  timer.unref();

  return {
    onResponse(info) {
      if (info.op && info.op.security.length > 0) {
        attempts++;
        if (info.status === 401) failures++;
      }
      if (info.op) {
        lat[bucketOf(info.durationMs)]++;
        timed++;
      }
    },
    flush,
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}
