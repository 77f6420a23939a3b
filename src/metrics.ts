// Prometheus metrics (prom-client), served at GET /metrics on the admin port only
// (docs/decisions.md DO3–DO6). Two kinds:
//
//   counted in this process, on paths that already run (no extra Redis call):
//     cycles_http_requests_total, cycles_http_request_duration_seconds  {plane, operation, status}
//                                   the plane's onResponse hook, after the response is sent
//     cycles_reservation_decisions_total  {operation, decision, reason_code}
//                                   createReservation and decide, from the same hook
//     cycles_redis_script_duration_seconds  {script}   every runScript (src/store/scripts.ts)
//     cycles_webhook_deliveries_total  {outcome}       the dispatcher's finish step
//     process_* / nodejs_*                             prom-client's default metrics
//   read from Redis when scraped (deployment-wide, whichever process runs the workers):
//     cycles_expiry_sweeper_lag_seconds, cycles_expiry_overdue_reservations
//     cycles_evidence_queue_lag_seconds, cycles_evidence_queue_depth   (evidence on)
//     cycles_embedded_redis_used_memory_bytes                          (embedded Redis)
//
// CYCLES_METRICS=0 turns all of it off: nothing is recorded and /metrics is not served.
import cluster from 'node:cluster';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Express } from 'express';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config';
import type { ResponseInfo } from './http/types';
import { keys } from './store/keys';
import { setScriptObserver } from './store/scripts';

// ---- process-wide series ---------------------------------------------------------------

const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SCRIPT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Everything this process counts (one per process; shared by the servers a test starts in it). */
export const processRegistry = new Registry();

const httpRequests = new Counter({
  name: 'cycles_http_requests_total',
  help: 'API requests answered, by plane, operationId ("unmatched": no route) and HTTP status',
  labelNames: ['plane', 'operation', 'status'] as const,
  registers: [processRegistry],
});
const httpDuration = new Histogram({
  name: 'cycles_http_request_duration_seconds',
  help: 'API request latency from arrival to the response handed to the socket, by plane, operationId and HTTP status',
  labelNames: ['plane', 'operation', 'status'] as const,
  buckets: HTTP_BUCKETS,
  registers: [processRegistry],
});
const decisions = new Counter({
  name: 'cycles_reservation_decisions_total',
  help: 'createReservation and decide outcomes: decision ALLOW | ALLOW_WITH_CAPS | DENY and reason_code ' +
    '(the DENY reason, or the error code of a live reserve refused with 409/403; "none" for allows)',
  labelNames: ['operation', 'decision', 'reason_code'] as const,
  registers: [processRegistry],
});
const scriptDuration = new Histogram({
  name: 'cycles_redis_script_duration_seconds',
  help: 'Lua script round trips (EVALSHA, plus SCRIPT LOAD on NOSCRIPT), by script name',
  labelNames: ['script'] as const,
  buckets: SCRIPT_BUCKETS,
  registers: [processRegistry],
});
const webhookDeliveries = new Counter({
  name: 'cycles_webhook_deliveries_total',
  help: 'Webhook delivery attempts finished by this process: success, retrying (failed, will retry), failed (retries exhausted), skipped (not sent)',
  labelNames: ['outcome'] as const,
  registers: [processRegistry],
});

let enabled = false;
let defaultsStarted = false;

/** Applies CYCLES_METRICS for this process (startServer calls it before serving). */
export function configureMetrics(on: boolean): void {
  enabled = on;
  if (on && !defaultsStarted) {
    defaultsStarted = true;
    collectDefaultMetrics({ register: processRegistry });
  }
  setScriptObserver(on ? observeScript : undefined);
}

const scriptChildren = new Map<string, Histogram.Internal<'script'>>();
function observeScript(name: string, seconds: number): void {
  let child = scriptChildren.get(name);
  if (!child) { child = scriptDuration.labels(name); scriptChildren.set(name, child); }
  child.observe(seconds);
}

/** The dispatcher's finish step (src/events/dispatch.ts). */
export function countWebhookDelivery(outcome: 'skip' | 'ok' | 'fail', state: string): void {
  if (!enabled) return;
  const label = outcome === 'skip' ? 'skipped' : state === 'SUCCESS' ? 'success' : state === 'RETRYING' ? 'retrying' : state === 'FAILED' ? 'failed' : 'other';
  webhookDeliveries.inc({ outcome: label });
}

/** Error codes with which a live reserve is refused for budget or governance reasons
 *  (counted as DENY decisions beside dry_run/decide's DENY bodies). */
const DENIAL_CODES = new Set([
  'BUDGET_EXCEEDED', 'BUDGET_FROZEN', 'BUDGET_CLOSED', 'OVERDRAFT_LIMIT_EXCEEDED', 'DEBT_OUTSTANDING',
  'ACTION_QUOTA_EXCEEDED', 'ACTION_KIND_DENIED', 'ACTION_KIND_NOT_ALLOWED',
]);

interface HttpChildren { count: Counter.Internal; duration: Histogram.Internal<'plane' | 'operation' | 'status'> }
const httpChildren = new Map<string, HttpChildren>();

