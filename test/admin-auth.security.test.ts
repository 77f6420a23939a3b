// Security probes for the admin-plane operations of tenants/budgets/keys/auth/balances:
// every operation × {no credential, wrong admin key, admin key, tenant key with the
// permission, tenant key without it, another tenant's key, scope-filtered key}.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { keys } from '../src/store/keys';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); }, 30_000);
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const T = (n: number) => ({ unit: 'TOKENS', amount: n });
const A = 'sec-a';
const B = 'sec-b';
const ROOT = `tenant:${A}`;
const WS = `${ROOT}/workspace:eng`;
const q = (scope: string) => `scope=${encodeURIComponent(scope)}&unit=TOKENS`;
let keyId = '';
let seq = 0;

beforeAll(async () => {
  for (const t of [A, B]) {
    await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t });
    await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: `tenant:${t}`, unit: 'TOKENS', allocated: T(1000) });
  }
  await admin('POST', '/v1/admin/budgets', { tenant_id: A, scope: WS, unit: 'TOKENS', allocated: T(100) });
  await admin('POST', '/v1/admin/budgets', { tenant_id: A, scope: `${ROOT}/workspace:ops`, unit: 'TOKENS', allocated: T(100) });
  keyId = (await admin('POST', '/v1/admin/api-keys', { tenant_id: A, name: 'probe' })).body.key_id;
});

interface Op { id: string; method: string; path: () => string; body?: () => unknown }
const ADMIN_ONLY: Op[] = [
  { id: 'createTenant', method: 'POST', path: () => '/v1/admin/tenants', body: () => ({ tenant_id: `sec-new-${++seq}`, name: 'n' }) },
  { id: 'listTenants', method: 'GET', path: () => '/v1/admin/tenants' },
  { id: 'getTenant', method: 'GET', path: () => `/v1/admin/tenants/${A}` },
  { id: 'updateTenant', method: 'PATCH', path: () => `/v1/admin/tenants/${A}`, body: () => ({ name: 'A' }) },
  { id: 'updateBudget', method: 'PATCH', path: () => `/v1/admin/budgets?${q(ROOT)}`, body: () => ({ metadata: { x: '1' } }) },
  { id: 'freezeBudget', method: 'POST', path: () => `/v1/admin/budgets/freeze?${q(`${ROOT}/workspace:ops`)}` },
  { id: 'unfreezeBudget', method: 'POST', path: () => `/v1/admin/budgets/unfreeze?${q(`${ROOT}/workspace:ops`)}` },
  { id: 'createApiKey', method: 'POST', path: () => '/v1/admin/api-keys', body: () => ({ tenant_id: A, name: 'k' }) },
  { id: 'listApiKeys', method: 'GET', path: () => '/v1/admin/api-keys' },
  { id: 'updateApiKey', method: 'PATCH', path: () => `/v1/admin/api-keys/${keyId}`, body: () => ({ description: 'd' }) },
  { id: 'validateApiKey', method: 'POST', path: () => '/v1/auth/validate', body: () => ({ key_secret: 'cyc_live_x' }) },
];

describe('admin-only operations', () => {
  it('no credential → 401, wrong admin key → 401, a tenant key (even with admin:write) → 401, admin key → 2xx', async () => {
    const strong = await s.tenantKey(A, ['admin:write', 'admin:read', 'budgets:write', 'budgets:read']);
    for (const op of ADMIN_ONLY) {
      const none = await call(s.adminUrl, op.method, op.path(), { body: op.body?.() });
      expect([none.status, none.body.error], op.id).toEqual([401, 'UNAUTHORIZED']);
      const wrong = await call(s.adminUrl, op.method, op.path(), { adminKey: 'not-the-key', body: op.body?.() });
      expect(wrong.status, op.id).toBe(401);
      const tk = await call(s.adminUrl, op.method, op.path(), { key: strong, body: op.body?.() });
      expect(tk.status, op.id).toBe(401);
      const ok = await admin(op.method, op.path(), op.body?.());
      expect(ok.status, `${op.id}: ${ok.text}`).toBeLessThan(300);
    }
    // freezing happened once above and was undone; revoke last (it is terminal)
    expect((await call(s.adminUrl, 'DELETE', `/v1/admin/api-keys/${keyId}`, { key: strong })).status).toBe(401);
    expect((await call(s.adminUrl, 'DELETE', `/v1/admin/api-keys/${keyId}`)).status).toBe(401);
    expect((await admin('DELETE', `/v1/admin/api-keys/${keyId}`)).status).toBe(200);
  });
});

