// Configuration of the derived signals (docs/decisions.md DV30–DV39). Defaults are the
// admin spec's WebhookThresholdConfig defaults where it has one; every value is an
// environment variable (README, Configuration), parsed and validated at start by
// loadConfig (src/config.ts).

export interface SignalConfig {
  /** budget.threshold_crossed utilization thresholds, ascending, each in (0, 1] (empty = off) */
  budgetThresholds: number[];
  /** a crossed threshold falls (and re-arms) only below threshold − band */
  thresholdRearmBand: number;
  /** rolling window of the three rate spikes and of system.high_latency */
  rateWindowMs: number;
  denialRateThreshold: number;
  expiryRateThreshold: number;
  authFailureRateThreshold: number;
  /** a rate is judged only on at least this many samples in the window */
  rateMinSamples: number;
  /** a fired rate signal (and high_latency) re-arms when the value drops below threshold × this */
  rearmRatio: number;
  burnRateMultiplier: number;
  burnRateWindowMs: number;
  /** p99 request latency (ms) above which system.high_latency fires; 0 = off */
  latencyP99Ms: number;
  /** how often each HTTP process flushes its auth/latency counters (and judges them) */
  flushMs: number;
  /** how often the api_key.expired sweep runs */
  keySweepMs: number;
}

function num(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(raw) || !Number.isFinite(n)) throw new Error(`${name} must be a number, got "${raw}"`);
  if (n < min || n > max) throw new Error(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function int(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  const n = num(name, raw, def, min, max);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got "${raw}"`);
  return n;
}

/** `0.8,0.95,1.0`; `none` = no threshold events. At most 10 values. */
function thresholds(raw: string | undefined): number[] {
  const name = 'CYCLES_SIGNAL_BUDGET_THRESHOLDS';
  if (raw === undefined || raw.trim() === '') return [0.8, 0.95, 1.0];
  if (raw.trim() === 'none') return [];
  const out = raw.split(',').map((s) => num(name, s.trim(), NaN, 0, 1));
  if (out.length > 10) throw new Error(`${name}: at most 10 thresholds`);
  for (let i = 0; i < out.length; i++) {
    if (out[i] <= 0) throw new Error(`${name}: thresholds must be > 0`);
    if (i > 0 && out[i] <= out[i - 1]) throw new Error(`${name}: thresholds must be strictly ascending`);
  }
  return out;
}

export function loadSignalConfig(env: NodeJS.ProcessEnv): SignalConfig {
  return {
    budgetThresholds: thresholds(env.CYCLES_SIGNAL_BUDGET_THRESHOLDS),
    thresholdRearmBand: num('CYCLES_SIGNAL_THRESHOLD_REARM_BAND', env.CYCLES_SIGNAL_THRESHOLD_REARM_BAND, 0.05, 0, 1),
    rateWindowMs: 1000 * int('CYCLES_SIGNAL_RATE_WINDOW_SECONDS', env.CYCLES_SIGNAL_RATE_WINDOW_SECONDS, 300, 1, 86400),
    denialRateThreshold: num('CYCLES_SIGNAL_DENIAL_RATE_THRESHOLD', env.CYCLES_SIGNAL_DENIAL_RATE_THRESHOLD, 0.10, 0, 1),
    expiryRateThreshold: num('CYCLES_SIGNAL_EXPIRY_RATE_THRESHOLD', env.CYCLES_SIGNAL_EXPIRY_RATE_THRESHOLD, 0.05, 0, 1),
    authFailureRateThreshold: num('CYCLES_SIGNAL_AUTH_FAILURE_RATE_THRESHOLD', env.CYCLES_SIGNAL_AUTH_FAILURE_RATE_THRESHOLD, 0.10, 0, 1),
    rateMinSamples: int('CYCLES_SIGNAL_RATE_MIN_SAMPLES', env.CYCLES_SIGNAL_RATE_MIN_SAMPLES, 20, 1, 1_000_000),
    rearmRatio: num('CYCLES_SIGNAL_REARM_RATIO', env.CYCLES_SIGNAL_REARM_RATIO, 0.8, 0, 1),
    burnRateMultiplier: num('CYCLES_SIGNAL_BURN_RATE_MULTIPLIER', env.CYCLES_SIGNAL_BURN_RATE_MULTIPLIER, 3.0, 1.5, 1000),
    burnRateWindowMs: 1000 * int('CYCLES_SIGNAL_BURN_RATE_WINDOW_SECONDS', env.CYCLES_SIGNAL_BURN_RATE_WINDOW_SECONDS, 300, 1, 86400),
    latencyP99Ms: int('CYCLES_SIGNAL_LATENCY_P99_MS', env.CYCLES_SIGNAL_LATENCY_P99_MS, 1000, 0, 600_000),
    flushMs: int('CYCLES_SIGNAL_FLUSH_MS', env.CYCLES_SIGNAL_FLUSH_MS, 5000, 50, 600_000),
    keySweepMs: int('CYCLES_SIGNAL_KEY_SWEEP_MS', env.CYCLES_SIGNAL_KEY_SWEEP_MS, 60_000, 50, 86_400_000),
  };
}

/** The `@const` values of src/store/lua/signals_common.lua for this configuration. */
export function luaConstants(c: SignalConfig): Record<string, string> {
  return {
    UTIL_THRESHOLDS: `{${c.budgetThresholds.map((t) => String(t)).join(', ')}}`,
    UTIL_REARM_BAND: String(c.thresholdRearmBand),
  };
}
