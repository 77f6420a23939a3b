// The owner-triggered delivery operations on a real server and loopback receiver: the test
// probe (both ops), replayEvents (all-or-narrow selection, max_events and scan limits,
// chronological order, REPLAY_IN_PROGRESS) and the delivery lists (filters, keyset paging).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { expectValidEvent } from './helpers/events';
import { ownerOf } from '../src/events/subscriptions';
import { keys } from '../src/store/keys';
import { appendEvent } from '../src/events/outbox';
import {
  Receiver, adminApi, allowLoopback, createSub, fundedTenant, waitFor, sleep, allDeliveries, expectWellFormed,
  expectAllStoredEventsValid } from './delivery-helpers';

const SCAN_LIMIT = 60;
let s: TestServer;
let rx: Receiver;
let admin: ReturnType<typeof adminApi>;

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '10', CYCLES_WEBHOOK_TIMEOUT_MS: '1000', CYCLES_WEBHOOK_REPLAY_SCAN_LIMIT: String(SCAN_LIMIT), CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY: '1' });
  rx = await new Receiver().start();
  admin = adminApi(s.adminUrl, s.adminKey);
  await allowLoopback(admin);
}, 30_000);
afterAll(async () => { await s?.stop(); await rx?.stop(); });

const getSub = async (id: string) => (await admin('GET', `/v1/admin/webhooks/${id}`)).body;
const iso = (ms: number) => new Date(ms).toISOString();

describe('test probe', () => {
  it('sends one signed system.webhook_test to a tenant-owned subscription; nothing about it changes', async () => {
    await fundedTenant(admin, 'op-probe');
    const sub = await createSub(admin, rx, { tenant: 'op-probe', path: '/probe', event_types: ['budget.funded'], headers: { 'X-Team': 'blue' } });
    const before = await getSub(sub.id);
    const r = await admin('POST', `/v1/admin/webhooks/${sub.id}/test`);
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ success: true, response_status: 200 });
    expect(r.body.event_id).toMatch(/^evt_test_/);
    expect(typeof r.body.response_time_ms).toBe('number');
    const [got] = rx.at('/probe');
    expectWellFormed(got); // signed with the create-time secret
    expect(got.event).toMatchObject({ event_id: r.body.event_id, event_type: 'system.webhook_test', category: 'system', tenant_id: 'op-probe',
      data: { component: 'webhook_dispatcher', severity: 'info', details: { subscription_id: sub.id, test: true } } });
    expect(got.headers['x-team']).toBe('blue');
    expect(got.headers['x-cycles-trace-id']).toBe(r.headers.get('x-cycles-trace-id'));
    expect(got.event.request_id).toBe(r.headers.get('x-request-id'));
    const after = await getSub(sub.id);
    expect(after).toEqual(before); // status, consecutive_failures, last_* untouched
    // recorded as one (not queued) delivery row
    const rows = await allDeliveries(admin, sub.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ event_id: r.body.event_id, event_type: 'system.webhook_test', status: 'SUCCESS', attempts: 1, response_status: 200 });
    expect(rows[0].delivery_id).toMatch(/^dlv_test_/);
  });

  it('a failing endpoint is 200 with success=false; the failure does not count', async () => {
    await fundedTenant(admin, 'op-pfail');
    const sub = await createSub(admin, rx, { tenant: 'op-pfail', path: '/pfail', behave: () => ({ status: 503 }) });
    const r = await admin('POST', `/v1/admin/webhooks/${sub.id}/test`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ success: false, response_status: 503, error_message: 'HTTP 503' });
    expectWellFormed(rx.at('/pfail')[0]);
    expect(await getSub(sub.id)).toMatchObject({ status: 'ACTIVE', consecutive_failures: 0 });
    expect((await getSub(sub.id)).last_failure_at).toBeUndefined();
    expect((await allDeliveries(admin, sub.id))[0]).toMatchObject({ status: 'FAILED', attempts: 1, response_status: 503 });

    // nothing listening at all: no response_status, an error message, still 200
    const dead = await admin('PATCH', `/v1/admin/webhooks/${sub.id}`, { url: 'http://127.0.0.1:9/nothing' });
    expect(dead.status).toBe(200);
    const r2 = await admin('POST', `/v1/admin/webhooks/${sub.id}/test`);
    expect(r2.status).toBe(200);
    expect(r2.body.success).toBe(false);
    expect(r2.body.response_status).toBeUndefined();
    expect(r2.body.error_message).toMatch(/ECONNREFUSED|connect/i);
  });

  it('works on a PAUSED subscription (and leaves it PAUSED); tenant key and admin on testTenantWebhook', async () => {
    await fundedTenant(admin, 'op-ptn');
    const sub = await createSub(admin, rx, { tenant: 'op-ptn', path: '/ptn' });
    await admin('PATCH', `/v1/admin/webhooks/${sub.id}`, { status: 'PAUSED' });
    const key = await s.tenantKey('op-ptn', ['webhooks:read', 'webhooks:write']);
    const r = await call(s.adminUrl, 'POST', `/v1/webhooks/${sub.id}/test`, { key });
    expect(r.status, r.text).toBe(200);
    expect(r.body.success).toBe(true);
    const got = rx.at('/ptn')[0];
    expectWellFormed(got);
    expect(got.event.actor).toMatchObject({ type: 'api_key' });
    const ra = await admin('POST', `/v1/webhooks/${sub.id}/test`);
    expect(ra.status).toBe(200);
    expect(rx.at('/ptn')[1].event.actor).toEqual({ type: 'admin_on_behalf_of' });
    expect((await getSub(sub.id)).status).toBe('PAUSED');
  });

  it('unknown subscription → 404; CLOSED owner → 409 TENANT_CLOSED (test and replay)', async () => {
    const r = await admin('POST', '/v1/admin/webhooks/whsub_nobody_0123456789abcdef01234567/test');
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('WEBHOOK_NOT_FOUND');
    await fundedTenant(admin, 'op-closed');
    const sub = await createSub(admin, rx, { tenant: 'op-closed', path: '/closed' });
    expect((await admin('PATCH', '/v1/admin/tenants/op-closed', { status: 'CLOSED' })).status).toBe(200);
    const t = await admin('POST', `/v1/admin/webhooks/${sub.id}/test`);
    expect(t.status).toBe(409);
    expect(t.body.error).toBe('TENANT_CLOSED');
    const rp = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, {});
    expect(rp.status).toBe(409);
    expect(rp.body.error).toBe('TENANT_CLOSED');
    expect(rx.at('/closed')).toHaveLength(0);
    // reads keep working
    expect((await admin('GET', `/v1/admin/webhooks/${sub.id}/deliveries`)).status).toBe(200);
  });
});