describe('dual-auth budget operations', () => {
  const ops = (scope: string) => [
    { id: 'createBudget', perm: 'budgets:write', method: 'POST', path: '/v1/admin/budgets', body: () => ({ scope: `${scope}/agent:n${++seq}`, unit: 'TOKENS', allocated: T(1) }), adminBody: () => ({ tenant_id: A, scope: `${scope}/agent:m${++seq}`, unit: 'TOKENS', allocated: T(1) }) },
    { id: 'listBudgets', perm: 'budgets:read', method: 'GET', path: '/v1/admin/budgets' },
    { id: 'lookupBudget', perm: 'budgets:read', method: 'GET', path: `/v1/admin/budgets/lookup?${q(scope)}` },
    { id: 'fundBudget', perm: 'budgets:write', method: 'POST', path: `/v1/admin/budgets/fund?tenant_id=${A}&${q(scope)}`, body: () => ({ operation: 'CREDIT', amount: T(1) }) },
  ] as { id: string; perm: string; method: string; path: string; body?: () => unknown; adminBody?: () => unknown }[];

  it('no credential 401; with the permission 2xx; without it 403 INSUFFICIENT_PERMISSIONS; admin:write/admin:read wildcards; admin key 2xx', async () => {
    const all = await s.tenantKey(A, ['budgets:read', 'budgets:write']);
    const none = await s.tenantKey(A, ['balances:read', 'reservations:create']);
    const readOnly = await s.tenantKey(A, ['admin:read']);
    const wild = await s.tenantKey(A, ['admin:write', 'admin:read']);
    for (const op of ops(ROOT)) {
      expect((await call(s.adminUrl, op.method, op.path, { body: op.body?.() })).status, op.id).toBe(401);
      const ok = await call(s.adminUrl, op.method, op.path, { key: all, body: op.body?.() });
      expect(ok.status, `${op.id}: ${ok.text}`).toBeLessThan(300);
      const no = await call(s.adminUrl, op.method, op.path, { key: none, body: op.body?.() });
      expect([no.status, no.body.error], op.id).toEqual([403, 'INSUFFICIENT_PERMISSIONS']);
      const ro = await call(s.adminUrl, op.method, op.path, { key: readOnly, body: op.body?.() });
      expect(ro.status, op.id).toBe(op.perm.endsWith(':read') ? 200 : 403);
      const w = await call(s.adminUrl, op.method, op.path, { key: wild, body: op.body?.() });
      expect(w.status, op.id).toBeLessThan(300);
      const ad = await admin(op.method, op.path, (op.adminBody ?? op.body)?.());
      expect(ad.status, `${op.id}: ${ad.text}`).toBeLessThan(300);
    }
  });

  it("another tenant's key never reads or mutates tenant A's ledgers", async () => {
    const bKey = await s.tenantKey(B, ['budgets:read', 'budgets:write', 'balances:read']);
    const before = await s.redis.client.hget(keys.budget(A, ROOT, 'TOKENS'), 'allocated');
    const look = await call(s.adminUrl, 'GET', `/v1/admin/budgets/lookup?${q(ROOT)}`, { key: bKey });
    expect(look.status).toBe(403);
    const fund = await call(s.adminUrl, 'POST', `/v1/admin/budgets/fund?tenant_id=${A}&${q(ROOT)}`, { key: bKey, body: { operation: 'CREDIT', amount: T(9) } });
    expect(fund.status).toBe(403);
    const create = await call(s.adminUrl, 'POST', '/v1/admin/budgets', { key: bKey, body: { scope: `${ROOT}/agent:evil`, unit: 'TOKENS', allocated: T(1) } });
    expect(create.status).toBe(400);
    expect(await s.redis.client.exists(keys.budget(A, `${ROOT}/agent:evil`, 'TOKENS'))).toBe(0);
    const list = await call(s.adminUrl, 'GET', `/v1/admin/budgets?tenant_id=${A}`, { key: bKey });
    expect(list.body.ledgers.every((l: any) => l.tenant_id === B)).toBe(true);
    const bal = await call(s.adminUrl, 'GET', `/v1/balances?tenant_id=${A}`, { key: bKey });
    expect(bal.body.balances.map((l: any) => l.tenant_id)).toEqual([B]);
    expect(await s.redis.client.hget(keys.budget(A, ROOT, 'TOKENS'), 'allocated')).toBe(before);
  });

  it('scope_filter: outside scopes → 403 FORBIDDEN on lookup/fund/create/prefix; lists hide them', async () => {
    const eng = await s.tenantKey(A, ['budgets:read', 'budgets:write', 'balances:read'], ['workspace:eng']);
    expect((await call(s.adminUrl, 'GET', `/v1/admin/budgets/lookup?${q(WS)}`, { key: eng })).status).toBe(200);
    const other = await call(s.adminUrl, 'GET', `/v1/admin/budgets/lookup?${q(`${ROOT}/workspace:ops`)}`, { key: eng });
    expect([other.status, other.body.error]).toEqual([403, 'FORBIDDEN']);
    expect((await call(s.adminUrl, 'POST', `/v1/admin/budgets/fund?${q(ROOT)}`, { key: eng, body: { operation: 'CREDIT', amount: T(1) } })).status).toBe(403);
    expect((await call(s.adminUrl, 'POST', '/v1/admin/budgets', { key: eng, body: { scope: `${ROOT}/workspace:ops/agent:z`, unit: 'TOKENS', allocated: T(1) } })).status).toBe(403);
    expect((await call(s.adminUrl, 'GET', `/v1/admin/budgets?scope_prefix=${encodeURIComponent(`${ROOT}/workspace:ops`)}`, { key: eng })).status).toBe(403);
    const list = await call(s.adminUrl, 'GET', '/v1/admin/budgets?sort_by=scope', { key: eng });
    expect(list.body.ledgers.every((l: any) => l.scope.startsWith(WS))).toBe(true);
    const bal = await call(s.adminUrl, 'GET', '/v1/balances', { key: eng });
    expect(bal.body.balances.map((l: any) => l.scope)).toEqual(expect.arrayContaining([WS]));
    expect(bal.body.balances.every((l: any) => l.scope.startsWith(WS))).toBe(true);
  });
});

