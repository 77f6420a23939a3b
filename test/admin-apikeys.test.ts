// API keys: create (secret once, defaults, permission enum, tenant state), list, update
// (immutable fields, events only on ACL change), revoke (seen by a second instance on its
// next request), validate reasons, introspect capabilities.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, ADMIN_KEY, type TestServer } from './helpers/server';
import { outboxEvents } from './helpers/reservations';
import { startServer, type RunningServer } from '../src/server';
import { DEFAULT_TENANT_PERMISSIONS } from '../src/auth/permissions';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); }, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
async function tenant(t: string) { await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t }); }

describe('createApiKey', () => {
  it('201: secret once (cyc_live_ + 32), prefix, default permissions, 90-day default expiry; no secret anywhere later', async () => {
    await tenant('ak-one');
    const r = await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-one', name: 'ci' });
    expect(r.status).toBe(201);
    expect(r.body.key_secret).toMatch(/^cyc_live_[A-Za-z0-9_-]{32}$/);
    expect(r.body.key_secret.startsWith(r.body.key_prefix)).toBe(true);
    expect(r.body.permissions).toEqual(DEFAULT_TENANT_PERMISSIONS);
    const days = (Date.parse(r.body.expires_at) - Date.parse(r.body.created_at)) / 86_400_000;
    expect(days).toBeCloseTo(90, 0);
    const list = await admin('GET', '/v1/admin/api-keys?tenant_id=ak-one');
    expect(list.text).not.toContain(r.body.key_secret);
    expect(list.text).not.toContain('key_hash');
    expect(list.body.keys[0]).toMatchObject({ key_id: r.body.key_id, status: 'ACTIVE', name: 'ci' });
    const dump = JSON.stringify(await s.redis.client.keys('*'));
    expect(dump).not.toContain(r.body.key_secret);
    const evs = await outboxEvents(s.redis.client, 'ak-one');
    expect(evs.map((e) => e.type)).toContain('api_key.created');
    expect(JSON.stringify(evs)).not.toContain(r.body.key_secret);
    // the new key authenticates
    expect((await call(s.adminUrl, 'GET', '/v1/balances', { key: r.body.key_secret })).status).toBe(200);
  });

  it('400 on an unknown permission (named in the response), past expires_at, unknown or suspended tenant; 409 TENANT_CLOSED', async () => {
    await tenant('ak-err');
    const bad = await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-err', name: 'x', permissions: ['budgets:read', 'root:everything'] });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('permissions');
    const past = await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-err', name: 'x', expires_at: '2001-01-01T00:00:00Z' });
    expect(past.status).toBe(400);
    const ghost = await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-ghost', name: 'x' });
    expect(ghost.status).toBe(400);
    await tenant('ak-sus');
    await admin('PATCH', '/v1/admin/tenants/ak-sus', { status: 'SUSPENDED' });
    expect((await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-sus', name: 'x' })).status).toBe(400);
    await tenant('ak-closed');
    await admin('PATCH', '/v1/admin/tenants/ak-closed', { status: 'CLOSED' });
    const closed = await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-closed', name: 'x' });
    expect([closed.status, closed.body.error]).toEqual([409, 'TENANT_CLOSED']);
  });
});

describe('updateApiKey / revokeApiKey', () => {
  it('updates name/permissions; permissions_changed only when the ACL changes; immutable fields → 400; 404 unknown', async () => {
    await tenant('ak-upd');
    const k = (await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-upd', name: 'a' })).body;
    const n = await admin('PATCH', `/v1/admin/api-keys/${k.key_id}`, { name: 'renamed', description: 'd' });
    expect(n.status).toBe(200);
    expect(n.body).toMatchObject({ name: 'renamed', description: 'd' });
    const p = await admin('PATCH', `/v1/admin/api-keys/${k.key_id}`, { permissions: ['balances:read'], scope_filter: ['workspace:eng'] });
    expect(p.body).toMatchObject({ permissions: ['balances:read'], scope_filter: ['workspace:eng'] });
    const same = await admin('PATCH', `/v1/admin/api-keys/${k.key_id}`, { permissions: ['balances:read'] });
    expect(same.status).toBe(200);
    const types = (await outboxEvents(s.redis.client, 'ak-upd')).map((e) => e.type);
    expect(types.filter((t) => t === 'api_key.permissions_changed')).toHaveLength(1);
    for (const body of [{ tenant_id: 'x' }, { expires_at: '2100-01-01T00:00:00Z' }, { status: 'ACTIVE' }, { key_prefix: 'x' }, { permissions: ['nope'] }]) {
      expect((await admin('PATCH', `/v1/admin/api-keys/${k.key_id}`, body)).status, JSON.stringify(body)).toBe(400);
    }
    const nf = await admin('PATCH', '/v1/admin/api-keys/key_doesnotexist', { name: 'x' });
    expect([nf.status, nf.body.error]).toEqual([404, 'NOT_FOUND']);
    // the new permission set is enforced on the next request
    expect((await call(s.adminUrl, 'GET', '/v1/admin/budgets', { key: k.key_secret })).status).toBe(403);
  });

  it('revoke: REVOKED with revoked_at/reason; again → 409 KEY_REVOKED; update after → 409; unknown → 404', async () => {
    await tenant('ak-rev');
    const k = (await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-rev', name: 'a' })).body;
    const r = await admin('DELETE', `/v1/admin/api-keys/${k.key_id}?reason=leaked`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'REVOKED', revoked_reason: 'leaked' });
    expect(Date.parse(r.body.revoked_at)).toBeGreaterThan(0);
    const again = await admin('DELETE', `/v1/admin/api-keys/${k.key_id}`);
    expect([again.status, again.body.error]).toEqual([409, 'KEY_REVOKED']);
    expect((await admin('PATCH', `/v1/admin/api-keys/${k.key_id}`, { name: 'x' })).status).toBe(409);
    expect((await admin('DELETE', '/v1/admin/api-keys/key_nope')).status).toBe(404);
    expect((await outboxEvents(s.redis.client, 'ak-rev')).map((e) => e.type)).toContain('api_key.revoked');
  });

  it('updating an expired key → 409 KEY_EXPIRED; it lists as EXPIRED', async () => {
    await tenant('ak-exp');
    const k = (await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-exp', name: 'a', expires_at: new Date(Date.now() + 400).toISOString() })).body;
    await new Promise((r) => setTimeout(r, 500));
    const u = await admin('PATCH', `/v1/admin/api-keys/${k.key_id}`, { name: 'x' });
    expect([u.status, u.body.error]).toEqual([409, 'KEY_EXPIRED']);
    const l = await admin('GET', '/v1/admin/api-keys?tenant_id=ak-exp&status=EXPIRED');
    expect(l.body.keys.map((x: any) => x.key_id)).toEqual([k.key_id]);
    const v = await admin('POST', '/v1/auth/validate', { key_secret: k.key_secret });
    expect(v.body).toMatchObject({ valid: false, reason: 'KEY_EXPIRED', tenant_id: 'ak-exp' });
  });

  it('a revocation is seen by a SECOND server instance on its very next request', async () => {
    await tenant('ak-two');
    const k = (await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-two', name: 'a' })).body;
    const second: RunningServer = await startServer({ env: { REDIS_URL: s.redis.url, ADMIN_API_KEY: ADMIN_KEY, CYCLES_RUNTIME_PORT: '0', CYCLES_ADMIN_PORT: '0', CYCLES_LOG_LEVEL: 'silent' } });
    try {
      expect((await call(second.urls.admin!, 'GET', '/v1/balances', { key: k.key_secret })).status).toBe(200);
      expect((await call(second.urls.runtime!, 'GET', '/v1/balances?tenant=ak-two', { key: k.key_secret })).status).toBe(200);
      expect((await admin('DELETE', `/v1/admin/api-keys/${k.key_id}`)).status).toBe(200);
      expect((await call(second.urls.admin!, 'GET', '/v1/balances', { key: k.key_secret })).status).toBe(401);
      expect((await call(second.urls.runtime!, 'GET', '/v1/balances?tenant=ak-two', { key: k.key_secret })).status).toBe(401);
    } finally {
      await second.stop();
    }
  });
});

describe('listApiKeys', () => {
  it('cross-tenant listing pages exactly once; search by name; status filter', async () => {
    await tenant('ak-la');
    await tenant('ak-lb');
    for (let i = 0; i < 3; i++) {
      await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-la', name: `listme-${i}` });
      await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-lb', name: `listme-b${i}` });
    }
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await admin('GET', `/v1/admin/api-keys?search=LISTME&sort_by=name&sort_dir=asc&limit=4${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      ids.push(...r.body.keys.map((k: any) => `${k.tenant_id}:${k.name}`));
      cursor = r.body.has_more ? r.body.next_cursor : undefined;
    } while (cursor);
    expect(ids).toEqual(['ak-la:listme-0', 'ak-la:listme-1', 'ak-la:listme-2', 'ak-lb:listme-b0', 'ak-lb:listme-b1', 'ak-lb:listme-b2']);
    expect((await admin('GET', '/v1/admin/api-keys?sort_by=colour')).status).toBe(400);
  });
});

describe('validateApiKey / introspectAuth', () => {
  it('validate: valid key details; reasons KEY_NOT_FOUND, INVALID_KEY, KEY_REVOKED, TENANT_SUSPENDED; auth_failed event', async () => {
    await tenant('ak-val');
    const k = (await admin('POST', '/v1/admin/api-keys', { tenant_id: 'ak-val', name: 'v', scope_filter: ['agent:*'] })).body;
    const ok = await admin('POST', '/v1/auth/validate', { key_secret: k.key_secret });
    expect(ok.body).toMatchObject({ valid: true, tenant_id: 'ak-val', key_id: k.key_id, scope_filter: ['agent:*'], expires_at: k.expires_at });
    expect(ok.text).not.toContain(k.key_secret);
    expect((await admin('POST', '/v1/auth/validate', { key_secret: 'cyc_live_' + 'x'.repeat(32) })).body).toEqual({ valid: false, tenant_id: '', reason: 'KEY_NOT_FOUND' });
    expect((await admin('POST', '/v1/auth/validate', { key_secret: 'hello' })).body.reason).toBe('INVALID_KEY');
    await admin('PATCH', '/v1/admin/tenants/ak-val', { status: 'SUSPENDED' });
    expect((await admin('POST', '/v1/auth/validate', { key_secret: k.key_secret })).body).toMatchObject({ valid: false, reason: 'TENANT_SUSPENDED' });
    await admin('PATCH', '/v1/admin/tenants/ak-val', { status: 'ACTIVE' });
    await admin('DELETE', `/v1/admin/api-keys/${k.key_id}`);
    expect((await admin('POST', '/v1/auth/validate', { key_secret: k.key_secret })).body).toMatchObject({ valid: false, reason: 'KEY_REVOKED' });
    const failed = (await outboxEvents(s.redis.client, 'ak-val')).filter((e) => e.type === 'api_key.auth_failed');
    expect(failed.map((e) => e.data.failure_reason)).toEqual(['tenant_suspended', 'key_revoked']);
    expect((await admin('POST', '/v1/auth/validate', {})).status).toBe(400);
  });

  it('introspect: admin → "*" and all flags; tenant → capability table exactly', async () => {
    const a = await admin('GET', '/v1/auth/introspect');
    expect(a.body.auth_type).toBe('admin');
    expect(a.body.permissions).toEqual(['*']);
    expect(Object.values(a.body.capabilities).every((v) => v === true)).toBe(true);
    expect('tenant_id' in a.body || 'scope_filter' in a.body).toBe(false);
    const key = await s.tenantKey('ak-intro', ['budgets:read', 'admin:write', 'reservations:list', 'admin:policies:read'], ['agent:x']);
    const t = await call(s.adminUrl, 'GET', '/v1/auth/introspect', { key });
    expect(t.body).toMatchObject({ authenticated: true, auth_type: 'tenant', tenant_id: 'ak-intro', scope_filter: ['agent:x'] });
    expect(t.body.capabilities).toEqual({
      view_overview: false, view_budgets: true, view_events: false, view_webhooks: false, view_audit: false,
      view_tenants: false, view_api_keys: false, view_policies: true, view_reservations: true,
      manage_budgets: true, manage_policies: true, manage_webhooks: true, manage_tenants: false, manage_api_keys: false,
      manage_reservations: true,
    });
    const plain = await call(s.adminUrl, 'GET', '/v1/auth/introspect', { key: await s.tenantKey('ak-intro', ['events:read']) });
    expect(plain.body.scope_filter).toBeUndefined();
    expect(plain.body.capabilities).toMatchObject({ view_events: true, view_budgets: false, manage_reservations: false, view_reservations: false });
    expect((await call(s.adminUrl, 'GET', '/v1/auth/introspect')).status).toBe(401);
  });
});