describe('replay', () => {
  it('queues every deliverable event of the window as new deliveries, delivered oldest first', async () => {
    const fund = await fundedTenant(admin, 'op-rp');
    const t0 = Date.now();
    for (let i = 0; i < 12; i++) await fund(i + 1);
    const t1 = Date.now();
    await sleep(5);
    await fund(100); // after the window
    // created afterwards: live fan-out gave it nothing of the above
    const sub = await createSub(admin, rx, { tenant: 'op-rp', path: '/rp', event_types: ['budget.funded'] });
    const r = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(t0), to: iso(t1) });
    expect(r.status, r.text).toBe(202);
    expect(r.body).toMatchObject({ events_queued: 12, estimated_completion_seconds: 2 });
    expect(r.body.replay_id).toMatch(/^rpl_/);
    await waitFor(() => rx.at('/rp').length === 12, 10_000, '12 replayed');
    await sleep(200);
    expect(rx.at('/rp')).toHaveLength(12);
    for (const g of rx.at('/rp')) expectWellFormed(g);
    const allocated = rx.at('/rp').map((g) => BigInt(g.event.data.new_state.allocated));
    expect(allocated).toEqual([...allocated].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))); // chronological
    const ts = rx.at('/rp').map((g) => Date.parse(g.event.timestamp));
    expect(Math.min(...ts)).toBeGreaterThanOrEqual(t0);
    expect(Math.max(...ts)).toBeLessThanOrEqual(t1);
    const rows = await allDeliveries(admin, sub.id);
    expect(rows).toHaveLength(12);
    expect(rows.every((d) => d.status === 'SUCCESS' && /^dlv_rp_/.test(d.delivery_id))).toBe(true);

    // not idempotent: the same replay again delivers the window again, as new deliveries
    const again = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(t0), to: iso(t1) });
    expect(again.status).toBe(202);
    expect(again.body.events_queued).toBe(12);
    await waitFor(() => rx.at('/rp').length === 24, 10_000, '24 received');
    expect(new Set((await allDeliveries(admin, sub.id)).map((d) => d.delivery_id)).size).toBe(24);
  });

  it('all-or-narrow: more than max_events deliverable → 400 and nothing queued; event_types narrows', async () => {
    const fund = await fundedTenant(admin, 'op-narrow');
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) await fund();
    const sub = await createSub(admin, rx, { tenant: 'op-narrow', path: '/narrow', event_types: ['budget.funded', 'budget.created'] });
    const t1 = Date.now();
    const r = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(t0 - 60_000), to: iso(t1), max_events: 5 });
    expect(r.status, r.text).toBe(400); // 5 funded + 1 created = 6 deliverable
    expect(r.body.error).toBe('INVALID_REQUEST');
    await sleep(200);
    expect(rx.at('/narrow')).toHaveLength(0);
    expect(await allDeliveries(admin, sub.id)).toHaveLength(0);
    expect(await s.redis.client.exists(keys.webhookReplayLock(ownerOf(sub.id)!, sub.id))).toBe(0); // a rejected replay holds no lock

    const only = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(t0 - 60_000), to: iso(t1), max_events: 5, event_types: ['budget.created'] });
    expect(only.status).toBe(202);
    expect(only.body.events_queued).toBe(1);
    await waitFor(() => rx.at('/narrow').length === 1, 5000, 'one replayed');
    expect(rx.at('/narrow')[0].event.event_type).toBe('budget.created');
    await waitFor(async () => (await s.redis.client.exists(keys.webhookReplayLock(ownerOf(sub.id)!, sub.id))) === 0, 5000, 'lock released');
    const all = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(t0 - 60_000), to: iso(t1), max_events: 6 });
    expect(all.status).toBe(202);
    expect(all.body.events_queued).toBe(6);
  });

  it('a window beyond the scan limit → 400 even when few events are deliverable', async () => {
    const t = 'op-scan';
    await fundedTenant(admin, t);
    const sub = await createSub(admin, rx, { tenant: t, path: '/scan', event_types: ['budget.funded'] });
    const t0 = Date.now();
    const p = s.redis.client.pipeline();
    for (let i = 0; i < SCAN_LIMIT + 5; i++) {
      appendEvent(p, t, 'tenant.updated', { tenant_id: t, previous_status: 'ACTIVE', new_status: 'ACTIVE', changed_fields: ['name'] }, { actor_json: '{"type":"admin"}' });
    }
    await p.exec();
    const r = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(t0), to: iso(Date.now() + 1), max_events: 1000 });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('INVALID_REQUEST');
    expect(r.body.message).toMatch(/scan limit/);
    for (const [id, f] of (await s.redis.client.xrange(keys.outbox(t), '-', '+', 'COUNT', 3))) {
      const { renderEvent, fieldsOf } = await import('../src/events/model');
      expectValidEvent(renderEvent(t, id, fieldsOf(f)));
    }
  });

  it('max_events outside 1–1000, from after to, unknown subscription → 400 / 404', async () => {
    await fundedTenant(admin, 'op-bad');
    const sub = await createSub(admin, rx, { tenant: 'op-bad', path: '/bad' });
    for (const max_events of [0, 1001]) {
      const r = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { max_events });
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('INVALID_REQUEST');
    }
    const inverted = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { from: iso(Date.now()), to: iso(Date.now() - 60_000) });
    expect(inverted.status).toBe(400);
    const none = await admin('POST', '/v1/admin/webhooks/whsub_op-bad_0123456789abcdef01234567/replay', {});
    expect(none.status).toBe(404);
    expect(none.body.error).toBe('WEBHOOK_NOT_FOUND');
  });

  it('one replay per subscription at a time: 409 REPLAY_IN_PROGRESS until its deliveries are final', async () => {
    const fund = await fundedTenant(admin, 'op-conc');
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) await fund();
    const sub = await createSub(admin, rx, { tenant: 'op-conc', path: '/conc', behave: () => ({ status: 200, delayMs: 150 }) });
    const body = { from: iso(t0), to: iso(Date.now()) };
    // two at once: exactly one is accepted
    const [a, b] = await Promise.all([
      admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, body),
      admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, body),
    ]);
    expect([a.status, b.status].sort()).toEqual([202, 409]);
    expect([a, b].find((x) => x.status === 409)!.body.error).toBe('REPLAY_IN_PROGRESS');
    const c = await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, body);
    expect(c.status).toBe(409); // still delivering
    await waitFor(() => rx.at('/conc').length === 4, 10_000, 'replay delivered');
    await waitFor(async () => (await admin('POST', `/v1/admin/webhooks/${sub.id}/replay`, { ...body, event_types: ['budget.frozen'] })).status === 202, 5000, 'replay allowed again');
  });

  it('a PAUSED subscription: 202 with nothing queued; __system__ subscriptions replay every tenant', async () => {
    const fa = await fundedTenant(admin, 'op-sys-a');
    const fb = await fundedTenant(admin, 'op-sys-b');
    const t0 = Date.now();
    await fa(); await fb(); await fa();
    const t1 = Date.now();
    const paused = await createSub(admin, rx, { tenant: 'op-sys-a', path: '/paused' });
    await admin('PATCH', `/v1/admin/webhooks/${paused.id}`, { status: 'PAUSED' });
    const rp = await admin('POST', `/v1/admin/webhooks/${paused.id}/replay`, { from: iso(t0), to: iso(t1) });
    expect(rp.status).toBe(202);
    expect(rp.body).toMatchObject({ events_queued: 0, estimated_completion_seconds: 0 });

    const sys = await createSub(admin, rx, { path: '/sysrp', event_types: ['budget.funded'] });
    // the relay indexes events asynchronously: the global index must have them
    await waitFor(async () => (await s.redis.client.zcount(keys.eventIndex(), t0, t1)) >= 3, 5000, 'indexed');
    const r = await admin('POST', `/v1/admin/webhooks/${sys.id}/replay`, { from: iso(t0), to: iso(t1) });
    expect(r.status, r.text).toBe(202);
    await waitFor(() => rx.at('/sysrp').length === r.body.events_queued, 10_000, 'system replay');
    const got = rx.at('/sysrp').filter((g) => g.event.tenant_id.startsWith('op-sys-'));
    expect(got.map((g) => g.event.tenant_id)).toEqual(['op-sys-a', 'op-sys-b', 'op-sys-a']);
    for (const g of got) expectWellFormed(g);
  });
});

