// GET /metrics (admin port only; docs/decisions.md DO3–DO6): after real traffic the
// exposition carries every listed series with its labels — requests and latency by
// operationId and status, reservation decisions by decision and reason code, Lua script
// latency by script, webhook delivery outcomes, the Redis-derived lags (expiry sweeper,
// evidence queue) and the embedded redis-server's memory — and nothing outside the spec
// pipeline (/docs, /openapi.json, /metrics itself) is counted. CYCLES_METRICS=0 serves none.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { adminApi, allowLoopback, createSub, fundedTenant, Receiver, waitFor } from './delivery-helpers';
import { fixtureSeedHex, FIXTURE_PUBLIC_KEY } from './helpers/evidence';
import { uid } from './helpers/reservations';
import { loadConfig } from '../src/config';

interface Sample { name: string; labels: Record<string, string>; value: number }

/** The samples of a Prometheus text exposition (enough of the grammar for prom-client's output). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(s: TestServer): Promise<Sample[]> {
  const r = await fetch(`${s.adminUrl}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await r.text());
}

/** Sum of the samples of `name` whose labels include `labels`. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
    .reduce((a, x) => a + x.value, 0);
}
const has = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.some((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));

describe('/metrics after traffic (no worker role: the lags build up)', () => {
  let s: TestServer;
  let key: string;
  let tenant: string;
  beforeAll(async () => {
    s = await startTestServer({
      EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1', EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex(),
      EVIDENCE_SIGNING_SIGNER_DID: FIXTURE_PUBLIC_KEY,
    }, { roles: ['runtime', 'admin'] });
    tenant = uid('met');
    await fundedTenant(adminApi(s.adminUrl, s.adminKey), tenant);
    key = await s.tenantKey(tenant);
  });
  afterAll(async () => { await s?.stop(); });

  const reserve = (estimate: number, extra: Record<string, unknown> = {}) => call(s.runtimeUrl, 'POST', '/v1/reservations', {
    key,
    body: { idempotency_key: uid('k'), subject: { tenant }, action: { kind: 'llm.completion', name: 'm' }, estimate: { unit: 'TOKENS', amount: estimate }, ...extra },
  });

  it('counts requests, latency, decisions and script calls with their labels', async () => {
    expect((await reserve(10, { ttl_ms: 1000, grace_period_ms: 0 })).status).toBe(200);
    expect((await reserve(10, { dry_run: true })).status).toBe(200);
    const denied = await reserve(2_000_000_000);
    expect(denied.status).toBe(409);
    expect(denied.body.error).toBe('BUDGET_EXCEEDED');
    const decide = await call(s.runtimeUrl, 'POST', '/v1/decide', {
      key, body: { idempotency_key: uid('d'), subject: { tenant }, action: { kind: 'llm.completion', name: 'm' }, estimate: { unit: 'TOKENS', amount: 2_000_000_000 } },
    });
    expect(decide.status).toBe(200);
    expect(decide.body.decision).toBe('DENY');
    expect((await call(s.runtimeUrl, 'GET', '/v1/no-such-route', { key })).status).toBe(404);
    expect((await call(s.runtimeUrl, 'GET', '/v1/balances?tenant=' + tenant)).status).toBe(401);

    const m = await scrape(s);
    const rt = { plane: 'runtime' };
    expect(value(m, 'cycles_http_requests_total', { ...rt, operation: 'createReservation', status: '200' })).toBe(2);
    expect(value(m, 'cycles_http_requests_total', { ...rt, operation: 'createReservation', status: '409' })).toBe(1);
    expect(value(m, 'cycles_http_requests_total', { ...rt, operation: 'decide', status: '200' })).toBe(1);
    expect(value(m, 'cycles_http_requests_total', { ...rt, operation: 'getBalances', status: '401' })).toBe(1);
    expect(value(m, 'cycles_http_requests_total', { ...rt, operation: 'unmatched', status: '404' })).toBe(1);
    expect(value(m, 'cycles_http_requests_total', { plane: 'admin', operation: 'createTenant', status: '201' })).toBe(1);
    // the histogram: every bucket, _sum and _count per label set
    expect(value(m, 'cycles_http_request_duration_seconds_count', { ...rt, operation: 'createReservation', status: '200' })).toBe(2);
    expect(value(m, 'cycles_http_request_duration_seconds_bucket', { ...rt, operation: 'createReservation', status: '200', le: '+Inf' })).toBe(2);
    expect(has(m, 'cycles_http_request_duration_seconds_bucket', { ...rt, operation: 'decide', status: '200', le: '0.005' })).toBe(true);
    expect(value(m, 'cycles_http_request_duration_seconds_sum', { ...rt, operation: 'decide' })).toBeGreaterThan(0);

    expect(value(m, 'cycles_reservation_decisions_total', { operation: 'createReservation', decision: 'ALLOW', reason_code: 'none' })).toBe(2);
    expect(value(m, 'cycles_reservation_decisions_total', { operation: 'createReservation', decision: 'DENY', reason_code: 'BUDGET_EXCEEDED' })).toBe(1);
    expect(value(m, 'cycles_reservation_decisions_total', { operation: 'decide', decision: 'DENY', reason_code: 'BUDGET_EXCEEDED' })).toBe(1);

    expect(value(m, 'cycles_redis_script_duration_seconds_count', { script: 'reserve' })).toBeGreaterThanOrEqual(4);
    expect(value(m, 'cycles_redis_script_duration_seconds_count', { script: 'tenant_create' })).toBe(1);
    expect(has(m, 'cycles_redis_script_duration_seconds_bucket', { script: 'reserve', le: '0.001' })).toBe(true);

    // prom-client's process and Node.js series
    expect(has(m, 'process_cpu_user_seconds_total')).toBe(true);
    expect(has(m, 'nodejs_eventloop_lag_seconds')).toBe(true);
    // REDIS_URL given: no embedded-Redis series
    expect(has(m, 'cycles_embedded_redis_used_memory_bytes')).toBe(false);
  });

  it('does not count /docs, /openapi.json, probes or scrapes; /metrics is on the admin port only', async () => {
    const total = (m: Sample[]) => value(m, 'cycles_http_requests_total');
    const before = total(await scrape(s));
    for (const base of [s.runtimeUrl, s.adminUrl]) {
      for (const p of ['/docs', '/openapi.json', '/docs/init.js', '/healthz', '/readyz']) {
        expect((await fetch(base + p)).status, p).toBe(200);
      }
    }
    await scrape(s);
    expect(total(await scrape(s))).toBe(before);
    const runtime = await call(s.runtimeUrl, 'GET', '/metrics');
    expect(runtime.status).toBe(404);
    expect(runtime.body.error).toBe('NOT_FOUND');
  });

  it('reports the expiry sweeper lag and the evidence queue lag, read from Redis', async () => {
    // the live reservation above (ttl 1 s, no grace) is overdue and no worker expires it;
    // the evidence sources of the reserves wait for a signer that does not run here
    const m = await waitFor(async () => {
      const x = await scrape(s);
      return value(x, 'cycles_expiry_overdue_reservations') >= 1 && value(x, 'cycles_expiry_sweeper_lag_seconds') > 0 ? x : undefined;
    }, 15_000, 'an overdue reservation');
    expect(value(m, 'cycles_evidence_queue_depth')).toBeGreaterThanOrEqual(1);
    expect(value(m, 'cycles_evidence_queue_lag_seconds')).toBeGreaterThan(0);
    const lag = value(m, 'cycles_expiry_sweeper_lag_seconds');
    expect(lag).toBeLessThan(60);
  });
});

describe('/metrics with the workers running', () => {
  let s: TestServer;
  let rx: Receiver;
  beforeAll(async () => {
    rx = await new Receiver().start();
    s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '20', CYCLES_SWEEP_INTERVAL_MS: '100' });
  });
  afterAll(async () => { await s?.stop(); await rx?.stop(); });

  it('counts webhook delivery outcomes; the sweeper keeps its lag near zero', async () => {
    const admin = adminApi(s.adminUrl, s.adminKey);
    await allowLoopback(admin);
    const t = uid('whm');
    const fund = await fundedTenant(admin, t);
    await createSub(admin, rx, { path: '/ok' });
    await createSub(admin, rx, { path: '/down', behave: () => ({ status: 503 }), retry_policy: { max_retries: 3, initial_delay_ms: 60_000, backoff_multiplier: 1, max_delay_ms: 60_000 } });
    const before = await scrape(s);
    await fund(5);
    const m = await waitFor(async () => {
      const x = await scrape(s);
      return value(x, 'cycles_webhook_deliveries_total', { outcome: 'success' }) > value(before, 'cycles_webhook_deliveries_total', { outcome: 'success' })
        && value(x, 'cycles_webhook_deliveries_total', { outcome: 'retrying' }) > value(before, 'cycles_webhook_deliveries_total', { outcome: 'retrying' })
        ? x : undefined;
    }, 20_000, 'a delivered and a retrying webhook');
    expect(value(m, 'cycles_redis_script_duration_seconds_count', { script: 'whd_finish' })).toBeGreaterThanOrEqual(2);
    expect(value(m, 'cycles_expiry_sweeper_lag_seconds')).toBe(0);
    // evidence is off: no evidence series
    expect(has(m, 'cycles_evidence_queue_lag_seconds')).toBe(false);
  });
});

describe('/metrics of a server with its own redis-server', () => {
  let s: TestServer;
  let dataDir: string;
  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'cycles-metrics-'));
    s = await startTestServer({ REDIS_URL: '', CYCLES_DATA_DIR: dataDir }, { roles: ['admin'] });
  });
  afterAll(async () => { await s?.stop(); rmSync(dataDir, { recursive: true, force: true }); });

  it('reports the embedded redis-server used_memory', async () => {
    const m = await scrape(s);
    expect(value(m, 'cycles_embedded_redis_used_memory_bytes')).toBeGreaterThan(100_000);
  });
});

// last: the switch is per process, and it turns the counting off for the rest of the file
describe('CYCLES_METRICS=0', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer({ CYCLES_METRICS: '0' }, { roles: ['runtime', 'admin'] }); });
  afterAll(async () => { await s?.stop(); });

  it('serves no /metrics (the pipeline\'s 404)', async () => {
    const r = await call(s.adminUrl, 'GET', '/metrics', { adminKey: s.adminKey });
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('NOT_FOUND');
  });

  it('refuses a value that is not a switch', async () => {
    expect(() => loadConfig({ CYCLES_METRICS: 'yes' })).toThrow(/CYCLES_METRICS must be 1 or 0/);
    expect(loadConfig({ CYCLES_METRICS: 'false' }).metrics).toBe(false);
    expect(loadConfig({}).metrics).toBe(true);
  });
});
