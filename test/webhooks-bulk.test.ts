// bulkActionWebhooks: row outcomes (succeeded / skipped / failed with the row vocabulary),
// one event per real transition with webhook_bulk_action:<action>:<request_id>, the gates
// (empty filter, COUNT_MISMATCH with nothing changed, LIMIT_EXCEEDED above 500 matches,
// idempotent replay and mismatch), the closed-owner guard, and one audit row.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { expectValidEvent, expectValidStoredEvents, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';

let s: TestServer;
let n = 0;
const uniq = (p: string) => `${p}-${process.pid}-${++n}`;
const HOOK = 'https://93.184.215.14/hook';

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64') });
});
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const bulk = (body: Record<string, unknown>) => admin('POST', '/v1/admin/webhooks/bulk-action', { idempotency_key: uniq('k'), ...body });

async function tenantWith(count: number): Promise<{ t: string; ids: string[] }> {
  const t = uniq('blk');
  await putTenant(s.redis.client, t);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: `${HOOK}/${i}`, event_types: ['budget.created'] });
    expect(r.status).toBe(201);
    ids.push(r.body.subscription.subscription_id);
  }
  return { t, ids };
}

const status = async (t: string, id: string) => s.redis.client.hget(keys.webhook(t, id), 'status');
const sorted = (a: string[]) => [...a].sort();

async function bulkEvents(t: string, requestId: string | null) {
  const evs = (await storedEvents(s.redis.client, t)).filter((e) => e.request_id === requestId);
  evs.forEach(expectValidEvent);
  return evs;
}