describe('delivery lists', () => {
  it('keyset pages visit every delivery once, newest first; from/to and status filter; foreign cursor → 400', async () => {
    const fund = await fundedTenant(admin, 'op-list');
    const sub = await createSub(admin, rx, { tenant: 'op-list', path: '/list' });
    for (let i = 0; i < 25; i++) await fund();
    await waitFor(async () => (await allDeliveries(admin, sub.id, 'status=SUCCESS')).length === 25, 10_000, '25 delivered');
    const seen: any[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = await admin('GET', `/v1/admin/webhooks/${sub.id}/deliveries?limit=10${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      pages++;
      seen.push(...r.body.deliveries);
      if (!r.body.has_more) expect(r.body.next_cursor).toBeUndefined();
      cursor = r.body.has_more ? r.body.next_cursor : undefined;
      // a delivery created meanwhile does not shift the walk
      if (pages === 1) await fund();
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(25);
    expect(new Set(seen.map((d) => d.delivery_id)).size).toBe(25);
    const idsByTime = seen.map((d) => d.event_id);
    expect(idsByTime).toEqual([...idsByTime].sort((a, b) => {
      const [, am, as] = a.split('_'); const [, bm, bs] = b.split('_');
      return BigInt(am) === BigInt(bm) ? (BigInt(as) > BigInt(bs) ? -1 : 1) : (BigInt(am) > BigInt(bm) ? -1 : 1);
    }));
    // from/to on the delivery's creation time
    const mid = Date.parse(seen[12].attempted_at);
    const newer = await allDeliveries(admin, sub.id, `from=${encodeURIComponent(iso(mid))}`);
    expect(newer.length).toBeGreaterThan(0);
    expect(newer.every((d) => Date.parse(d.attempted_at) >= mid - 50)).toBe(true);
    expect(await allDeliveries(admin, sub.id, `to=${encodeURIComponent(iso(Date.now() - 3_600_000))}`)).toHaveLength(0);
    // a cursor minted under another filter
    const p1 = await admin('GET', `/v1/admin/webhooks/${sub.id}/deliveries?limit=2`);
    const bad = await admin('GET', `/v1/admin/webhooks/${sub.id}/deliveries?limit=2&status=FAILED&cursor=${p1.body.next_cursor}`);
    expect(bad.status).toBe(400);
    expect((await admin('GET', `/v1/admin/webhooks/${sub.id}/deliveries?status=LOST`)).status).toBe(400);
    expect((await admin('GET', `/v1/admin/webhooks/${sub.id}/deliveries?limit=101`)).status).toBe(400);
    expect((await admin('GET', '/v1/admin/webhooks/whsub_op-list_0123456789abcdef01234567/deliveries')).status).toBe(404);
  });
});

describe('events', () => {
  it('every event this suite produced is a valid Event', async () => {
    expect(await expectAllStoredEventsValid(s.redis.client)).toBeGreaterThan(0);
  });
});
