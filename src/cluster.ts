// Several server processes behind the same ports (CYCLES_HTTP_PROCESSES > 1), with
// node:cluster: a Node process serves HTTP on one core, and under load the request path
// (HTTP parsing, express, validation, JSON) is what saturates it, not Redis (bench/RESULTS.md).
// Every piece of shared state is already in Redis or kept coherent through it (ledger,
// idempotency, the API key cache via client tracking, the policy cache via its version
// counter, the expiry sweeper's atomic scripts), so the processes need no coordination.
//
// The primary owns what must exist once: the development admin key (read from or saved to
// the data dir) and the embedded redis-server; it passes both to the workers through their
// environment. Worker 0 also runs the background jobs (role "worker"). A worker that dies
// is replaced; one that dies before it listens stops the whole server (a bad port or config
// would loop forever).
import cluster, { type Worker } from 'node:cluster';
import { loadConfig } from './config';
import { resolveAdminKey, startEmbeddedRedis, EMBEDDED_REDIS_ENV, type Role } from './server';
import { serveClusterMetrics } from './metrics';

/** Env var telling a worker its index (0 runs the background jobs). */
export const PROCESS_INDEX_ENV = 'CYCLES_PROCESS_INDEX';
/** a worker gets the drain deadline plus this long to exit before SIGKILL */
const STOP_GRACE_MS = 15_000;

/** The roles a cluster worker takes: HTTP planes everywhere, background jobs in worker 0. */
export function workerRoles(roles: Role[], index: string | undefined): Role[] {
  return index === '0' ? roles : roles.filter((r) => r !== 'worker');
}

/** Runs the cluster primary until SIGINT/SIGTERM. */
export async function runPrimary(processes: number, announce: (line: string) => void, warn: (line: string) => void = announce): Promise<void> {
  const config = loadConfig(process.env);
  const adminApiKey = resolveAdminKey(config, announce, warn);
  const embedded = config.redisUrl ? undefined : await startEmbeddedRedis(config, announce);
  const env: Record<string, string> = { ADMIN_API_KEY: adminApiKey, REDIS_URL: config.redisUrl ?? embedded!.url };
  if (embedded) env[EMBEDDED_REDIS_ENV] = '1';
  // a scrape reaches one process; the primary sums every process's counters for it
  if (config.metrics) serveClusterMetrics();

  let stopping = false;
  const listening = new Set<Worker>();
  const indexOf = new Map<Worker, number>();
  const fork = (i: number) => {
    const w = cluster.fork({ ...env, [PROCESS_INDEX_ENV]: String(i) });
    w.once('listening', () => listening.add(w));
    indexOf.set(w, i);
  };

  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !w.isDead());
    await Promise.all(alive.map((w) => new Promise<void>((resolve) => {
      const hard = setTimeout(() => w.process.kill('SIGKILL'), config.shutdownTimeoutMs + STOP_GRACE_MS);
      w.once('exit', () => { clearTimeout(hard); resolve(); });
      w.process.kill('SIGTERM');
    })));
    await embedded?.stop();
    process.exit(code);
  };

  cluster.on('exit', (w, code, signal) => {
    if (stopping) return;
    const i = indexOf.get(w) ?? 0;
    const early = !listening.has(w);
    listening.delete(w);
    console.error(`cycles: server process ${i} (pid ${w.process.pid}) exited (${signal ?? code})${early ? ' during start-up; stopping' : '; starting a replacement'}`);
    if (early) void stop(1);
    else fork(i);
  });
  process.on('SIGINT', () => { console.log('SIGINT received, shutting down'); void stop(0); });
  process.on('SIGTERM', () => { console.log('SIGTERM received, shutting down'); void stop(0); });

  for (let i = 0; i < processes; i++) fork(i);
  announce(`${processes} server processes (pids ${Object.values(cluster.workers ?? {}).map((w) => w?.process.pid).join(', ')}) share the ports`);
}