describe('getBalances (admin plane) and introspectAuth', () => {
  it('getBalances: tenant key only (admin key 401), balances:read required, own tenant only, filters and cursor', async () => {
    expect((await call(s.adminUrl, 'GET', '/v1/balances')).status).toBe(401);
    expect((await admin('GET', '/v1/balances')).status).toBe(401);
    const noPerm = await s.tenantKey(A, ['budgets:read']);
    expect((await call(s.adminUrl, 'GET', '/v1/balances', { key: noPerm })).body.error).toBe('INSUFFICIENT_PERMISSIONS');
    const key = await s.tenantKey(A, ['balances:read']);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await call(s.adminUrl, 'GET', `/v1/balances?unit=TOKENS&limit=1${cursor ? `&cursor=${cursor}` : ''}`, { key });
      expect(r.status).toBe(200);
      for (const l of r.body.balances) { expect(l.tenant_id).toBe(A); expect(l).toHaveProperty('debt'); seen.push(l.scope); }
      cursor = r.body.has_more ? r.body.next_cursor : undefined;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining([ROOT, WS]));
    const pref = await call(s.adminUrl, 'GET', `/v1/balances?scope_prefix=${encodeURIComponent(WS)}`, { key });
    expect(pref.body.balances.map((l: any) => l.scope)).toEqual([WS]);
    expect((await call(s.adminUrl, 'GET', '/v1/balances?limit=101', { key })).status).toBe(400);
  });

  it('introspect: no credential 401; any valid key 200 without a permission', async () => {
    expect((await call(s.adminUrl, 'GET', '/v1/auth/introspect')).status).toBe(401);
    expect((await call(s.adminUrl, 'GET', '/v1/auth/introspect', { key: 'cyc_live_bogus' })).status).toBe(401);
    expect((await call(s.adminUrl, 'GET', '/v1/auth/introspect', { key: await s.tenantKey(B, []) })).status).toBe(200);
  });
});
