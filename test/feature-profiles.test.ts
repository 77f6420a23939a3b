// The two feature profiles (decision DG1). CYCLES_FEATURES without v0.1.26 is a v0.1.25 server:
// tenants and policies render exactly as the v0.1.25 base schemas (closed, no extension fields),
// requests are validated against the base documents, the additive list filters are accepted and
// ignored, and the action-kinds routes are absent on both planes. With v0.1.26 the merged
// documents apply and the four action-kinds routes are served on both planes.
// Both servers validate every response (test/helpers/server.ts) against their own profile's
// document; here each body is also checked explicitly, with Ajv, against the schema of the
// document it must match.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ValidateFunction } from 'ajv';
import { startTestServer, call, type ApiResponse, type TestServer } from './helpers/server';
import { loadDocument, type Profile } from '../src/generated/documents';
import { operations } from '../src/generated/operations';
import { loadSpec, newAjv, profileFor } from '../src/http/spec';
import { toView } from '../src/json';
import { SpecValidator } from '../conformance/validate';
import { keys } from '../src/store/keys';

const TENANT_EXT = ['observe_mode'];
const POLICY_EXT = ['action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds'];
const ACTION_KINDS_ROUTES = [
  ['GET', '/v1/action-kinds'],
  ['GET', '/v1/action-kinds/llm.completion'],
  ['GET', '/v1/admin/action-quota-counters?tenant_id=t'],
  ['POST', '/v1/admin/action-quota-counters/reset'],
] as const;

/** Ajv over one admin document (base or merged), compiled once per schema name. */
function schemas(profile: Profile): (name: string) => ValidateFunction {
  const ajv = newAjv();
  ajv.addSchema(loadDocument('admin', profile), 'doc');
  const cache = new Map<string, ValidateFunction>();
  return (name) => {
    let v = cache.get(name);
    if (!v) {
      v = ajv.compile({ $ref: `doc#/components/schemas/${name}` });
      cache.set(name, v);
    }
    return v;
  };
}
const base = schemas('base');
const merged = schemas('merged');

function expectValid(v: ValidateFunction, body: unknown, what: string): void {
  const ok = v(toView(body));
  expect(ok, `${what}: ${JSON.stringify(v.errors?.slice(0, 3))}`).toBe(true);
}

let on: TestServer;
let off: TestServer;
beforeAll(async () => {
  [on, off] = await Promise.all([startTestServer({ CYCLES_FEATURES: 'v0.1.26' }), startTestServer()]);
}, 60_000);
afterAll(async () => { await Promise.all([on?.stop(), off?.stop()]); });

const admin = (s: TestServer, method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });

function ok(r: ApiResponse, status = 200): any {
  expect(r.status, r.text).toBe(status);
  return r.body;
}

describe('profile selection', () => {
  it('picks the base document without v0.1.26 and the merged one with it', () => {
    expect(profileFor(new Set())).toBe('base');
    expect(profileFor(new Set(['v0.1.26']))).toBe('merged');
  });

  it('response validation uses the profile\'s document: observe_mode on a Tenant fails base, passes merged', async () => {
    const tenant = { tenant_id: 'tn-1', name: 'T', status: 'ACTIVE', created_at: '2026-01-01T00:00:00Z', observe_mode: 'ENFORCE' };
    for (const [profile, verdict] of [['base', false], ['merged', true]] as const) {
      const spec = await loadSpec('admin', profile);
      const op = spec.backend.getOperation('getTenant')!;
      expect(spec.checkResponseBody(op, 200, tenant) === null, profile).toBe(verdict);
    }
    const spec = await loadSpec('admin', 'base');
    expect(spec.checkResponseBody(spec.backend.getOperation('getTenant')!, 200, { ...tenant, observe_mode: undefined })).toBeNull();
  });

  it('so does the conformance harness (SpecValidator of the profile --features selects)', () => {
    const op = operations.find((o) => o.plane === 'admin' && o.operationId === 'getTenant')!;
    const tenant = { tenant_id: 'tn-1', name: 'T', status: 'ACTIVE', created_at: '2026-01-01T00:00:00Z', observe_mode: 'ENFORCE' };
    expect(new SpecValidator('base').checkResponse('admin', op, 200, tenant, true).join()).toMatch(/observe_mode/);
    expect(new SpecValidator('merged').checkResponse('admin', op, 200, tenant, true)).toEqual([]);
    // a v0.1.26 operation is not declared by the base document: a 2xx from it is a problem there
    const counters = operations.find((o) => o.plane === 'admin' && o.operationId === 'listActionQuotaCounters')!;
    expect(new SpecValidator('base').checkResponse('admin', counters, 200, {}, true)).toEqual(['status 200 is not declared for listActionQuotaCounters']);
  });
});

