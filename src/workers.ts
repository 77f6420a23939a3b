// Background work that runs beside (or apart from) the HTTP planes. Each worker is safe
// to run in several processes at once: its unit of work is an atomic Lua script.
import type { Deps } from './http/types';
import { startExpirySweeper } from './ledger/sweeper';
import { startEventRelay } from './events/relay';
import { startSignalWorkers } from './events/signals';
import { startWebhookDispatcher } from './events/dispatch';
import { startEvidenceWorker } from './evidence/worker';
import { startRetentionTrim } from './export/retention';
import { startExportJob } from './export/job';

export interface Workers { stop(): Promise<void> }

type WorkerFactory = (deps: Deps) => { stop(): Promise<void> };
// `var`, not `const`: a module that registers a worker at load time may be evaluated while
// this module is still being evaluated (import cycle: workers.ts → events/dispatch.ts →
// events/subscriptions.ts → registerWorker); a `var` exists then, a `const` would throw.
// eslint-disable-next-line no-var
var factories: WorkerFactory[] | undefined;

/** Domain modules register their workers here (e.g. the reservation expiry sweeper). */
export function registerWorker(f: WorkerFactory): void {
  (factories ??= []).push(f);
}

export function startWorkers(deps: Deps): Workers {
  const running = (factories ?? []).map((f) => f(deps));
  return { async stop() { await Promise.all(running.map((w) => w.stop())); } };
}

// Built-in workers.
registerWorker(startExpirySweeper);
registerWorker((deps) => startEventRelay(deps));
registerWorker(startSignalWorkers);
// Webhook delivery: every script on its owner's slot (DK13), on a single Redis and a cluster.
registerWorker(startWebhookDispatcher);
registerWorker((deps) => startEvidenceWorker(deps));
registerWorker(startRetentionTrim);
registerWorker(startExportJob);