/** Counts one finished API request (the plane's onResponse hook; never throws). */
export function observeResponse(info: ResponseInfo): void {
  if (!enabled) return;
  const operation = info.op?.operationId ?? 'unmatched';
  const key = `${info.plane} ${operation} ${info.status}`;
  let c = httpChildren.get(key);
  if (!c) {
    const labels = { plane: info.plane, operation, status: String(info.status) };
    c = { count: httpRequests.labels(labels), duration: httpDuration.labels(labels) };
    httpChildren.set(key, c);
  }
  c.count.inc();
  c.duration.observe(info.durationMs / 1000);
  if (operation === 'createReservation' || operation === 'decide') {
    const body = info.responseBody as { decision?: unknown; reason_code?: unknown } | undefined;
    if (info.status === 200 && body && typeof body.decision === 'string') {
      decisions.inc({ operation, decision: body.decision, reason_code: typeof body.reason_code === 'string' ? body.reason_code : 'none' });
    } else if (info.errorCode && DENIAL_CODES.has(info.errorCode)) {
      decisions.inc({ operation, decision: 'DENY', reason_code: info.errorCode });
    }
  }
}

// ---- Redis-derived gauges (per server) ---------------------------------------------------

/** Tenants whose schedules / streams are read in one pipelined round trip. */
const TENANT_CHUNK = 500;
/** Bound on the Redis reads of one scrape; past it the gauges keep their last values. */
const SCRAPE_REDIS_TIMEOUT_MS = 5_000;

export interface MetricsEndpoint {
  /** mounts GET /metrics (admin plane) */
  mount(app: Express): void;
  /** the exposition text (tests) */
  render(): Promise<{ contentType: string; text: string }>;
}

