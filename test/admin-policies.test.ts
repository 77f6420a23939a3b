// createPolicy / listPolicies / updatePolicy: every documented error code per operation,
// stored shape (the runtime reads the hash as is), events, v0.1.26 list fields.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { keys } from '../src/store/keys';

let s: TestServer;
let n = 0;
const tid = (p = 'pol') => `${p}-${process.pid}-${++n}`;

// The v0.1.26 profile: these cases cover the quota and access-control fields too. Without the
// flag a policy renders as the v0.1.25 Policy (test/feature-profiles.test.ts).
beforeAll(async () => {
  s = await startTestServer({ CYCLES_FEATURES: 'v0.1.26', CYCLES_CUSTOM_ACTION_KINDS: 'custom.acme.erp.post=external_side_effect' });
});
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const withKey = (key: string, method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { key, body });

async function outbox(t: string): Promise<{ type: string; data: any; actor: any }[]> {
  const rows = await s.redis.client.xrange(keys.outbox(t), '-', '+');
  return rows.map(([, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) f[flat[i]] = flat[i + 1];
    return { type: f.type, data: JSON.parse(f.data), actor: JSON.parse(f.actor) };
  });
}

async function tenant(): Promise<string> {
  const t = tid();
  await putTenant(s.redis.client, t);
  return t;
}

describe('createPolicy', () => {
  it('admin key: 201 with defaults; stored row equals the response; policy.created as admin_on_behalf_of', async () => {
    const t = await tenant();
    const r = await admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'p1', scope_pattern: `tenant:${t}/workspace:eng/*` });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'p1', status: 'ACTIVE', priority: 0, scope_pattern: `tenant:${t}/workspace:eng/*`,
      action_quotas: [], risk_class_quotas: [], allowed_action_kinds: [], denied_action_kinds: [] });
    expect(r.body.policy_id).toMatch(/^pol_/);
    expect(r.body.tenant_id).toBeUndefined();
    const stored = await s.redis.client.hget(keys.policies(t), r.body.policy_id);
    expect(JSON.parse(stored!)).toEqual(r.body);
    const ev = await outbox(t);
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'policy.created', actor: { type: 'admin_on_behalf_of' },
      data: { policy_id: r.body.policy_id, name: 'p1', scope_pattern: `tenant:${t}/workspace:eng/*`, changed_fields: [] } });
  });

  it('tenant key: 201, tenant from the key, event actor api_key with key_id', async () => {
    const t = tid();
    const key = await s.tenantKey(t);
    const r = await withKey(key, 'POST', '/v1/admin/policies', { name: 'mine', scope_pattern: `tenant:${t}`, priority: 7,
      caps: { max_tokens: 100 }, rate_limits: { max_reservations_per_minute: 5 } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ priority: 7, caps: { max_tokens: 100 }, rate_limits: { max_reservations_per_minute: 5 } });
    const ev = await outbox(t);
    expect(ev[0].actor.type).toBe('api_key');
    expect(ev[0].actor.key_id).toMatch(/.+/);
  });

  it('400 INVALID_REQUEST: tenant_id missing with the admin key, present with a tenant key', async () => {
    const t = await tenant();
    const a = await admin('POST', '/v1/admin/policies', { name: 'x', scope_pattern: `tenant:${t}` });
    expect([a.status, a.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const key = await s.tenantKey(t);
    const b = await withKey(key, 'POST', '/v1/admin/policies', { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}` });
    expect([b.status, b.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect(await s.redis.client.hlen(keys.policies(t))).toBe(0);
  });

  it('400: missing name / scope_pattern, negative priority, unknown field, unknown admin tenant', async () => {
    const t = await tenant();
    for (const body of [
      { tenant_id: t, scope_pattern: `tenant:${t}` },
      { tenant_id: t, name: 'x' },
      { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}`, priority: -1 },
      { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}`, bogus: 1 },
      { tenant_id: t, name: 'x'.repeat(257), scope_pattern: `tenant:${t}` },
      { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}`, reservation_ttl_override: { max_ttl_ms: 10 } },
      { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}`, rate_limits: { max_reservations_per_minute: 0 } },
      { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}`, rate_limits: { nope: 3 } },
      { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}`, effective_from: '2030-01-02T00:00:00Z', effective_until: '2030-01-01T00:00:00Z' },
      { tenant_id: 'no-such-tenant-xyz', name: 'x', scope_pattern: 'tenant:no-such-tenant-xyz' },
    ]) {
      const r = await admin('POST', '/v1/admin/policies', body);
      expect([r.status, r.body.error], JSON.stringify(body).slice(0, 80)).toEqual([400, 'INVALID_REQUEST']);
    }
    expect(await s.redis.client.hlen(keys.policies(t))).toBe(0);
  });

  it('scope_pattern grammar: accepted forms are stored lowercase; bad forms and other tenants are 400', async () => {
    const t = await tenant();
    const ok = [`tenant:${t}`, `tenant:${t}/*`, `tenant:${t}/agent:*`, 'agent:*', '*/agent:summarizer', `TENANT:${t}/Workspace:Eng`];
    for (const [i, p] of ok.entries()) {
      const r = await admin('POST', '/v1/admin/policies', { tenant_id: t, name: `ok${i}`, scope_pattern: p });
      expect(r.status, p).toBe(201);
      expect(r.body.scope_pattern).toBe(p.toLowerCase());
    }
    const bad = ['', 'tenant:other-tenant', 'tenant:other/*', 'workspace:a/tenant:x', 'agent:a/workspace:b', 'bogus:x',
      `tenant:${t}//agent:x`, `tenant:${t}/*/*`, `tenant:${t}/agent:a b`, `tenant:${t}/agent`];
    for (const [i, p] of bad.entries()) {
      const r = await admin('POST', '/v1/admin/policies', { tenant_id: t, name: `bad${i}`, scope_pattern: p });
      expect([r.status, r.body.error], p).toEqual([400, 'INVALID_REQUEST']);
    }
  });

  it('409 DUPLICATE_RESOURCE for the same name in the tenant; other tenants may reuse it', async () => {
    const t = await tenant();
    const t2 = await tenant();
    expect((await admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'dup', scope_pattern: `tenant:${t}` })).status).toBe(201);
    const r = await admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'dup', scope_pattern: `tenant:${t}/*` });
    expect([r.status, r.body.error]).toEqual([409, 'DUPLICATE_RESOURCE']);
    expect(await s.redis.client.hlen(keys.policies(t))).toBe(1);
    expect((await admin('POST', '/v1/admin/policies', { tenant_id: t2, name: 'dup', scope_pattern: `tenant:${t2}` })).status).toBe(201);
  });

  it('409 TENANT_CLOSED on create (admin and tenant key); nothing written', async () => {
    const t = tid();
    await putTenant(s.redis.client, t, { status: 'CLOSED' });
    const r = await admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'x', scope_pattern: `tenant:${t}` });
    expect([r.status, r.body.error]).toEqual([409, 'TENANT_CLOSED']);
    expect(await s.redis.client.hlen(keys.policies(t))).toBe(0);
    expect(await s.redis.client.xlen(keys.outbox(t))).toBe(0);
  });

  it('401 without credentials', async () => {
    const r = await call(s.adminUrl, 'POST', '/v1/admin/policies', { body: { name: 'x', scope_pattern: 'tenant:x' } });
    expect([r.status, r.body.error]).toEqual([401, 'UNAUTHORIZED']);
  });
});

