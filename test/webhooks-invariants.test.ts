// The normative WEBHOOK SUBSCRIPTION INVARIANTS on every provisioning path: admin create
// and update with and without tenant_id, tenant create and update, admin on behalf of the
// owner, bulk, and the Lua scripts themselves. Each test tries to persist a violating
// subscription and proves nothing was persisted by comparing the whole Redis state (audit
// rows aside: every request writes one) before and after.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { expectValidEvent, expectValidStoredEvents, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';
import { isCluster } from '../src/store/cluster';
import { runAdminScript } from '../src/admin/common';

let s: TestServer;
let n = 0;
const uniq = (p: string) => `${p}-${process.pid}-${++n}`;
const HOOK = 'https://93.184.215.14/hook';

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64') });
});
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const asKey = (key: string, method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { key, body });

/** The state a subscription write can touch: every subscription record and index, the
 *  registry, and every outbox stream. (Not the audit log — every request writes a row — nor
 *  the version counter and delivery rows, which the background dispatcher also moves.) */
async function snapshot(redis: Redis): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const k of batch) {
      if (!(/^\{t:.*\}:(webhook:|webhooks$|outbox$)/s.test(k) || k === keys.webhooksAll())) continue;
      const type = await redis.type(k);
      if (type === 'string') out[k] = await redis.get(k);
      else if (type === 'hash') out[k] = Object.entries(await redis.hgetall(k)).sort();
      else if (type === 'zset') out[k] = await redis.zrange(k, 0, -1, 'WITHSCORES');
      else if (type === 'set') out[k] = (await redis.smembers(k)).sort();
      else if (type === 'stream') out[k] = await redis.xrange(k, '-', '+');
      else if (type === 'list') out[k] = await redis.lrange(k, 0, -1);
    }
  } while (cursor !== '0');
  return out;
}

/** Runs `attempt`, expects 400 INVALID_REQUEST, and that Redis is exactly as before. */
async function refusedAndNothingPersisted(attempt: () => Promise<{ status: number; body: any }>, message?: RegExp) {
  const before = await snapshot(s.redis.client);
  const r = await attempt();
  expect([r.status, r.body?.error]).toEqual([400, 'INVALID_REQUEST']);
  if (message) expect(r.body.message).toMatch(message);
  expect(await snapshot(s.redis.client)).toEqual(before);
}

async function tenant(): Promise<string> {
  const t = uniq('inv');
  await putTenant(s.redis.client, t);
  return t;
}

async function adminCreate(t: string | undefined, body: Record<string, unknown> = {}) {
  const r = await admin('POST', `/v1/admin/webhooks${t ? `?tenant_id=${t}` : ''}`, { url: HOOK, event_types: ['budget.created'], ...body });
  expect(r.status).toBe(201);
  return r.body.subscription.subscription_id as string;
}

describe('INVARIANT 2 — a concrete tenant\'s subscription selects only tenant-visible events', () => {
  it('admin create with tenant_id: an admin-only type or category is refused; with tenant_id omitted the same selectors are accepted', async () => {
    const t = await tenant();
    await refusedAndNothingPersisted(() => admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['api_key.created'] }), /api_key\.created.*admin-only/);
    await refusedAndNothingPersisted(() => admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], event_categories: ['system'] }), /category system/);
    for (const cat of ['api_key', 'policy', 'webhook']) {
      await refusedAndNothingPersisted(() => admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['tenant.created'], event_categories: [cat] }));
    }
    // (selectors no test here produces events for: the background dispatcher stays idle)
    const sys = await admin('POST', '/v1/admin/webhooks', { url: HOOK, event_types: ['policy.deleted'], event_categories: ['api_key'] });
    expect(sys.status).toBe(201);
    expect((await admin('DELETE', `/v1/admin/webhooks/${sys.body.subscription.subscription_id}`)).status).toBe(204);
  });

  it('admin update of a concrete tenant\'s row: adding an admin-only category is refused', async () => {
    const t = await tenant();
    const id = await adminCreate(t);
    await refusedAndNothingPersisted(() => admin('PATCH', `/v1/admin/webhooks/${id}`, { event_categories: ['policy'] }));
    await refusedAndNothingPersisted(() => admin('PATCH', `/v1/admin/webhooks/${id}`, { event_types: ['webhook.deleted'], name: 'x' }));
  });

  it('effective state: a status-only PATCH that would re-activate a row still carrying admin-only selectors is refused (stored ∪ request)', async () => {
    const t = await tenant();
    const id = await adminCreate(t);
    await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'PAUSED' });
    // a row corrupted outside the API (e.g. written by an older server)
    await s.redis.client.hset(keys.webhook(t, id), 'event_categories', '["api_key"]');
    await refusedAndNothingPersisted(() => admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'ACTIVE' }), /api_key/);
    // fixing the selectors in the same PATCH is accepted
    const fixed = await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'ACTIVE', event_categories: [] });
    expect(fixed.status).toBe(200);
    expect(fixed.body).toMatchObject({ status: 'ACTIVE', event_categories: [] });
  });

  it('tenant create: an admin-only type or category is refused (the tenant-accessible boundary)', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, ['webhooks:read', 'webhooks:write']);
    await refusedAndNothingPersisted(() => asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['system.webhook_test'] }));
    await refusedAndNothingPersisted(() => asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'], event_categories: ['api_key'] }));
  });

  it('tenant update: a partial update with an admin-only type or category is refused', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, ['webhooks:read', 'webhooks:write']);
    const c = await asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'] });
    const id = c.body.subscription.subscription_id;
    await refusedAndNothingPersisted(() => asKey(key, 'PATCH', `/v1/webhooks/${id}`, { event_types: ['policy.created'] }));
    await refusedAndNothingPersisted(() => asKey(key, 'PATCH', `/v1/webhooks/${id}`, { event_categories: ['webhook'] }));
  });

  it('admin on behalf of the owner (PATCH /v1/webhooks/{id} with the admin key): same boundary; a valid change records actor admin_on_behalf_of', async () => {
    const t = await tenant();
    const id = await adminCreate(t);
    await refusedAndNothingPersisted(() => admin('PATCH', `/v1/webhooks/${id}`, { event_categories: ['system'] }));
    const ok = await admin('PATCH', `/v1/webhooks/${id}`, { status: 'PAUSED' });
    expect(ok.status).toBe(200);
    const ev = (await storedEvents(s.redis.client, t)).at(-1)!;
    expectValidEvent(ev);
    expect(ev).toMatchObject({ event_type: 'webhook.paused', actor: { type: 'admin_on_behalf_of' } });
  });
});

