// Webhook delivery failures on a real loopback receiver: retry timings follow the
// subscription's policy (min(initial × mult^(n−1), max)), only 2xx is success (3xx is not
// followed), timeouts, FAILED with one system.webhook_delivery_failed, consecutive failures
// reset by success, auto-disable with exactly one webhook.disabled, a slow receiver not
// holding up the others, and the URL re-checked at delivery time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server';
import { expectValidEvent, storedEvents } from './helpers/events';
import { SYSTEM_TENANT } from '../src/events/model';
import {
  Receiver, adminApi, allowLoopback, createSub, fundedTenant, waitFor, sleep, allDeliveries, expectWellFormed,
  expectAllStoredEventsValid } from './delivery-helpers';

const TIMEOUT_MS = 600;
let s: TestServer;
let rx: Receiver;
let admin: ReturnType<typeof adminApi>;

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '10', CYCLES_WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS), CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY: '1' });
  rx = await new Receiver().start();
  admin = adminApi(s.adminUrl, s.adminKey);
  await allowLoopback(admin);
}, 30_000);
afterAll(async () => { await s?.stop(); await rx?.stop(); });

/** Gaps between consecutive arrivals at a path (ms). */
const gaps = (path: string) => rx.at(path).slice(1).map((r, i) => r.at - rx.at(path)[i].at);

async function eventsOf(tenant: string, type: string) {
  const all = await storedEvents(s.redis.client, tenant);
  for (const e of all) expectValidEvent(e);
  return all.filter((e) => e.event_type === type);
}

