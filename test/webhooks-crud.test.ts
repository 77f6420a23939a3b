// Webhook subscriptions on both planes: create (secret once, defaults, masking), get, lists
// (filters, sort, cursors), PATCH (events typed by the transition, no-op, DISABLED rules,
// rotation), delete, the security config, the overview counts and the close cascade. Every
// webhook.* event produced is validated with the shared expectValidEvent.
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
const asKey = (key: string, method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { key, body });
const WH_PERMS = ['webhooks:read', 'webhooks:write'];

async function tenant(): Promise<string> {
  const t = uniq('wh');
  await putTenant(s.redis.client, t);
  await s.redis.client.zadd(keys.tenantIndex(), Date.now(), t);
  return t;
}

/** webhook.* events of a tenant's outbox, each validated against Event + its EventData. */
async function webhookEvents(t: string) {
  const evs = (await storedEvents(s.redis.client, t)).filter((e) => e.category === 'webhook');
  evs.forEach(expectValidEvent);
  return evs;
}

describe('create', () => {
  it('admin create with tenant_id: 201, generated whsec_ secret returned once at top level, defaults, webhook.created', async () => {
    const t = await tenant();
    const r = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.exhausted'], name: 'n1' });
    expect(r.status).toBe(201);
    expect(r.body.signing_secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const sub = r.body.subscription;
    expect(sub.signing_secret).toBeUndefined();
    expect(sub).toMatchObject({
      tenant_id: t, url: HOOK, event_types: ['budget.exhausted'], event_categories: [], status: 'ACTIVE', name: 'n1',
      retry_policy: { max_retries: 5, initial_delay_ms: 1000, backoff_multiplier: 2, max_delay_ms: 60000 },
      disable_after_failures: 10, consecutive_failures: 0,
    });
    expect(sub.subscription_id).toMatch(new RegExp(`^whsub_${t}_[0-9a-f]{24}$`));
    const evs = await webhookEvents(t);
    expect(evs).toHaveLength(1);
    expect(evs[0]).toMatchObject({
      event_type: 'webhook.created', tenant_id: t, correlation_id: `webhook_create:${sub.subscription_id}`,
      actor: { type: 'admin' }, request_id: r.headers.get('x-request-id'),
      data: { subscription_id: sub.subscription_id, tenant_id: t, new_status: 'ACTIVE', changed_fields: [] },
    });
    expect(evs[0].data).not.toHaveProperty('previous_status');
    expect(evs[0].scope).toBeUndefined();
  });

  it('admin create without tenant_id is a __system__ subscription that may select admin events; its event goes to the __system__ outbox', async () => {
    const before = (await storedEvents(s.redis.client, '__system__')).length;
    const r = await admin('POST', '/v1/admin/webhooks', { url: HOOK, event_types: ['api_key.created', 'policy.updated'] });
    expect(r.status).toBe(201);
    expect(r.body.subscription.tenant_id).toBe('__system__');
    const evs = (await storedEvents(s.redis.client, '__system__')).slice(before);
    evs.forEach(expectValidEvent);
    expect(evs.map((e) => e.event_type)).toEqual(['webhook.created']);
    expect(evs[0].tenant_id).toBe('__system__');
    const explicit = await admin('POST', '/v1/admin/webhooks?tenant_id=__system__', { url: HOOK, event_types: ['system.high_latency'] });
    expect(explicit.status).toBe(201);
    expect(explicit.body.subscription.tenant_id).toBe('__system__');
  });

  it('a provided signing_secret is kept (returned once), custom header values are masked in every read', async () => {
    const t = await tenant();
    const r = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, {
      url: HOOK, event_types: ['tenant.updated'], signing_secret: 'my-own-secret-value', headers: { Authorization: 'Bearer tok_123', 'X-Env': 'prod' },
    });
    expect(r.status).toBe(201);
    expect(r.body.signing_secret).toBe('my-own-secret-value');
    expect(r.body.subscription.headers).toEqual({ Authorization: '********', 'X-Env': '********' });
    const id = r.body.subscription.subscription_id;
    const g = await admin('GET', `/v1/admin/webhooks/${id}`);
    expect(g.body.headers).toEqual({ Authorization: '********', 'X-Env': '********' });
    const l = await admin('GET', `/v1/admin/webhooks?tenant_id=${t}`);
    expect(l.body.subscriptions[0].headers).toEqual({ Authorization: '********', 'X-Env': '********' });
    expect(l.text).not.toContain('tok_123');
    expect(g.text).not.toContain('my-own-secret-value');
  });

  it('tenant-plane create: owned by the key\'s tenant, actor api_key with key_id; needs webhooks:write', async () => {
    const t = await tenant();
    const key = await s.tenantKey(t, WH_PERMS);
    const r = await asKey(key, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['reservation.denied'], event_categories: ['budget'] });
    expect(r.status).toBe(201);
    expect(r.body.subscription.tenant_id).toBe(t);
    const evs = await webhookEvents(t);
    expect(evs.at(-1)).toMatchObject({ event_type: 'webhook.created', actor: { type: 'api_key' } });
    expect(evs.at(-1)!.actor!.key_id).toBeTruthy();
    const ro = await s.tenantKey(t, ['webhooks:read']);
    const denied = await asKey(ro, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['reservation.denied'] });
    expect([denied.status, denied.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    const adminKeyOnly = await admin('POST', '/v1/webhooks', { url: HOOK, event_types: ['reservation.denied'] });
    expect(adminKeyOnly.status).toBe(401);
  });

  it('404 TENANT_NOT_FOUND for an unknown tenant_id, 400 for a blank one, 409 TENANT_CLOSED for a closed tenant', async () => {
    const unknown = await admin('POST', `/v1/admin/webhooks?tenant_id=${uniq('nope')}`, { url: HOOK, event_types: ['budget.created'] });
    expect([unknown.status, unknown.body.error]).toEqual([404, 'TENANT_NOT_FOUND']);
    const blank = await admin('POST', '/v1/admin/webhooks?tenant_id=%20', { url: HOOK, event_types: ['budget.created'] });
    expect([blank.status, blank.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const t = await tenant();
    await s.redis.client.hset(keys.tenant(t), 'status', 'CLOSED');
    const closed = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'] });
    expect([closed.status, closed.body.error]).toEqual([409, 'TENANT_CLOSED']);
    expect(await s.redis.client.zcard(keys.webhookIndex(t))).toBe(0);
  });

  it('retry policy bounds, disable_after_failures >= 1, create needs a non-empty event_types', async () => {
    const t = await tenant();
    for (const retry_policy of [{ max_retries: 11 }, { initial_delay_ms: 99 }, { backoff_multiplier: 0.5 }, { backoff_multiplier: 10.5 }, { max_delay_ms: 999 }, { max_delay_ms: 3600001 }]) {
      const r = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], retry_policy });
      expect([r.status, r.body.error], JSON.stringify(retry_policy)).toEqual([400, 'INVALID_REQUEST']);
    }
    const ok = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], retry_policy: { max_retries: 0, max_delay_ms: 3600000 } });
    expect(ok.status).toBe(201);
    expect(ok.body.subscription.retry_policy).toEqual({ max_retries: 0, initial_delay_ms: 1000, backoff_multiplier: 2, max_delay_ms: 3600000 });
    const zero = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], disable_after_failures: 0 });
    expect(zero.status).toBe(400);
    const empty = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: [], event_categories: ['budget'] });
    expect(empty.status).toBe(400);
    const reserved = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], headers: { 'X-Cycles-Signature': 'x' } });
    expect(reserved.status).toBe(400);
    expect(await s.redis.client.zcard(keys.webhookIndex(t))).toBe(1);
  });
});