describe('v0.1.26 policy fields', () => {
  const base = (t: string, extra: Record<string, unknown>) => ({ tenant_id: t, name: `v26-${++n}`, scope_pattern: `tenant:${t}/*`, ...extra });

  it('stores quotas and lists; per_run_counter_ttl_ms with per_run is accepted', async () => {
    const t = await tenant();
    const r = await admin('POST', '/v1/admin/policies', base(t, {
      action_quotas: [{ action_kind: 'http.post', max_calls: 5, window: 'per_run', per_run_counter_ttl_ms: 60000 }],
      risk_class_quotas: [{ risk_class: 'high_risk', max_calls: 1, window: 'per_day_tumbling' }],
      denied_action_kinds: ['custom.acme.erp.post'],
    }));
    expect(r.status).toBe(201);
    expect(r.body.action_quotas[0]).toEqual({ action_kind: 'http.post', max_calls: 5, window: 'per_run', per_run_counter_ttl_ms: 60000 });
    expect(r.body.denied_action_kinds).toEqual(['custom.acme.erp.post']);
  });

  it('400: allow+deny both non-empty, unknown kind, undeclared custom kind, ttl on a non-per_run window, missing window', async () => {
    const t = await tenant();
    for (const extra of [
      { allowed_action_kinds: ['http.get'], denied_action_kinds: ['http.post'] },
      { allowed_action_kinds: ['proprietary.thing'] },
      { denied_action_kinds: ['custom.other.op'] },
      { action_quotas: [{ action_kind: 'nope.nope', max_calls: 1, window: 'per_run' }] },
      { action_quotas: [{ action_kind: 'http.get', max_calls: 1, window: 'per_minute_tumbling', per_run_counter_ttl_ms: 60000 }] },
      { risk_class_quotas: [{ risk_class: 'read_only', max_calls: 1, window: 'per_hour_tumbling', per_run_counter_ttl_ms: 60000 }] },
      { action_quotas: [{ action_kind: 'http.get', max_calls: 1 }] },
      { action_quotas: [{ action_kind: 'http.get', max_calls: 0, window: 'per_run' }] },
    ]) {
      const r = await admin('POST', '/v1/admin/policies', base(t, extra));
      expect([r.status, r.body.error], JSON.stringify(extra)).toEqual([400, 'INVALID_REQUEST']);
    }
    expect(await s.redis.client.hlen(keys.policies(t))).toBe(0);
  });

  it('PATCH replaces lists wholesale, [] clears, absent leaves unchanged; changed_fields names them', async () => {
    const t = await tenant();
    const c = await admin('POST', '/v1/admin/policies', base(t, { allowed_action_kinds: ['http.get'], action_quotas: [{ action_kind: 'http.get', max_calls: 3, window: 'per_run' }] }));
    const id = c.body.policy_id;
    const bothBad = await admin('PATCH', `/v1/admin/policies/${id}`, { denied_action_kinds: ['http.post'] });
    expect([bothBad.status, bothBad.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const r = await admin('PATCH', `/v1/admin/policies/${id}`, { allowed_action_kinds: [], denied_action_kinds: ['http.post'] });
    expect(r.status).toBe(200);
    expect(r.body.allowed_action_kinds).toEqual([]);
    expect(r.body.denied_action_kinds).toEqual(['http.post']);
    expect(r.body.action_quotas).toHaveLength(1);
    const ev = (await outbox(t)).filter((e) => e.type === 'policy.updated');
    expect(ev).toHaveLength(1);
    expect(ev[0].data.changed_fields.sort()).toEqual(['allowed_action_kinds', 'denied_action_kinds']);
  });
});

describe('updatePolicy', () => {
  async function mk(t: string, name = `u-${++n}`) {
    const r = await admin('POST', '/v1/admin/policies', { tenant_id: t, name, scope_pattern: `tenant:${t}/*` });
    expect(r.status).toBe(201);
    return r.body;
  }

  it('200 with changed fields and updated_at; stored row matches; policy.updated event', async () => {
    const t = await tenant();
    const p = await mk(t);
    const r = await admin('PATCH', `/v1/admin/policies/${p.policy_id}`, { priority: 5, status: 'DISABLED', description: 'd' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ policy_id: p.policy_id, priority: 5, status: 'DISABLED', description: 'd', scope_pattern: p.scope_pattern, created_at: p.created_at });
    expect(JSON.parse((await s.redis.client.hget(keys.policies(t), p.policy_id))!)).toEqual(r.body);
    const ev = (await outbox(t)).filter((e) => e.type === 'policy.updated');
    expect(ev[0].data.changed_fields.sort()).toEqual(['description', 'priority', 'status']);
    expect(ev[0].actor.type).toBe('admin_on_behalf_of');
  });

  it('a no-op PATCH changes nothing and emits no event', async () => {
    const t = await tenant();
    const p = await mk(t);
    const r = await admin('PATCH', `/v1/admin/policies/${p.policy_id}`, { priority: 0, name: p.name });
    expect(r.status).toBe(200);
    expect(r.body).toEqual(p);
    expect((await outbox(t)).map((e) => e.type)).toEqual(['policy.created']);
  });

  it('400: scope_pattern is not patchable; negative priority; unknown field', async () => {
    const t = await tenant();
    const p = await mk(t);
    for (const body of [{ scope_pattern: `tenant:${t}` }, { priority: -1 }, { tenant_id: t }]) {
      const r = await admin('PATCH', `/v1/admin/policies/${p.policy_id}`, body);
      expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    }
    expect(JSON.parse((await s.redis.client.hget(keys.policies(t), p.policy_id))!)).toEqual(p);
  });

  it('404 NOT_FOUND for an unknown id (admin and tenant key)', async () => {
    const r = await admin('PATCH', '/v1/admin/policies/pol_nope', { priority: 1 });
    expect([r.status, r.body.error]).toEqual([404, 'NOT_FOUND']);
    const key = await s.tenantKey(tid());
    const r2 = await withKey(key, 'PATCH', '/v1/admin/policies/pol_nope', { priority: 1 });
    expect([r2.status, r2.body.error]).toEqual([404, 'NOT_FOUND']);
  });

  it('409 DUPLICATE_RESOURCE when renaming onto another policy; renaming frees the old name', async () => {
    const t = await tenant();
    const a = await mk(t, 'alpha');
    await mk(t, 'beta');
    const r = await admin('PATCH', `/v1/admin/policies/${a.policy_id}`, { name: 'beta' });
    expect([r.status, r.body.error]).toEqual([409, 'DUPLICATE_RESOURCE']);
    expect((await admin('PATCH', `/v1/admin/policies/${a.policy_id}`, { name: 'gamma' })).status).toBe(200);
    expect((await admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'alpha', scope_pattern: `tenant:${t}` })).status).toBe(201);
  });

  it('409 TENANT_CLOSED once the owning tenant is CLOSED (also for a no-op PATCH); the row is unchanged', async () => {
    const t = await tenant();
    const p = await mk(t);
    await s.redis.client.hset(keys.tenant(t), 'status', 'CLOSED');
    for (const body of [{ priority: 3 }, {}]) {
      const r = await admin('PATCH', `/v1/admin/policies/${p.policy_id}`, body);
      expect([r.status, r.body.error]).toEqual([409, 'TENANT_CLOSED']);
    }
    expect(JSON.parse((await s.redis.client.hget(keys.policies(t), p.policy_id))!)).toEqual(p);
    // reads keep working
    expect((await admin('GET', `/v1/admin/policies?tenant_id=${t}`)).status).toBe(200);
  });
});

