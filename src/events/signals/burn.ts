// budget.burn_rate_anomaly (docs/decisions.md DV34): a sampler in the worker role reads
// every budget's `spent` about four times per window and lets signals_burn.lua judge the
// spend rate of each completed window against the budget's baseline. Nothing is added to
// the request path; work per pass is bounded (MAX_BUDGETS_PER_PASS, in script calls of
// BUDGETS_PER_CALL) and a pass that hits the bound continues where it stopped next time.
import type { Deps } from '../../http/types';
import { keys } from '../../store/keys';
import { loadScript, runScript } from '../../store/scripts';
import type { SignalConfig } from './config';

export const BUDGETS_PER_CALL = 100;
export const MAX_BUDGETS_PER_PASS = 20_000;
/** Windows of history before a baseline is trusted. */
export const MIN_BASELINE_WINDOWS = 3;
/** EMA weight of one window's rate in the baseline (about the last 12 windows). */
export const BASELINE_ALPHA = 1 / 12;

function scriptArgs(cfg: SignalConfig): string {
  return JSON.stringify({
    window_ms: cfg.burnRateWindowMs, multiplier: cfg.burnRateMultiplier, rearm: cfg.rearmRatio,
    min_windows: MIN_BASELINE_WINDOWS, alpha: BASELINE_ALPHA,
  });
}

/** Budget keys of one tenant from its index (member "<scope>|<unit>"). */
async function budgetKeys(deps: Deps, tenant: string, limit: number): Promise<string[]> {
  const members = await deps.redis.zrange(keys.budgetIndex(tenant), 0, limit - 1);
  return members.map((m) => {
    const bar = m.lastIndexOf('|');
    return keys.budget(tenant, m.slice(0, bar), m.slice(bar + 1));
  });
}

/** One pass over the tenants, starting after `from` (a tenant id; '' = the beginning).
 *  Returns the events written and where the next pass starts ('' = wrapped around). */
export async function burnPass(deps: Deps, cfg: SignalConfig, from = ''): Promise<{ written: number; next: string }> {
  const tenants = (await deps.redis.smembers(keys.tenants())).sort();
  const script = loadScript('signals_burn');
  const args = scriptArgs(cfg);
  let budget = MAX_BUDGETS_PER_PASS;
  let written = 0;
  let done = '';
  for (const t of tenants) {
    if (from && t <= from) continue;
    if (budget <= 0) return { written, next: done };
    const list = await budgetKeys(deps, t, budget);
    budget -= list.length;
    for (let i = 0; i < list.length; i += BUDGETS_PER_CALL) {
      written += Number(await runScript(deps.redis, script,
        [keys.signalsBurn(t), keys.outbox(t), ...list.slice(i, i + BUDGETS_PER_CALL)], [args]));
    }
    done = t;
  }
  return { written, next: '' };
}

/** The sampler: a pass every window/4 (at least 250 ms, at most a minute). */
export function startBurnSampler(deps: Deps, cfg: SignalConfig): { stop(): Promise<void> } {
  const every = Math.min(60_000, Math.max(250, Math.floor(cfg.burnRateWindowMs / 4)));
  let next = '';
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;
  const tick = () => {
    if (stopped) return;
    current = burnPass(deps, cfg, next)
      .then((r) => { next = r.next; })
      .catch((err: unknown) => { deps.log.error({ err }, 'burn-rate sampler pass failed'); })
      .then(() => {
        current = undefined;
        if (!stopped) timer = setTimeout(tick, next ? 0 : every);
      });
  };
  timer = setTimeout(tick, every);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      if (current) await current;
    },
  };
}