export function createMetricsEndpoint(redis: Redis, config: Config, log: Logger, opts: { embeddedRedis: boolean }): MetricsEndpoint {
  const registry = new Registry();
  const sweeperLag = new Gauge({
    name: 'cycles_expiry_sweeper_lag_seconds',
    help: 'How long the most overdue reservation has been past its expiry deadline (expires_at + grace) without being expired; 0 when none',
    registers: [registry],
  });
  const overdue = new Gauge({
    name: 'cycles_expiry_overdue_reservations',
    help: 'Reservations past their expiry deadline and not yet expired by the sweeper',
    registers: [registry],
  });
  const evidenceLag = config.evidence ? new Gauge({
    name: 'cycles_evidence_queue_lag_seconds',
    help: 'Age of the oldest evidence source not yet signed and stored (0 when the queue is empty)',
    registers: [registry],
  }) : undefined;
  const evidenceDepth = config.evidence ? new Gauge({
    name: 'cycles_evidence_queue_depth',
    help: 'Evidence sources waiting to be signed, all tenants',
    registers: [registry],
  }) : undefined;
  const redisMemory = opts.embeddedRedis ? new Gauge({
    name: 'cycles_embedded_redis_used_memory_bytes',
    help: 'used_memory of the redis-server this server started (no REDIS_URL)',
    registers: [registry],
  }) : undefined;

  const readRedis = async (): Promise<void> => {
    const [sec, usec] = await redis.time();
    const nowMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    let oldestDeadline = Infinity;
    let overdueCount = 0;
    let oldestSource = Infinity;
    let depth = 0;
    let cursor = '0';
    do {
      const [next, tenants] = await redis.sscan(keys.tenants(), cursor, 'COUNT', TENANT_CHUNK);
      cursor = next;
      if (tenants.length === 0) continue;
      const p = redis.pipeline();
      for (const t of tenants) {
        p.zrange(keys.expirySchedule(t), 0, 0, 'WITHSCORES');
        p.zcount(keys.expirySchedule(t), 0, nowMs);
        if (evidenceLag) {
          p.xrange(keys.evidenceSource(t), '-', '+', 'COUNT', 1);
          p.xlen(keys.evidenceSource(t));
        }
      }
      const replies = (await p.exec()) ?? [];
      for (const [err] of replies) if (err) throw err;
      const per = evidenceLag ? 4 : 2;
      for (let i = 0; i < tenants.length; i++) {
        const first = replies[i * per][1] as string[];
        if (first.length === 2) oldestDeadline = Math.min(oldestDeadline, Number(first[1]));
        overdueCount += Number(replies[i * per + 1][1]);
        if (evidenceLag) {
          const entries = replies[i * per + 2][1] as [string, string[]][];
          if (entries.length > 0) oldestSource = Math.min(oldestSource, Number(entries[0][0].split('-')[0]));
          depth += Number(replies[i * per + 3][1]);
        }
      }
    } while (cursor !== '0');
    sweeperLag.set(oldestDeadline <= nowMs ? (nowMs - oldestDeadline) / 1000 : 0);
    overdue.set(overdueCount);
    evidenceLag?.set(oldestSource <= nowMs ? (nowMs - oldestSource) / 1000 : 0);
    evidenceDepth?.set(depth);
    if (redisMemory) {
      const m = /^used_memory:(\d+)/m.exec(await redis.info('memory'));
      if (m) redisMemory.set(Number(m[1]));
    }
  };

  const refresh = async (): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([readRedis(), new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis reads took more than ${SCRAPE_REDIS_TIMEOUT_MS} ms`)), SCRAPE_REDIS_TIMEOUT_MS);
      })]);
    } catch (err) {
      log.warn({ err }, 'metrics: Redis-derived gauges not refreshed');
    } finally {
      clearTimeout(timer);
    }
  };

  const render = async () => {
    await refresh();
    const local = await registry.metrics();
    const counted = cluster.isWorker ? await clusterMetrics() : await processRegistry.metrics();
    return { contentType: processRegistry.contentType, text: counted + local };
  };

  return {
    render,
    mount(app) {
      app.get('/metrics', async (_req, res) => {
        try {
          const { contentType, text } = await render();
          res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)), 'Cache-Control': 'no-store' });
          res.end(text);
        } catch (err) {
          log.error({ err }, 'metrics: scrape failed');
          const text = 'metrics unavailable\n';
          res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(text.length) });
          res.end(text);
        }
      });
    },
  };
}

// ---- several server processes (CYCLES_HTTP_PROCESSES > 1) --------------------------------
// The process a scrape reaches asks the primary, which collects every process's counters
// over the cluster IPC channel and sums them (prom-client's aggregation rules), so one
// scrape sees the whole server whichever process accepted it.

const REQ = 'cycles:metrics:req';
const COLLECT = 'cycles:metrics:collect';
const COLLECTED = 'cycles:metrics:collected';
const RES = 'cycles:metrics:res';
const CLUSTER_TIMEOUT_MS = 5_000;

interface Msg { type?: string; id?: number; text?: string; error?: string; metrics?: MetricObjectWithValues<MetricValue<string>>[] }

/** IPC send whose failure (the other side gone, e.g. during shutdown) is dropped instead
 *  of becoming an 'error' event or a throw: the asker times out on its own. */
function sendQuietly(to: { send?: (m: Msg, cb: (e: Error | null) => void) => unknown }, m: Msg): void {
  try { to.send?.(m, () => {}); } catch { /* channel closed */ }
}

let nextId = 0;
const waiting = new Map<number, (m: Msg) => void>();
let workerListening = false;

function listenInWorker(): void {
  if (workerListening) return;
  workerListening = true;
  process.on('message', (m: Msg) => {
    if (m?.type === RES && m.id !== undefined) waiting.get(m.id)?.(m);
    else if (m?.type === COLLECT && m.id !== undefined) {
      void processRegistry.getMetricsAsJSON().then(
        (metrics) => sendQuietly(process, { type: COLLECTED, id: m.id, metrics }),
        (err: unknown) => sendQuietly(process, { type: COLLECTED, id: m.id, metrics: [], error: String(err) }),
      );
    }
  });
}
// a worker must answer the primary's COLLECT even if it never serves a scrape itself
if (cluster.isWorker) listenInWorker();

async function clusterMetrics(): Promise<string> {
  const id = nextId++;
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { waiting.delete(id); reject(new Error('cluster metrics: no answer from the primary')); }, CLUSTER_TIMEOUT_MS);
    waiting.set(id, (m) => {
      clearTimeout(timer);
      waiting.delete(id);
      if (m.error) reject(new Error(m.error)); else resolve(m.text ?? '');
    });
    sendQuietly(process as { send?: (m: Msg, cb: (e: Error | null) => void) => unknown }, { type: REQ, id });
  });
}

/** The primary's side (src/cluster.ts): answers a worker's REQ with every worker's counters summed. */
export function serveClusterMetrics(): void {
  const pending = new Map<number, { left: number; parts: MetricObjectWithValues<MetricValue<string>>[][]; done: () => void }>();
  let seq = 0;
  cluster.on('message', (worker, m: Msg) => {
    if (m?.type === COLLECTED && m.id !== undefined) {
      const p = pending.get(m.id);
      if (!p) return;
      p.parts.push(m.metrics ?? []);
      if (--p.left === 0) p.done();
      return;
    }
    if (m?.type !== REQ || m.id === undefined) return;
    const replyId = m.id;
    const id = seq++;
    const workers = Object.values(cluster.workers ?? {}).filter((w) => w && w.isConnected());
    const entry = { left: workers.length, parts: [] as MetricObjectWithValues<MetricValue<string>>[][], done: () => {} };
    const timer = setTimeout(() => entry.done(), CLUSTER_TIMEOUT_MS - 1000);
    entry.done = () => {
      clearTimeout(timer);
      pending.delete(id);
      AggregatorRegistry.aggregate(entry.parts).metrics().then(
        (text) => sendQuietly(worker, { type: RES, id: replyId, text }),
        (err: unknown) => sendQuietly(worker, { type: RES, id: replyId, error: String(err) }),
      );
    };
    pending.set(id, entry);
    for (const w of workers) sendQuietly(w!, { type: COLLECT, id });
  });
}