describe('INVARIANT 1 — at least one selector', () => {
  it('admin create without tenant_id: no selector at all is refused', async () => {
    await refusedAndNothingPersisted(() => admin('POST', '/v1/admin/webhooks', { url: HOOK, event_types: [], event_categories: [] }));
  });

  it('admin update without tenant_id (a __system__ row): clearing event_types while no category is stored is refused; with a category it is accepted', async () => {
    const id = await adminCreate(undefined, { event_types: ['api_key.revoked'] });
    await refusedAndNothingPersisted(() => admin('PATCH', `/v1/admin/webhooks/${id}`, { event_types: [] }), /SELECTOR INVARIANT/);
    await refusedAndNothingPersisted(() => admin('PATCH', `/v1/admin/webhooks/${id}`, { event_types: [], event_categories: [] }));
    const ok = await admin('PATCH', `/v1/admin/webhooks/${id}`, { event_types: [], event_categories: ['api_key'] });
    expect(ok.status).toBe(200);
  });

  it('tenant update: clearing both selectors is refused; clearing event_types with stored categories is accepted', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, ['webhooks:read', 'webhooks:write']);
    const id = (await asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'] })).body.subscription.subscription_id;
    await refusedAndNothingPersisted(() => asKey(key, 'PATCH', `/v1/webhooks/${id}`, { event_types: [] }));
    await asKey(key, 'PATCH', `/v1/webhooks/${id}`, { event_categories: ['budget'] });
    const ok = await asKey(key, 'PATCH', `/v1/webhooks/${id}`, { event_types: [] });
    expect([ok.status, ok.body.event_types, ok.body.event_categories]).toEqual([200, [], ['budget']]);
  });
});

describe('bulk and the scripts', () => {
  it('bulk RESUME of a PAUSED row whose stored selectors violate INVARIANT 2: failed INVALID_TRANSITION, nothing persisted, no event', async () => {
    const t = await tenant();
    const id = await adminCreate(t);
    await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'PAUSED' });
    await s.redis.client.hset(keys.webhook(t, id), 'event_types', '["budget.created","api_key.revoked"]');
    const before = await snapshot(s.redis.client);
    const r = await admin('POST', '/v1/admin/webhooks/bulk-action', { filter: { tenant_id: t }, action: 'RESUME', idempotency_key: uniq('k') });
    expect(r.status).toBe(200);
    expect(r.body.succeeded).toEqual([]);
    expect(r.body.failed).toEqual([{ id, error_code: 'INVALID_TRANSITION', message: expect.stringMatching(/api_key\.revoked.*admin-only/) }]);
    expect(await snapshot(s.redis.client)).toEqual(before);
  });

  it('the Lua scripts refuse a violating state even when called directly (no TypeScript validation in front)', async () => {
    const t = await tenant();
    const id = `whsub_${t}_${'ab'.repeat(12)}`;
    const fields = {
      subscription_id: id, tenant_id: t, url: HOOK, event_types: '["policy.created"]', event_categories: '[]',
      retry_policy: '{}', disable_after_failures: '10', secret_enc: 'x',
    };
    const before = await snapshot(s.redis.client);
    // the keys the product passes: on a cluster only the tenant-slot ones (DK6)
    const cluster = isCluster(s.redis.client);
    const createKeys = cluster
      ? [keys.tenant(t), keys.webhook(t, id), keys.webhookIndex(t), keys.outbox(t)]
      : [keys.tenant(t), keys.webhook(t, id), keys.webhookIndex(t), keys.webhooksAll(), keys.webhooksVersion(), keys.outbox(t)];
    const ctx = JSON.stringify({ trace_id: '', request_id: 'r', actor_json: '{"type":"admin"}' });
    await expect(runAdminScript(s.redis.client, 'webhook_create', createKeys, [JSON.stringify(fields), ctx, 200])).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(runAdminScript(s.redis.client, 'webhook_create', createKeys,
      [JSON.stringify({ ...fields, event_types: '[]' }), ctx, 200])).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    expect(await snapshot(s.redis.client)).toEqual(before);

    const real = await adminCreate(t);
    const rec = await s.redis.client.hgetall(keys.webhook(t, real));
    const before2 = await snapshot(s.redis.client);
    await expect(runAdminScript(s.redis.client, 'webhook_update', [keys.tenant(t), keys.webhook(t, real), keys.outbox(t), ...(cluster ? [] : [keys.webhooksVersion()])],
      ['patch', rec.rev, rec.status, JSON.stringify({ event_categories: '["system"]' }), '[]', 'webhook.updated', '{}', ctx, '0']))
      .rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    expect(await snapshot(s.redis.client)).toEqual(before2);
  });
});

describe('events', () => {
  it('every webhook event this file produced (all outboxes) is a valid Event with its EventData', async () => {
    expect(await expectValidStoredEvents(s.redis.client, 'webhook')).toBeGreaterThan(0);
  });
});