describe('listPolicies', () => {
  it('400 INVALID_REQUEST without tenant_id under the admin key', async () => {
    const r = await admin('GET', '/v1/admin/policies');
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('filters: status, scope_pattern, has_action_quotas, references_action_kind; paging visits each row once', async () => {
    const t = await tenant();
    const mk = (name: string, extra: Record<string, unknown> = {}) =>
      admin('POST', '/v1/admin/policies', { tenant_id: t, name, scope_pattern: `tenant:${t}/*`, ...extra });
    await mk('plain');
    await mk('quota', { action_quotas: [{ action_kind: 'http.get', max_calls: 1, window: 'per_run' }] });
    await mk('risk', { risk_class_quotas: [{ risk_class: 'high_risk', max_calls: 1, window: 'per_run' }] });
    await mk('deny', { denied_action_kinds: ['http.post'] });
    const exact = await admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'exact', scope_pattern: `tenant:${t}` });
    await admin('PATCH', `/v1/admin/policies/${exact.body.policy_id}`, { status: 'DISABLED' });

    const names = async (q: string) => ((await admin('GET', `/v1/admin/policies?tenant_id=${t}${q}`)).body.policies as any[]).map((p) => p.name).sort();
    expect(await names('')).toEqual(['deny', 'exact', 'plain', 'quota', 'risk']);
    expect(await names('&status=DISABLED')).toEqual(['exact']);
    expect(await names(`&scope_pattern=tenant:${t}`)).toEqual(['exact']);
    expect(await names('&has_action_quotas=true')).toEqual(['quota', 'risk']);
    expect(await names('&has_action_quotas=false')).toEqual(['deny', 'exact', 'plain']);
    expect(await names('&references_action_kind=http.post')).toEqual(['deny']);
    expect(await names('&references_action_kind=http.get')).toEqual(['quota']);

    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await admin('GET', `/v1/admin/policies?tenant_id=${t}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.policies.map((p: any) => p.name));
      if (!r.body.has_more) { expect(r.body.next_cursor).toBeUndefined(); break; }
      cursor = r.body.next_cursor;
    }
    expect(seen.sort()).toEqual(['deny', 'exact', 'plain', 'quota', 'risk']);
    const badCursor = await admin('GET', `/v1/admin/policies?tenant_id=${t}&status=ACTIVE&limit=2&cursor=${cursor}`);
    expect([badCursor.status, badCursor.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const badLimit = await admin('GET', `/v1/admin/policies?tenant_id=${t}&limit=0`);
    expect(badLimit.status).toBe(400);
  });
});