describe('bulkActionWebhooks', () => {
  it('PAUSE: ACTIVE → PAUSED (webhook.paused each), PAUSED and DISABLED skipped ALREADY_IN_TARGET_STATE', async () => {
    const { t, ids } = await tenantWith(4);
    await admin('PATCH', `/v1/admin/webhooks/${ids[2]}`, { status: 'PAUSED' });
    await s.redis.client.hset(keys.webhook(t, ids[3]), 'status', 'DISABLED');
    const r = await bulk({ filter: { tenant_id: t }, action: 'PAUSE', expected_count: 4 });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ action: 'PAUSE', total_matched: 4, failed: [] });
    expect(sorted(r.body.succeeded.map((x: any) => x.id))).toEqual(sorted([ids[0], ids[1]]));
    expect(sorted(r.body.skipped.map((x: any) => x.id))).toEqual(sorted([ids[2], ids[3]]));
    expect(r.body.skipped.every((x: any) => x.reason === 'ALREADY_IN_TARGET_STATE')).toBe(true);
    expect([await status(t, ids[0]), await status(t, ids[1]), await status(t, ids[3])]).toEqual(['PAUSED', 'PAUSED', 'DISABLED']);
    const reqId = r.headers.get('x-request-id');
    const evs = await bulkEvents(t, reqId);
    expect(evs.map((e) => e.event_type)).toEqual(['webhook.paused', 'webhook.paused']);
    expect(evs.every((e) => e.correlation_id === `webhook_bulk_action:pause:${reqId}`)).toBe(true);
    expect(evs.every((e) => e.actor?.type === 'admin')).toBe(true);
  });

  it('RESUME: PAUSED → ACTIVE, ACTIVE skipped, DISABLED failed INVALID_TRANSITION; never webhook.disabled', async () => {
    const { t, ids } = await tenantWith(3);
    await admin('PATCH', `/v1/admin/webhooks/${ids[0]}`, { status: 'PAUSED' });
    await s.redis.client.hset(keys.webhook(t, ids[2]), 'status', 'DISABLED');
    const r = await bulk({ filter: { tenant_id: t }, action: 'RESUME' });
    expect(r.body.succeeded).toEqual([{ id: ids[0] }]);
    expect(r.body.skipped).toEqual([{ id: ids[1], reason: 'ALREADY_IN_TARGET_STATE' }]);
    expect(r.body.failed).toEqual([{ id: ids[2], error_code: 'INVALID_TRANSITION', message: expect.any(String) }]);
    expect(await status(t, ids[2])).toBe('DISABLED');
    const evs = await bulkEvents(t, r.headers.get('x-request-id'));
    expect(evs.map((e) => [e.event_type, (e.data as any).previous_status])).toEqual([['webhook.resumed', 'PAUSED']]);
  });

  it('DELETE: rows removed with webhook.deleted each; the filter\'s other fields (status, event_type, search) AND-combine', async () => {
    const { t, ids } = await tenantWith(3);
    await admin('PATCH', `/v1/admin/webhooks/${ids[1]}`, { status: 'PAUSED', event_types: ['tenant.updated'] });
    const r = await bulk({ filter: { tenant_id: t, status: 'ACTIVE', event_type: 'budget.created', search: '/hook/2' }, action: 'DELETE', expected_count: 1 });
    expect(r.body).toMatchObject({ total_matched: 1, succeeded: [{ id: ids[2] }], failed: [], skipped: [] });
    expect(await s.redis.client.exists(keys.webhook(t, ids[2]))).toBe(0);
    const evs = await bulkEvents(t, r.headers.get('x-request-id'));
    expect(evs.map((e) => e.event_type)).toEqual(['webhook.deleted']);
    expect(evs[0].correlation_id).toBe(`webhook_bulk_action:delete:${r.headers.get('x-request-id')}`);
    expect(await s.redis.client.exists(keys.webhook(t, ids[0]))).toBe(1);
  });

  it('a CLOSED owner\'s rows fail INVALID_TRANSITION (Rule 2) and stay as they were', async () => {
    const { t, ids } = await tenantWith(1);
    await s.redis.client.hset(keys.tenant(t), 'status', 'CLOSED');
    const r = await bulk({ filter: { tenant_id: t }, action: 'DELETE' });
    expect(r.body.failed).toEqual([{ id: ids[0], error_code: 'INVALID_TRANSITION', message: expect.stringMatching(/CLOSED/) }]);
    expect(await s.redis.client.exists(keys.webhook(t, ids[0]))).toBe(1);
  });

  it('gates: empty filter 400; COUNT_MISMATCH 409 changes nothing and frees the key; same key + body replays; other body → 409', async () => {
    const { t, ids } = await tenantWith(2);
    expect((await bulk({ filter: {}, action: 'PAUSE' })).status).toBe(400);
    for (const filter of [{ tenant_id: '' }, { search: '  ' }]) {
      const blank = await bulk({ filter, action: 'DELETE' });
      expect([blank.status, blank.body.error], JSON.stringify(filter)).toEqual([400, 'INVALID_REQUEST']);
    }
    expect([await status(t, ids[0]), await status(t, ids[1])]).toEqual(['ACTIVE', 'ACTIVE']);
    const key = uniq('k');
    const mismatch = await admin('POST', '/v1/admin/webhooks/bulk-action', { filter: { tenant_id: t }, action: 'PAUSE', expected_count: 3, idempotency_key: key });
    expect([mismatch.status, mismatch.body.error]).toEqual([409, 'COUNT_MISMATCH']);
    expect(mismatch.body.details).toMatchObject({ total_matched: 2 });
    expect([await status(t, ids[0]), await status(t, ids[1])]).toEqual(['ACTIVE', 'ACTIVE']);
    const body = { filter: { tenant_id: t }, action: 'PAUSE', expected_count: 2, idempotency_key: key };
    const first = await admin('POST', '/v1/admin/webhooks/bulk-action', body);
    expect(first.body.succeeded).toHaveLength(2);
    await admin('PATCH', `/v1/admin/webhooks/${ids[0]}`, { status: 'ACTIVE' });
    const replay = await admin('POST', '/v1/admin/webhooks/bulk-action', body);
    expect(replay.body).toEqual(first.body);
    expect(await status(t, ids[0])).toBe('ACTIVE'); // not re-applied
    const other = await admin('POST', '/v1/admin/webhooks/bulk-action', { ...body, action: 'RESUME' });
    expect([other.status, other.body.error]).toEqual([409, 'IDEMPOTENCY_MISMATCH']);
  });

  it('LIMIT_EXCEEDED (400, details.total_matched) above 500 matching rows, nothing changed', async () => {
    // seeded directly: 501 records of one filter value across three tenants (the per-tenant cap is 200)
    const tag = uniq('lim');
    const p = s.redis.client.pipeline();
    const now = Date.now();
    for (let i = 0; i < 501; i++) {
      const t = `${tag}-${i % 3}`;
      const id = `whsub_${t}_${i.toString(16).padStart(24, '0')}`;
      p.hset(keys.webhook(t, id), { subscription_id: id, tenant_id: t, url: `https://93.184.215.14/${tag}`, status: 'ACTIVE',
        event_types: '["budget.created"]', event_categories: '[]', created_at_ms: String(now), rev: '1' });
      p.zadd(keys.webhookIndex(t), now, id);
      p.zadd(keys.webhooksAll(), now, id);
    }
    await p.exec();
    const r = await bulk({ filter: { search: tag }, action: 'PAUSE' });
    expect([r.status, r.body.error]).toEqual([400, 'LIMIT_EXCEEDED']);
    expect(r.body.details).toMatchObject({ total_matched: 501 });
    const list = await admin('GET', `/v1/admin/webhooks?search=${tag}&status=PAUSED`);
    expect(list.body.subscriptions).toEqual([]);
    // clean up (other tests list across tenants)
    const d = s.redis.client.pipeline();
    for (const id of await s.redis.client.zrange(keys.webhooksAll(), 0, -1)) if (id.includes(tag)) d.zrem(keys.webhooksAll(), id);
    await d.exec();
  });

  it('one audit row per invocation with the per-row outcome', async () => {
    const { t } = await tenantWith(2);
    const r = await bulk({ filter: { tenant_id: t }, action: 'PAUSE' });
    const reqId = r.headers.get('x-request-id');
    let logs: any[] = [];
    for (let i = 0; i < 50 && logs.length === 0; i++) {
      logs = (await admin('GET', `/v1/admin/audit/logs?operation=bulkActionWebhooks&limit=100`)).body.logs.filter((l: any) => l.request_id === reqId);
      if (logs.length === 0) await new Promise((res) => setTimeout(res, 20));
    }
    expect(logs).toHaveLength(1);
    expect(logs[0].metadata).toMatchObject({ action: 'PAUSE', total_matched: 2 });
    expect(logs[0].metadata.succeeded_ids).toHaveLength(2);
  });
});

describe('events', () => {
  it('every webhook event this file produced (all outboxes) is a valid Event with its EventData', async () => {
    expect(await expectValidStoredEvents(s.redis.client, 'webhook')).toBeGreaterThan(0);
  });
});
