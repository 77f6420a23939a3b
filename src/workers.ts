// Background work that runs beside (or apart from) the HTTP planes. Each worker is safe
// to run in several processes at once: its unit of work is an atomic Lua script.
import type { Deps } from './http/types';
import { startExpirySweeper } from './ledger/sweeper';

export interface Workers { stop(): Promise<void> }

type WorkerFactory = (deps: Deps) => { stop(): Promise<void> };
const factories: WorkerFactory[] = [];

/** Domain modules register their workers here (e.g. the reservation expiry sweeper). */
export function registerWorker(f: WorkerFactory): void {
  factories.push(f);
}

export function startWorkers(deps: Deps): Workers {
  const running = factories.map((f) => f(deps));
  return { async stop() { await Promise.all(running.map((w) => w.stop())); } };
}

// Built-in workers.
registerWorker(startExpirySweeper);