describe('flag off: a v0.1.25 server', () => {
  it('tenants (create, get, list, update) carry no observe_mode and validate against the base Tenant', async () => {
    const created = ok(await admin(off, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-t1', name: 'FP' }), 201);
    // even a stored observe_mode (set while the flag was on) is not rendered
    await off.redis.client.hset(keys.tenant('fp-t1'), 'observe_mode', 'OBSERVE');
    const got = ok(await admin(off, 'GET', '/v1/admin/tenants/fp-t1'));
    const updated = ok(await admin(off, 'PATCH', '/v1/admin/tenants/fp-t1', { name: 'FP2' }));
    const list = ok(await admin(off, 'GET', '/v1/admin/tenants'));
    expect(list.tenants.map((t: any) => t.tenant_id)).toContain('fp-t1');
    for (const [what, t] of [['create', created], ['get', got], ['update', updated], ...list.tenants.map((x: any) => ['list', x])]) {
      for (const f of TENANT_EXT) expect(t, `${what}: ${f}`).not.toHaveProperty(f);
      expectValid(base('Tenant'), t, `${what} Tenant`);
    }
    expectValid(base('TenantListResponse'), list, 'TenantListResponse');
  });

  it('refuses observe_mode in a tenant PATCH body (closed base schema) and ignores the observe_mode list filter', async () => {
    await admin(off, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-t2', name: 'FP' });
    const bad = await admin(off, 'PATCH', '/v1/admin/tenants/fp-t2', { observe_mode: 'OBSERVE' });
    expect([bad.status, bad.body.error]).toEqual([400, 'INVALID_REQUEST']);
    // fp-t2 is ENFORCE; the filter is ignored, not applied, and even an unknown value is no error
    for (const v of ['OBSERVE', 'NOT-A-MODE']) {
      const r = ok(await admin(off, 'GET', `/v1/admin/tenants?observe_mode=${v}`));
      expect(r.tenants.map((t: any) => t.tenant_id)).toContain('fp-t2');
    }
  });

  it('a bulk tenant filter of observe_mode alone is refused, not widened to every tenant', async () => {
    const r = await admin(off, 'POST', '/v1/admin/tenants/bulk-action', {
      action: 'SUSPEND', filter: { observe_mode: 'OBSERVE' }, idempotency_key: 'fp-bulk-1',
    });
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect(await off.redis.client.hget(keys.tenant('fp-t2'), 'status')).toBe('ACTIVE');
  });

  it('policies (create, update, list) carry none of the v0.1.26 fields and validate against the base Policy', async () => {
    await admin(off, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-p1', name: 'FP' });
    const created = ok(await admin(off, 'POST', '/v1/admin/policies', { tenant_id: 'fp-p1', name: 'p', scope_pattern: 'tenant:fp-p1/*' }), 201);
    const updated = ok(await admin(off, 'PATCH', `/v1/admin/policies/${created.policy_id}`, { priority: 5 }));
    // a row stored with v0.1.26 fields (written while the flag was on)
    const stored = { ...created, policy_id: 'pol_stored', name: 'stored', denied_action_kinds: ['payment.charge'],
      action_quotas: [{ action_kind: 'message.email.send', max_calls: 5, window: 'per_run' }] };
    await off.redis.client.hset(keys.policies('fp-p1'), 'pol_stored', JSON.stringify(stored));
    const list = ok(await admin(off, 'GET', '/v1/admin/policies?tenant_id=fp-p1'));
    expect(list.policies.map((p: any) => p.name).sort()).toEqual(['p', 'stored']);
    for (const [what, p] of [['create', created], ['update', updated], ...list.policies.map((x: any) => ['list', x])]) {
      for (const f of POLICY_EXT) expect(p, `${what}: ${f}`).not.toHaveProperty(f);
      expectValid(base('Policy'), p, `${what} Policy`);
    }
    expectValid(base('PolicyListResponse'), list, 'PolicyListResponse');

    // has_action_quotas / references_action_kind are accepted and ignored: both rows stay listed
    for (const q of ['has_action_quotas=false', 'has_action_quotas=true', 'references_action_kind=payment.charge', 'references_action_kind=http.get']) {
      const r = ok(await admin(off, 'GET', `/v1/admin/policies?tenant_id=fp-p1&${q}`));
      expect(r.policies.map((p: any) => p.name).sort(), q).toEqual(['p', 'stored']);
    }
  });

  it('refuses the v0.1.26 policy fields in create and update bodies (closed base schemas)', async () => {
    await admin(off, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-p2', name: 'FP' });
    const c = await admin(off, 'POST', '/v1/admin/policies', {
      tenant_id: 'fp-p2', name: 'p', scope_pattern: 'tenant:fp-p2/*', denied_action_kinds: ['payment.charge'],
    });
    expect([c.status, c.body.error]).toEqual([400, 'INVALID_REQUEST']);
    const p = ok(await admin(off, 'POST', '/v1/admin/policies', { tenant_id: 'fp-p2', name: 'p', scope_pattern: 'tenant:fp-p2/*' }), 201);
    const u = await admin(off, 'PATCH', `/v1/admin/policies/${p.policy_id}`, { allowed_action_kinds: ['http.get'] });
    expect([u.status, u.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('the action-kinds and quota-counter routes answer 404 on both planes', async () => {
    for (const url of [off.runtimeUrl, off.adminUrl]) {
      for (const [method, path] of ACTION_KINDS_ROUTES) {
        const r = await call(url, method, path, { adminKey: off.adminKey, body: method === 'POST' ? {} : undefined });
        expect([r.status, r.body.error], `${url} ${method} ${path}`).toEqual([404, 'NOT_FOUND']);
      }
    }
  });
});

describe('flag on: the merged documents', () => {
  it('tenants carry observe_mode and validate against the merged Tenant', async () => {
    const created = ok(await admin(on, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-t1', name: 'FP' }), 201);
    const updated = ok(await admin(on, 'PATCH', '/v1/admin/tenants/fp-t1', { observe_mode: 'OBSERVE' }));
    const got = ok(await admin(on, 'GET', '/v1/admin/tenants/fp-t1'));
    const list = ok(await admin(on, 'GET', '/v1/admin/tenants?observe_mode=OBSERVE'));
    expect(list.tenants.map((t: any) => t.tenant_id)).toEqual(['fp-t1']);
    expect([created.observe_mode, updated.observe_mode, got.observe_mode]).toEqual(['ENFORCE', 'OBSERVE', 'OBSERVE']);
    for (const t of [created, updated, got, ...list.tenants]) expectValid(merged('Tenant'), t, 'Tenant');
    // the same body is not a v0.1.25 Tenant
    expect(base('Tenant')(toView(got))).toBe(false);
  });

  it('policies carry the four v0.1.26 fields and validate against the merged Policy', async () => {
    await admin(on, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-p1', name: 'FP' });
    const created = ok(await admin(on, 'POST', '/v1/admin/policies', {
      tenant_id: 'fp-p1', name: 'p', scope_pattern: 'tenant:fp-p1/*', denied_action_kinds: ['payment.charge'],
    }), 201);
    const updated = ok(await admin(on, 'PATCH', `/v1/admin/policies/${created.policy_id}`, {
      action_quotas: [{ action_kind: 'message.email.send', max_calls: 5, window: 'per_run' }],
    }));
    const list = ok(await admin(on, 'GET', '/v1/admin/policies?tenant_id=fp-p1&references_action_kind=payment.charge'));
    expect(list.policies).toHaveLength(1);
    for (const p of [created, updated, ...list.policies]) {
      for (const f of POLICY_EXT) expect(p).toHaveProperty(f);
      expectValid(merged('Policy'), p, 'Policy');
    }
    expect(updated.denied_action_kinds).toEqual(['payment.charge']);
    expect(base('Policy')(toView(updated))).toBe(false);
  });

  it('the four action-kinds and quota-counter operations are routed on both planes', async () => {
    const ids = ['listActionKinds', 'getActionKind', 'listActionQuotaCounters', 'resetActionQuotaCounter'];
    for (const plane of ['runtime', 'admin'] as const) {
      expect(operations.filter((o) => o.plane === plane && o.feature === 'v0.1.26').map((o) => o.operationId).sort()).toEqual([...ids].sort());
    }
    for (const url of [on.runtimeUrl, on.adminUrl]) {
      for (const [method, path] of ACTION_KINDS_ROUTES) {
        const r = await call(url, method, path, { adminKey: on.adminKey, body: method === 'POST' ? {} : undefined });
        expect(r.status, `${url} ${method} ${path}: ${r.text}`).not.toBe(404);
        expect(r.status, `${url} ${method} ${path}: ${r.text}`).not.toBe(405);
      }
      // request validation runs on both planes: the reset body has required members
      const bad = await call(url, 'POST', '/v1/admin/action-quota-counters/reset', { adminKey: on.adminKey, body: {} });
      expect([bad.status, bad.body.error], url).toEqual([400, 'INVALID_REQUEST']);
    }
  });

  it('the admin plane applies the same permission to listActionQuotaCounters as the runtime plane', async () => {
    await admin(on, 'POST', '/v1/admin/tenants', { tenant_id: 'fp-q1', name: 'FP' });
    const weak = await on.tenantKey('fp-q1', ['reservations:create']);
    for (const [url, code] of [[on.runtimeUrl, 'FORBIDDEN'], [on.adminUrl, 'INSUFFICIENT_PERMISSIONS']] as const) {
      const r = await call(url, 'GET', '/v1/admin/action-quota-counters', { key: weak });
      expect([r.status, r.body.error], url).toEqual([403, code]);
    }
  });
});