describe('retries', () => {
  it('retries on the policy schedule, then FAILED with one system.webhook_delivery_failed', async () => {
    const fund = await fundedTenant(admin, 'rt-sched');
    const sub = await createSub(admin, rx, {
      tenant: 'rt-sched', path: '/sched', behave: () => ({ status: 500 }),
      // 400, 1000 (1200 capped), 1000 (3600 capped), 1000
      retry_policy: { max_retries: 4, initial_delay_ms: 400, backoff_multiplier: 3, max_delay_ms: 1000 },
    });
    await fund();
    await waitFor(() => rx.at('/sched').length === 5, 15_000, '5 attempts');
    const expected = [400, 1000, 1000, 1000];
    gaps('/sched').forEach((g, i) => {
      expect(g).toBeGreaterThanOrEqual(expected[i] - 5);
      expect(g).toBeLessThan(expected[i] + 350);
    });
    for (const r of rx.at('/sched')) expectWellFormed(r);
    // the same event every time
    expect(new Set(rx.at('/sched').map((r) => r.event.event_id)).size).toBe(1);
    const [row] = await waitFor(async () => { const d = await allDeliveries(admin, sub.id); return d[0]?.status === 'FAILED' && d; }, 5000, 'FAILED');
    expect(row).toMatchObject({ status: 'FAILED', attempts: 5, response_status: 500, error_message: 'HTTP 500' });
    expect(row.next_retry_at).toBeUndefined();
    await sleep(1300);
    expect(rx.at('/sched')).toHaveLength(5); // total attempts = max_retries + 1

    const failed = await eventsOf('rt-sched', 'system.webhook_delivery_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ tenant_id: 'rt-sched', category: 'system', actor: { type: 'system' } });
    expect(failed[0].data).toMatchObject({ component: 'webhook_dispatcher', severity: 'warning',
      details: { subscription_id: sub.id, delivery_id: row.delivery_id, event_id: row.event_id, attempts: 5, last_response_status: 500 } });
    expect(failed[0].trace_id).toBe(rx.at('/sched')[0].event.trace_id);
    const subNow = (await admin('GET', `/v1/admin/webhooks/${sub.id}`)).body;
    expect(subNow).toMatchObject({ consecutive_failures: 1, status: 'ACTIVE' });
    expect(subNow.last_failure_at).toBeDefined();
  });

  it('RETRYING rows carry next_retry_at; a later 2xx is SUCCESS and resets consecutive_failures', async () => {
    const fund = await fundedTenant(admin, 'rt-ok');
    const sub = await createSub(admin, rx, {
      tenant: 'rt-ok', path: '/ok', behave: (n) => ({ status: n <= 2 ? 502 : 204 }),
      retry_policy: { max_retries: 0, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 },
    });
    // first event: 1 attempt, fails, FAILED (max_retries 0) → consecutive_failures 1
    await fund();
    await waitFor(async () => (await admin('GET', `/v1/admin/webhooks/${sub.id}`)).body.consecutive_failures === 1, 5000, 'one failure');
    // now retries allowed: the second event fails once (n=2), then succeeds (n=3)
    expect((await admin('PATCH', `/v1/admin/webhooks/${sub.id}`, { retry_policy: { max_retries: 3, initial_delay_ms: 300, backoff_multiplier: 1, max_delay_ms: 1000 } })).status).toBe(200);
    await fund();
    const retrying = await waitFor(async () => (await allDeliveries(admin, sub.id, 'status=RETRYING'))[0], 5000, 'RETRYING row');
    expect(retrying.attempts).toBe(1);
    expect(Date.parse(retrying.next_retry_at)).toBeGreaterThan(Date.parse(retrying.attempted_at));
    expect(retrying.error_message).toBe('HTTP 502');
    const done = await waitFor(async () => (await allDeliveries(admin, sub.id, 'status=SUCCESS'))[0], 5000, 'SUCCESS row');
    expect(done).toMatchObject({ attempts: 2, response_status: 204 });
    expect(done.error_message).toBeUndefined();
    expect((await admin('GET', `/v1/admin/webhooks/${sub.id}`)).body.consecutive_failures).toBe(0);
    // the status filter sees one FAILED, one SUCCESS, no RETRYING any more
    expect(await allDeliveries(admin, sub.id, 'status=FAILED')).toHaveLength(1);
    expect(await allDeliveries(admin, sub.id, 'status=RETRYING')).toHaveLength(0);
  });

  it('3xx is a failure and the redirect is not followed', async () => {
    const fund = await fundedTenant(admin, 'rt-3xx');
    rx.endpoint('/elsewhere');
    const sub = await createSub(admin, rx, {
      tenant: 'rt-3xx', path: '/moved', behave: () => ({ status: 307 }),
      retry_policy: { max_retries: 0, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 },
    });
    await fund();
    const [row] = await waitFor(async () => { const d = await allDeliveries(admin, sub.id); return d[0]?.status === 'FAILED' && d; }, 5000, 'FAILED');
    expect(row).toMatchObject({ response_status: 307, error_message: 'HTTP 307', attempts: 1 });
    expect(rx.at('/elsewhere')).toHaveLength(0);
  });

  it('a receiver that does not answer fails the attempt at the timeout; a slow one inside it succeeds', async () => {
    const fund = await fundedTenant(admin, 'rt-slow');
    const hang = await createSub(admin, rx, {
      tenant: 'rt-slow', path: '/hang', behave: () => 'hang',
      retry_policy: { max_retries: 0, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 },
    });
    const slow = await createSub(admin, rx, { tenant: 'rt-slow', path: '/slowok', behave: () => ({ status: 200, delayMs: TIMEOUT_MS / 3 }) });
    await fund();
    const [h] = await waitFor(async () => { const d = await allDeliveries(admin, hang.id); return d[0]?.status === 'FAILED' && d; }, 5000, 'timeout');
    expect(h.error_message).toBe(`timed out after ${TIMEOUT_MS} ms`);
    expect(h.response_status).toBeUndefined();
    expect(h.response_time_ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    const [ok] = await waitFor(async () => { const d = await allDeliveries(admin, slow.id); return d[0]?.status === 'SUCCESS' && d; }, 5000, 'slow success');
    expect(ok.response_time_ms).toBeGreaterThanOrEqual(TIMEOUT_MS / 3 - 5);
  });

  it('a slow receiver does not hold up the others', async () => {
    const fund = await fundedTenant(admin, 'rt-hol');
    await createSub(admin, rx, { tenant: 'rt-hol', path: '/hol-slow', behave: () => ({ status: 200, delayMs: 400 }) });
    await createSub(admin, rx, { tenant: 'rt-hol', path: '/hol-fast' });
    const t0 = Date.now();
    for (let i = 0; i < 6; i++) await fund();
    await waitFor(() => rx.at('/hol-fast').length === 6, 5000, 'fast receiver');
    const fastDone = Date.now() - t0;
    expect(rx.at('/hol-slow').length).toBeLessThan(6); // still working through its queue
    expect(fastDone).toBeLessThan(1500);
    await waitFor(() => rx.at('/hol-slow').length === 6, 10_000, 'slow receiver catches up');
    // the slow one got its deliveries strictly one after another, in order
    const slowIds = rx.at('/hol-slow').map((r) => r.event.event_id);
    expect(slowIds).toEqual(rx.at('/hol-fast').map((r) => r.event.event_id));
    for (const g of gaps('/hol-slow')) expect(g).toBeGreaterThanOrEqual(395);
  });
});

describe('auto-disable', () => {
  it('reaching disable_after_failures disables the subscription with exactly one webhook.disabled', async () => {
    const fund = await fundedTenant(admin, 'rt-dis');
    const sub = await createSub(admin, rx, {
      tenant: 'rt-dis', path: '/dis', behave: () => ({ status: 500 }), disable_after_failures: 3,
      retry_policy: { max_retries: 0, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 },
    });
    // several failing deliveries at once: more than the threshold
    await Promise.all(Array.from({ length: 6 }, () => fund()));
    await waitFor(async () => (await admin('GET', `/v1/admin/webhooks/${sub.id}`)).body.status === 'DISABLED', 10_000, 'DISABLED');
    await sleep(500);
    const disabled = await eventsOf('rt-dis', 'webhook.disabled');
    expect(disabled).toHaveLength(1);
    const ev = disabled[0];
    expect(ev.data).toMatchObject({ subscription_id: sub.id, tenant_id: 'rt-dis', previous_status: 'ACTIVE', new_status: 'DISABLED', disable_reason: 'consecutive_failures_exceeded_threshold' });
    expect(ev.correlation_id).toMatch(new RegExp(`^webhook_auto_disable:${sub.id}:dlv_[0-9a-f]{24}$`));
    expect(ev.actor).toEqual({ type: 'system' });
    const subNow = (await admin('GET', `/v1/admin/webhooks/${sub.id}`)).body;
    expect(subNow.consecutive_failures).toBe(3);
    // the deliveries after the disabling one were not sent
    expect(rx.at('/dis')).toHaveLength(3);
    const rows = await allDeliveries(admin, sub.id);
    expect(rows).toHaveLength(6);
    expect(rows.every((d) => d.status === 'FAILED')).toBe(true);
    expect(rows.filter((d) => d.attempts === 0).every((d) => /not sent: subscription is DISABLED/.test(d.error_message))).toBe(true);
    // DISABLED receives nothing new
    await fund();
    await sleep(400);
    expect(rx.at('/dis')).toHaveLength(3);
    expect(await allDeliveries(admin, sub.id)).toHaveLength(6);
    expect(await eventsOf('rt-dis', 'webhook.disabled')).toHaveLength(1);
    expect(await eventsOf('rt-dis', 'system.webhook_delivery_failed')).toHaveLength(3);

    // re-enabled by PATCH: counter reset, delivery resumes
    rx.behave('/dis', () => ({ status: 200 }));
    expect((await admin('PATCH', `/v1/admin/webhooks/${sub.id}`, { status: 'ACTIVE' })).body.consecutive_failures).toBe(0);
    await fund();
    await waitFor(() => rx.at('/dis').length === 4, 5000, 'delivery after re-enable');
  });

  it('system.webhook_delivery_failed reaches other __system__ subscriptions, never the one it reports on', async () => {
    const fund = await fundedTenant(admin, 'rt-loop');
    const failing = await createSub(admin, rx, {
      path: '/sys-failing', event_types: ['budget.funded', 'system.webhook_delivery_failed'], behave: () => ({ status: 500 }),
      retry_policy: { max_retries: 0, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 }, disable_after_failures: 100,
    });
    await createSub(admin, rx, { path: '/sys-watch', event_types: ['system.webhook_delivery_failed'] });
    await fund();
    const watched = await waitFor(() => rx.at('/sys-watch').find((r) => r.event.data?.details?.subscription_id === failing.id), 10_000, 'watcher');
    expectWellFormed(watched);
    await sleep(500);
    expect(rx.at('/sys-failing').filter((r) => r.event.event_type === 'system.webhook_delivery_failed'
      && r.event.data?.details?.subscription_id === failing.id)).toHaveLength(0);
    expect((await admin('PATCH', `/v1/admin/webhooks/${failing.id}`, { status: 'PAUSED' })).status).toBe(200);
    void SYSTEM_TENANT;
  });
});

describe('delivery-time URL check', () => {
  it('a URL the security config no longer allows fails at delivery without a connection', async () => {
    const fund = await fundedTenant(admin, 'rt-ssrf');
    const sub = await createSub(admin, rx, {
      tenant: 'rt-ssrf', path: '/ssrf',
      retry_policy: { max_retries: 0, initial_delay_ms: 100, backoff_multiplier: 1, max_delay_ms: 1000 },
    });
    // loopback blocked again (existing subscriptions are not re-validated by the PUT)
    expect((await admin('PUT', '/v1/admin/config/webhook-security', { allow_http: true })).status).toBe(200);
    try {
      await fund();
      const [row] = await waitFor(async () => { const d = await allDeliveries(admin, sub.id); return d[0]?.status === 'FAILED' && d; }, 5000, 'FAILED');
      expect(row.error_message).toMatch(/^Webhook URL rejected: .*blocked range/);
      expect(row.response_status).toBeUndefined();
      expect(rx.at('/ssrf')).toHaveLength(0);
    } finally {
      await allowLoopback(admin);
    }
  });
});

describe('events', () => {
  it('every event this suite produced is a valid Event', async () => {
    expect(await expectAllStoredEventsValid(s.redis.client)).toBeGreaterThan(0);
  });
});
