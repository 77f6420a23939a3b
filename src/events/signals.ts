// Derived signals (docs/decisions.md DV30–DV39): the event types no single state change
// writes. Where each is produced:
//   in the ledger scripts (same atomic step as the change; src/store/lua/signals_common.lua)
//     budget.threshold_crossed        reserve, commit, release, expire, createEvent, fund
//     budget.over_limit_exited        fund, updateBudget (is_over_limit 1 → 0)
//   relay hook (src/events/signals/rates.ts)
//     reservation.denial_rate_spike, reservation.expiry_rate_spike
//   worker role (this module's worker)
//     budget.burn_rate_anomaly        src/events/signals/burn.ts (budget sampler)
//     api_key.expired                 src/events/signals/keyExpiry.ts (sweep)
//   every HTTP process (src/server.ts wires them)
//     api_key.auth_failure_rate_spike, system.high_latency   src/events/signals/observer.ts
//     system.store_connection_lost/restored                  src/events/signals/store.ts
// Not emitted, with the reasons: budget.closed, policy.deleted (DV30).
import type { Logger } from 'pino';
import type { Deps } from '../http/types';
import { registerEventHook } from './relay';
import { loadSignalConfig, luaConstants, type SignalConfig } from './signals/config';
import { rateHook } from './signals/rates';
import { startBurnSampler } from './signals/burn';
import { startKeyExpirySweep } from './signals/keyExpiry';
import { setScriptConstants } from '../store/scripts';

export { createSignalObserver, type SignalObserver } from './signals/observer';
export { watchStoreConnection, type StoreWatch } from './signals/store';

// The relay hook needs the configuration of the process it runs in: set by
// configureSignals at start; until then the defaults.
let current: SignalConfig | undefined;
let log: Logger | undefined;

/** Applies a process's signal configuration: the Lua `@const` values of the ledger scripts
 *  and the settings of the relay hook. Called by startServer before anything runs. */
export function configureSignals(cfg: SignalConfig): void {
  current = cfg;
  setScriptConstants(luaConstants(cfg));
}

// A failure here is logged, not thrown: a throwing hook holds the whole batch back,
// webhook fan-out included, and a rate signal is not worth delaying deliveries for.
registerEventHook('signals', async (redis, batch) => {
  current ??= loadSignalConfig(process.env);
  try {
    await rateHook(redis, batch, current);
  } catch (err) {
    log?.warn({ err }, 'rate signals: batch not counted');
  }
});

/** The worker-role part: burn-rate sampler and api key expiry sweep. */
export function startSignalWorkers(deps: Deps): { stop(): Promise<void> } {
  const cfg = deps.config.signals;
  log = deps.log;
  const burn = startBurnSampler(deps, cfg);
  const sweep = startKeyExpirySweep(deps, cfg.keySweepMs);
  return { async stop() { await Promise.all([burn.stop(), sweep.stop()]); } };
}