describe('update', () => {
  async function created(t: string, body: Record<string, unknown> = {}) {
    const r = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], ...body });
    expect(r.status).toBe(201);
    return r.body.subscription.subscription_id as string;
  }

  it('field change → webhook.updated with changed_fields; no-op PATCH → no event, updated_at unchanged', async () => {
    const t = await tenant();
    const id = await created(t, { name: 'a' });
    const r = await admin('PATCH', `/v1/admin/webhooks/${id}`, { name: 'b', event_categories: ['tenant'] });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ name: 'b', event_categories: ['tenant'], status: 'ACTIVE' });
    let evs = await webhookEvents(t);
    expect(evs.map((e) => e.event_type)).toEqual(['webhook.created', 'webhook.updated']);
    expect(evs[1]).toMatchObject({
      correlation_id: `webhook_update:${id}:${r.headers.get('x-request-id')}`,
      data: { previous_status: 'ACTIVE', new_status: 'ACTIVE', changed_fields: ['name', 'event_categories'] },
    });
    const again = await admin('PATCH', `/v1/admin/webhooks/${id}`, { name: 'b', event_categories: ['tenant'], status: 'ACTIVE' });
    expect(again.status).toBe(200);
    expect(again.body.updated_at).toBe(r.body.updated_at);
    evs = await webhookEvents(t);
    expect(evs).toHaveLength(2);
  });

  it('ACTIVE → PAUSED → webhook.paused; PAUSED → ACTIVE → webhook.resumed; status + field change lists the fields', async () => {
    const t = await tenant();
    const id = await created(t);
    expect((await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'PAUSED' })).body.status).toBe('PAUSED');
    const r = await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'ACTIVE', description: 'back' });
    expect(r.body).toMatchObject({ status: 'ACTIVE', description: 'back' });
    const evs = await webhookEvents(t);
    expect(evs.slice(1).map((e) => [e.event_type, (e.data as any).previous_status, (e.data as any).new_status, (e.data as any).changed_fields]))
      .toEqual([['webhook.paused', 'ACTIVE', 'PAUSED', []], ['webhook.resumed', 'PAUSED', 'ACTIVE', ['description']]]);
  });

  it('status DISABLED → 400; ACTIVE on a DISABLED row re-enables it and resets consecutive_failures', async () => {
    const t = await tenant();
    const id = await created(t);
    const bad = await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'DISABLED' });
    expect([bad.status, bad.body.error]).toEqual([400, 'INVALID_REQUEST']);
    await s.redis.client.hset(keys.webhook(t, id), 'status', 'DISABLED', 'consecutive_failures', '10');
    const r = await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'ACTIVE' });
    expect(r.body).toMatchObject({ status: 'ACTIVE', consecutive_failures: 0 });
    const evs = await webhookEvents(t);
    expect(evs.at(-1)).toMatchObject({ event_type: 'webhook.resumed', data: { previous_status: 'DISABLED', new_status: 'ACTIVE' } });
  });

  it('category-only by clearing event_types while categories remain (SELECTOR CLEARING)', async () => {
    const t = await tenant();
    const id = await created(t, { event_categories: ['budget'] });
    const r = await admin('PATCH', `/v1/admin/webhooks/${id}`, { event_types: [] });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ event_types: [], event_categories: ['budget'] });
  });

  it('signing secret rotation: changed_fields names it, no read returns it, the stored ciphertext changes', async () => {
    const t = await tenant();
    const id = await created(t, { signing_secret: 'first-secret-aaaa' });
    const before = await s.redis.client.hget(keys.webhook(t, id), 'secret_enc');
    const r = await admin('PATCH', `/v1/admin/webhooks/${id}`, { signing_secret: 'second-secret-bbbb' });
    expect(r.status).toBe(200);
    expect(r.text).not.toContain('second-secret');
    expect(r.body.signing_secret).toBeUndefined();
    expect(await s.redis.client.hget(keys.webhook(t, id), 'secret_enc')).not.toBe(before);
    const evs = await webhookEvents(t);
    expect(evs.at(-1)).toMatchObject({ event_type: 'webhook.updated', data: { changed_fields: ['signing_secret'] } });
    const same = await admin('PATCH', `/v1/admin/webhooks/${id}`, { signing_secret: 'second-secret-bbbb' });
    expect(same.status).toBe(200);
    expect(await webhookEvents(t)).toHaveLength(evs.length);
  });

  it('PATCH headers: the masked value keeps the stored one, a new value replaces it, {} clears', async () => {
    const t = await tenant();
    const id = await created(t, { headers: { Authorization: 'Bearer one' } });
    const keep = await admin('PATCH', `/v1/admin/webhooks/${id}`, { headers: { Authorization: '********', 'X-Extra': 'e' } });
    expect(keep.body.headers).toEqual({ Authorization: '********', 'X-Extra': '********' });
    const { loadDispatchSubscription } = await import('../src/events/subscriptions');
    expect((await loadDispatchSubscription(s.redis.client, id, s.server.config))!.headers).toEqual({ Authorization: 'Bearer one', 'X-Extra': 'e' });
    const unknownMask = await admin('PATCH', `/v1/admin/webhooks/${id}`, { headers: { 'X-New': '********' } });
    expect(unknownMask.status).toBe(400);
    const clear = await admin('PATCH', `/v1/admin/webhooks/${id}`, { headers: {} });
    expect(clear.body.headers).toBeUndefined();
    expect((await loadDispatchSubscription(s.redis.client, id, s.server.config))!.headers).toEqual({});
  });

  it('scope_filter: "" clears it; a "*" anywhere but at the end is refused', async () => {
    const t = await tenant();
    const id = await created(t, { scope_filter: `tenant:${t}/*` });
    expect((await admin('PATCH', `/v1/admin/webhooks/${id}`, { scope_filter: 'tenant:*/workspace:x' })).status).toBe(400);
    const r = await admin('PATCH', `/v1/admin/webhooks/${id}`, { scope_filter: '' });
    expect(r.status).toBe(200);
    expect(r.body.scope_filter).toBeUndefined();
    expect((await webhookEvents(t)).at(-1)!.data).toMatchObject({ changed_fields: ['scope_filter'] });
  });

  it('Rule 2: PATCH and DELETE of a CLOSED tenant\'s subscription → 409 TENANT_CLOSED; GET still works', async () => {
    const t = await tenant();
    const id = await created(t);
    await s.redis.client.hset(keys.tenant(t), 'status', 'CLOSED');
    const p = await admin('PATCH', `/v1/admin/webhooks/${id}`, { name: 'x' });
    expect([p.status, p.body.error]).toEqual([409, 'TENANT_CLOSED']);
    const d = await admin('DELETE', `/v1/admin/webhooks/${id}`);
    expect([d.status, d.body.error]).toEqual([409, 'TENANT_CLOSED']);
    expect((await admin('GET', `/v1/admin/webhooks/${id}`)).status).toBe(200);
  });
});

