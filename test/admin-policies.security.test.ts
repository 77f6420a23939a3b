// Tenant isolation and permission probes for the policy endpoints.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { keys } from '../src/store/keys';

let s: TestServer;
let n = 0;
const tid = () => `psec-${process.pid}-${++n}`;

beforeAll(async () => { s = await startTestServer(); });
afterAll(async () => { await s?.stop(); });

const withKey = (key: string, method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { key, body });
/** The stored row of a policy rendered without the v0.1.26 fields (flag off): storage keeps them, empty. */
const storedForm = (p: Record<string, unknown>) => ({ ...p, action_quotas: [], risk_class_quotas: [], allowed_action_kinds: [], denied_action_kinds: [] });

async function policyOf(t: string, extra: Record<string, unknown> = {}) {
  await putTenant(s.redis.client, t);
  const r = await call(s.adminUrl, 'POST', '/v1/admin/policies', {
    adminKey: s.adminKey, body: { tenant_id: t, name: `p-${++n}`, scope_pattern: `tenant:${t}/*`, ...extra },
  });
  expect(r.status).toBe(201);
  return r.body;
}

describe('policy tenant isolation', () => {
  it("a tenant key cannot update another tenant's policy: 404, row unchanged, no event", async () => {
    const a = tid();
    const b = tid();
    const p = await policyOf(a);
    const keyB = await s.tenantKey(b);
    const r = await withKey(keyB, 'PATCH', `/v1/admin/policies/${p.policy_id}`, { priority: 99 });
    expect([r.status, r.body.error]).toEqual([404, 'NOT_FOUND']);
    expect(JSON.parse((await s.redis.client.hget(keys.policies(a), p.policy_id))!)).toEqual(storedForm(p));
    expect(await s.redis.client.xlen(keys.outbox(a))).toBe(1);
    expect(await s.redis.client.exists(keys.policies(b))).toBe(0);
  });

  it('a tenant key lists only its own policies; ?tenant_id= of another tenant is ignored', async () => {
    const a = tid();
    const b = tid();
    await policyOf(a);
    const keyB = await s.tenantKey(b);
    const own = await withKey(keyB, 'POST', '/v1/admin/policies', { name: 'b-own', scope_pattern: `tenant:${b}` });
    expect(own.status).toBe(201);
    const r = await withKey(keyB, 'GET', `/v1/admin/policies?tenant_id=${a}`);
    expect(r.status).toBe(200);
    expect(r.body.policies.map((x: any) => x.name)).toEqual(['b-own']);
  });

  it("a tenant key cannot root a pattern at another tenant (400) and cannot plant a policy in another tenant's hash", async () => {
    const a = tid();
    const b = tid();
    const keyB = await s.tenantKey(b);
    const r = await withKey(keyB, 'POST', '/v1/admin/policies', { name: 'evil', scope_pattern: `tenant:${a}/*` });
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect(await s.redis.client.exists(keys.policies(a))).toBe(0);
    expect(await s.redis.client.exists(keys.policies(b))).toBe(0);
  });
});

describe('policy permissions', () => {
  it('403 INSUFFICIENT_PERMISSIONS without policies:write (create, update) and policies:read (list)', async () => {
    const t = tid();
    const p = await policyOf(t);
    const readOnly = await s.tenantKey(t, ['policies:read']);
    const writeOnly = await s.tenantKey(t, ['policies:write']);
    const c = await withKey(readOnly, 'POST', '/v1/admin/policies', { name: 'x', scope_pattern: `tenant:${t}` });
    expect([c.status, c.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    const u = await withKey(readOnly, 'PATCH', `/v1/admin/policies/${p.policy_id}`, { priority: 1 });
    expect([u.status, u.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    const l = await withKey(writeOnly, 'GET', '/v1/admin/policies');
    expect([l.status, l.body.error]).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
    expect(await s.redis.client.hlen(keys.policies(t))).toBe(1);
    // admin:write / admin:read act as wildcards
    const adminWrite = await s.tenantKey(t, ['admin:write']);
    expect((await withKey(adminWrite, 'PATCH', `/v1/admin/policies/${p.policy_id}`, { priority: 2 })).status).toBe(200);
    const adminRead = await s.tenantKey(t, ['admin:read']);
    expect((await withKey(adminRead, 'GET', '/v1/admin/policies')).status).toBe(200);
    expect((await withKey(adminRead, 'PATCH', `/v1/admin/policies/${p.policy_id}`, { priority: 3 })).status).toBe(403);
  });

  it('scope_filter: create outside the filter → 403 FORBIDDEN; list hides rows outside it; update outside it → 403', async () => {
    const t = tid();
    const outside = await policyOf(t); // tenant:t/*  (wider than the filter)
    const key = await s.tenantKey(t, ['policies:read', 'policies:write'], ['workspace:eng']);
    const bad = await withKey(key, 'POST', '/v1/admin/policies', { name: 'wide', scope_pattern: `tenant:${t}/workspace:ops/*` });
    expect([bad.status, bad.body.error]).toEqual([403, 'FORBIDDEN']);
    const ok = await withKey(key, 'POST', '/v1/admin/policies', { name: 'narrow', scope_pattern: `tenant:${t}/workspace:eng/*` });
    expect(ok.status).toBe(201);
    const list = await withKey(key, 'GET', '/v1/admin/policies');
    expect(list.body.policies.map((x: any) => x.name)).toEqual(['narrow']);
    const upd = await withKey(key, 'PATCH', `/v1/admin/policies/${outside.policy_id}`, { priority: 1 });
    expect([upd.status, upd.body.error]).toEqual([403, 'FORBIDDEN']);
    expect(JSON.parse((await s.redis.client.hget(keys.policies(t), outside.policy_id))!)).toEqual(storedForm(outside));
  });

  it('401: revoked-looking / unknown key and a wrong admin key next to a valid tenant key', async () => {
    const t = tid();
    const key = await s.tenantKey(t);
    const r1 = await withKey('cyc_live_notarealkeynotarealkeynotarealkey', 'GET', '/v1/admin/policies');
    expect([r1.status, r1.body.error]).toEqual([401, 'UNAUTHORIZED']);
    const r2 = await call(s.adminUrl, 'GET', '/v1/admin/policies', { key, adminKey: 'wrong-admin-key' });
    expect([r2.status, r2.body.error]).toEqual([401, 'UNAUTHORIZED']);
  });
});