describe('delete', () => {
  it('204, then 404 WEBHOOK_NOT_FOUND; webhook.deleted with previous_status and no new_status; indexes cleaned', async () => {
    const t = await tenant();
    const c = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'] });
    const id = c.body.subscription.subscription_id;
    await admin('PATCH', `/v1/admin/webhooks/${id}`, { status: 'PAUSED' });
    const d = await admin('DELETE', `/v1/admin/webhooks/${id}`);
    expect(d.status).toBe(204);
    expect(d.text).toBe('');
    const g = await admin('GET', `/v1/admin/webhooks/${id}`);
    expect([g.status, g.body.error]).toEqual([404, 'WEBHOOK_NOT_FOUND']);
    expect((await admin('DELETE', `/v1/admin/webhooks/${id}`)).status).toBe(404);
    const evs = await webhookEvents(t);
    expect(evs.at(-1)).toMatchObject({ event_type: 'webhook.deleted', correlation_id: `webhook_delete:${id}`, data: { previous_status: 'PAUSED' } });
    expect(evs.at(-1)!.data).not.toHaveProperty('new_status');
    expect(await s.redis.client.zscore(keys.webhooksAll(), id)).toBeNull();
    expect(await s.redis.client.zscore(keys.webhookIndex(t), id)).toBeNull();
    expect(await s.redis.client.exists(keys.webhook(t, id))).toBe(0);
  });
});

describe('lists', () => {
  it('admin list: tenant_id / status / event_type / search filters AND-combined, sort, cursors visit every row once', async () => {
    const t = await tenant();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, {
        url: `https://93.184.215.14/h${i}`, event_types: i % 2 ? ['budget.created'] : ['tenant.created'],
      });
      ids.push(r.body.subscription.subscription_id);
    }
    await s.redis.client.hset(keys.webhook(t, ids[3]), 'consecutive_failures', '4');
    await s.redis.client.hset(keys.webhook(t, ids[5]), 'consecutive_failures', '9');
    await admin('PATCH', `/v1/admin/webhooks/${ids[1]}`, { status: 'PAUSED' });

    const all = await admin('GET', `/v1/admin/webhooks?tenant_id=${t}`);
    expect(all.body.subscriptions.map((x: any) => x.subscription_id).slice(0, 2)).toEqual([ids[5], ids[3]]); // consecutive_failures desc
    expect(all.body.has_more).toBe(false);
    expect(all.body.next_cursor).toBeUndefined();

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await admin('GET', `/v1/admin/webhooks?tenant_id=${t}&sort_by=url&sort_dir=asc&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.subscriptions.map((x: any) => x.url));
      cursor = page.body.has_more ? page.body.next_cursor : undefined;
    } while (cursor);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `https://93.184.215.14/h${i}`));

    const filtered = await admin('GET', `/v1/admin/webhooks?tenant_id=${t}&event_type=budget.created&status=ACTIVE`);
    expect(filtered.body.subscriptions.map((x: any) => x.subscription_id).sort()).toEqual([ids[3], ids[5]].sort());
    const search = await admin('GET', `/v1/admin/webhooks?search=${encodeURIComponent('/H4')}&tenant_id=${t}`);
    expect(search.body.subscriptions.map((x: any) => x.subscription_id)).toEqual([ids[4]]);
    const bySearchId = await admin('GET', `/v1/admin/webhooks?search=${ids[6].slice(-24)}`);
    expect(bySearchId.body.subscriptions.map((x: any) => x.subscription_id)).toEqual([ids[6]]);
    const long = await admin('GET', `/v1/admin/webhooks?search=${'x'.repeat(129)}`);
    expect(long.status).toBe(400);
    const wrongCursor = await admin('GET', `/v1/admin/webhooks?tenant_id=${t}&status=PAUSED&sort_by=url&sort_dir=asc&limit=3&cursor=${(await admin('GET', `/v1/admin/webhooks?tenant_id=${t}&sort_by=url&sort_dir=asc&limit=3`)).body.next_cursor}`);
    expect(wrongCursor.status).toBe(400);
    const none = await admin('GET', `/v1/admin/webhooks?tenant_id=${uniq('none')}`);
    expect(none.body).toEqual({ subscriptions: [], has_more: false });
  });

  it('listTenantWebhooks: API key sees its own tenant; admin key must name `tenant`; a tenant key naming another tenant → 400', async () => {
    const [a, b] = [await tenant(), await tenant()];
    const ka = await s.tenantKey(a, WH_PERMS);
    await asKey(ka, 'POST', '/v1/webhooks', { url: HOOK, event_types: ['budget.created'] });
    await admin('POST', `/v1/admin/webhooks?tenant_id=${b}`, { url: HOOK, event_types: ['budget.created'] });
    const own = await asKey(ka, 'GET', '/v1/webhooks');
    expect(own.status).toBe(200);
    expect(own.body.subscriptions.map((x: any) => x.tenant_id)).toEqual([a]);
    expect((await asKey(ka, 'GET', `/v1/webhooks?tenant=${a}`)).status).toBe(200);
    const other = await asKey(ka, 'GET', `/v1/webhooks?tenant=${b}`);
    expect([other.status, other.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const noTenant = await admin('GET', '/v1/webhooks');
    expect(noTenant.status).toBe(400);
    expect(noTenant.body.message).toMatch(/tenant query parameter is required when using admin key authentication/);
    const adm = await admin('GET', `/v1/webhooks?tenant=${b}`);
    expect(adm.body.subscriptions.map((x: any) => x.tenant_id)).toEqual([b]);
  });
});

describe('security config', () => {
  it('GET defaults on a fresh server; PUT replaces the object (omitted members = defaults); bad CIDR / pattern → 400, nothing stored', async () => {
    // runs against this file's server: restore at the end
    await s.redis.client.del(keys.webhookSecurityConfig());
    const g = await admin('GET', '/v1/admin/config/webhook-security');
    expect(g.body).toEqual({
      blocked_cidr_ranges: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8', '169.254.0.0/16', '::1/128', 'fc00::/7'],
      allowed_url_patterns: [], allow_http: false,
    });
    const p = await admin('PUT', '/v1/admin/config/webhook-security', { allow_http: true, allowed_url_patterns: ['https://*.example.com/*'] });
    expect(p.status).toBe(200);
    expect(p.body).toEqual({ ...g.body, allow_http: true, allowed_url_patterns: ['https://*.example.com/*'] });
    expect((await admin('GET', '/v1/admin/config/webhook-security')).body).toEqual(p.body);
    const replaced = await admin('PUT', '/v1/admin/config/webhook-security', { blocked_cidr_ranges: [] });
    expect(replaced.body).toEqual({ blocked_cidr_ranges: [], allowed_url_patterns: [], allow_http: false });
    for (const bad of [{ blocked_cidr_ranges: ['10.0.0.0/33'] }, { blocked_cidr_ranges: ['nope'] }, { allowed_url_patterns: ['example.com'] }, { extra: 1 }]) {
      const r = await admin('PUT', '/v1/admin/config/webhook-security', bad);
      expect([r.status, r.body.error], JSON.stringify(bad)).toEqual([400, 'INVALID_REQUEST']);
    }
    expect((await admin('GET', '/v1/admin/config/webhook-security')).body).toEqual(replaced.body);
    await s.redis.client.del(keys.webhookSecurityConfig());
  });
});

describe('integrations', () => {
  it('overview: webhook_counts (active = ACTIVE, disabled = DISABLED, PAUSED only in total) and failing_webhooks top 10', async () => {
    const base = (await admin('GET', '/v1/admin/overview')).body.webhook_counts;
    const t = await tenant();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'] })).body.subscription.subscription_id);
    await admin('PATCH', `/v1/admin/webhooks/${ids[0]}`, { status: 'PAUSED' });
    const failedAt = Date.now();
    await s.redis.client.hset(keys.webhook(t, ids[1]), 'status', 'DISABLED', 'consecutive_failures', '1000', 'last_failure_at_ms', String(failedAt));
    const o = await admin('GET', '/v1/admin/overview');
    expect(o.status).toBe(200);
    expect(o.body.webhook_counts).toEqual({
      total: base.total + 3, active: base.active + 1, disabled: base.disabled + 1, with_failures: base.with_failures + 1,
    });
    expect(o.body.failing_webhooks[0]).toEqual({ subscription_id: ids[1], url: HOOK, consecutive_failures: 1000, last_failure_at: new Date(failedAt).toISOString() });
  });

  it('tenant close cascade: ACTIVE and PAUSED → DISABLED, one webhook.disabled_via_tenant_cascade each with the cascade correlation id; re-close emits nothing more', async () => {
    const t = uniq('whc');
    expect((await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t })).status).toBe(201);
    const mk = async () => (await admin('POST', `/v1/admin/webhooks?tenant_id=${t}`, { url: HOOK, event_types: ['budget.created'], name: 'hook' })).body.subscription.subscription_id;
    const [a, p, d] = [await mk(), await mk(), await mk()];
    await admin('PATCH', `/v1/admin/webhooks/${p}`, { status: 'PAUSED' });
    await s.redis.client.hset(keys.webhook(t, d), 'status', 'DISABLED');
    const close = await admin('PATCH', `/v1/admin/tenants/${t}`, { status: 'CLOSED' });
    expect(close.status).toBe(200);
    for (const id of [a, p, d]) expect((await admin('GET', `/v1/admin/webhooks/${id}`)).body.status).toBe('DISABLED');
    const cascade = (await storedEvents(s.redis.client, t)).filter((e) => e.event_type === 'webhook.disabled_via_tenant_cascade');
    cascade.forEach(expectValidEvent);
    expect(cascade.map((e) => (e.data as any).subscription_id).sort()).toEqual([a, p].sort());
    expect(cascade.map((e) => (e.data as any).prior_status).sort()).toEqual(['ACTIVE', 'PAUSED']);
    expect(cascade[0].data).toMatchObject({ new_status: 'DISABLED', cascade_reason: 'tenant_closed', name: 'hook' });
    expect(new Set(cascade.map((e) => e.correlation_id))).toEqual(new Set([`tenant_close_cascade:${t}:${close.headers.get('x-request-id')}`]));
    const reopen = await admin('PATCH', `/v1/admin/webhooks/${a}`, { status: 'ACTIVE' });
    expect([reopen.status, reopen.body.error]).toEqual([409, 'TENANT_CLOSED']);
    await admin('PATCH', `/v1/admin/tenants/${t}`, { status: 'CLOSED' });
    expect((await storedEvents(s.redis.client, t)).filter((e) => e.event_type === 'webhook.disabled_via_tenant_cascade')).toHaveLength(2);
  });
});

describe('events', () => {
  it('every webhook event this file produced (all outboxes) is a valid Event with its EventData', async () => {
    expect(await expectValidStoredEvents(s.redis.client, 'webhook')).toBeGreaterThan(0);
  });
});
