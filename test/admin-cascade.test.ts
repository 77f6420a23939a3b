// Tenant close cascade (Mode B): budgets, keys and open reservations driven terminal,
// Rule 2 guard on every mutating op of this part, GETs still work, an interrupted cascade
// completes on re-close and on a fresh server start, with no duplicate events.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, ADMIN_KEY, type TestServer } from './helpers/server';
import { reserve, outboxEvents, expectLedgerHolds } from './helpers/reservations';
import { startServer } from '../src/server';
import { keys } from '../src/store/keys';
import { getBudget } from './helpers/fixtures';

let s: TestServer;
beforeAll(async () => { s = await startTestServer(); }, 30_000);
afterAll(async () => { await s?.stop(); });
afterEach(() => { delete process.env.CYCLES_TEST_CASCADE_STOP_AFTER; });

const admin = (method: string, path: string, body?: unknown) => call(s.adminUrl, method, path, { adminKey: s.adminKey, body });
const U = 'TOKENS';
const T = (n: number) => ({ unit: U, amount: n });
const enc = encodeURIComponent;

/** A tenant with 2 budgets (one FROZEN), 2 keys and 2 open reservations (700 on root + ws). */
async function populated(t: string) {
  expect((await admin('POST', '/v1/admin/tenants', { tenant_id: t, name: t })).status).toBe(201);
  const root = `tenant:${t}`;
  const ws = `${root}/workspace:w`;
  expect((await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: root, unit: U, allocated: T(10_000) })).status).toBe(201);
  expect((await admin('POST', '/v1/admin/budgets', { tenant_id: t, scope: ws, unit: U, allocated: T(2_000) })).status).toBe(201);
  const k1 = await admin('POST', '/v1/admin/api-keys', { tenant_id: t, name: 'one' });
  const k2 = await admin('POST', '/v1/admin/api-keys', { tenant_id: t, name: 'two' });
  const r1 = await reserve(s, k1.body.key_secret, t, { estimate: 300, unit: U, subject: { tenant: t, workspace: 'w' } });
  const r2 = await reserve(s, k2.body.key_secret, t, { estimate: 400, unit: U, subject: { tenant: t, workspace: 'w' } });
  await admin('POST', `/v1/admin/budgets/freeze?scope=${enc(ws)}&unit=${U}`);
  return { t, root, ws, keys: [k1.body, k2.body], reservations: [r1, r2] };
}

function cascadeCounts(evs: { type: string }[]) {
  const c: Record<string, number> = {};
  for (const e of evs) c[e.type] = (c[e.type] ?? 0) + 1;
  return c;
}

async function expectFullyClosed(p: Awaited<ReturnType<typeof populated>>) {
  const r = s.redis.client;
  for (const scope of [p.root, p.ws]) {
    const h = await getBudget(r, p.t, scope, U);
    expect(h.status).toBe('CLOSED');
    expect(h.reserved).toBe('0');
    expect(Number(h.closed_at_ms)).toBeGreaterThan(0);
  }
  expect((await getBudget(r, p.t, p.root, U)).remaining).toBe('10000');
  expect((await getBudget(r, p.t, p.ws, U)).remaining).toBe('2000');
  await expectLedgerHolds(r, p.t);
  for (const id of p.reservations) expect(await r.hget(keys.reservation(p.t, id), 'status')).toBe('RELEASED');
  const listed = await admin('GET', `/v1/admin/api-keys?tenant_id=${p.t}`);
  expect(listed.body.keys.map((k: any) => k.status)).toEqual(['REVOKED', 'REVOKED']);
  for (const k of listed.body.keys) expect(Date.parse(k.revoked_at)).toBeGreaterThan(0);
  expect(await r.sismember(keys.closePending(), p.t)).toBe(0);
}

describe('close cascade', () => {
  it('drives budgets, keys and reservations terminal with one cascade event each under one correlation id', async () => {
    const p = await populated('cc-full');
    const c = await admin('PATCH', `/v1/admin/tenants/${p.t}`, { status: 'CLOSED' });
    expect(c.status).toBe(200);
    expect(c.body.status).toBe('CLOSED');
    await expectFullyClosed(p);
    const evs = await outboxEvents(s.redis.client, p.t);
    const counts = cascadeCounts(evs);
    expect(counts['tenant.closed']).toBe(1);
    expect(counts['api_key.revoked_via_tenant_cascade']).toBe(2);
    expect(counts['budget.closed_via_tenant_cascade']).toBe(2);
    expect(counts['reservation.released_via_tenant_cascade']).toBe(2);
    const released = evs.filter((e) => e.type === 'reservation.released_via_tenant_cascade').map((e) => [e.data.scope, e.data.released_amount]);
    expect(released.sort()).toEqual([[p.root, '700'], [p.ws, '700']]);
    const frozen = evs.find((e) => e.type === 'budget.closed_via_tenant_cascade' && e.data.scope === p.ws)!;
    expect(frozen.data).toMatchObject({ prior_status: 'FROZEN', new_status: 'CLOSED', cascade_reason: 'tenant_closed' });
    const rows = await s.redis.client.xrange(keys.outbox(p.t), '-', '+');
    const corr = new Set(rows.map(([, f]) => f[f.indexOf('correlation_id') + 1]).filter((_, i) => rows[i][1].includes('correlation_id')));
    expect([...corr]).toEqual([`tenant_close_cascade:${p.t}:${c.headers.get('x-request-id')}`]);
    // the tenant's keys no longer authenticate
    const k = await call(s.adminUrl, 'GET', '/v1/balances', { key: p.keys[0].key_secret });
    expect(k.status).toBe(401);
    // re-close: no-op, no new events
    const before = evs.length;
    expect((await admin('PATCH', `/v1/admin/tenants/${p.t}`, { status: 'CLOSED' })).status).toBe(200);
    expect((await outboxEvents(s.redis.client, p.t)).length).toBe(before);
  });

  it('Rule 2: every mutating op of this part → 409 TENANT_CLOSED; GETs still work', async () => {
    const p = await populated('cc-guard');
    await admin('PATCH', `/v1/admin/tenants/${p.t}`, { status: 'CLOSED' });
    const q = `scope=${enc(p.root)}&unit=${U}`;
    const mutations: [string, string, unknown][] = [
      ['POST', '/v1/admin/budgets', { tenant_id: p.t, scope: `${p.root}/agent:new`, unit: U, allocated: T(1) }],
      ['PATCH', `/v1/admin/budgets?${q}`, { overdraft_limit: T(5) }],
      ['POST', `/v1/admin/budgets/freeze?${q}`, undefined],
      ['POST', `/v1/admin/budgets/unfreeze?${q}`, undefined],
      ['POST', `/v1/admin/budgets/fund?tenant_id=${p.t}&${q}`, { operation: 'CREDIT', amount: T(1) }],
      ['POST', '/v1/admin/api-keys', { tenant_id: p.t, name: 'late' }],
      ['PATCH', `/v1/admin/api-keys/${p.keys[0].key_id}`, { name: 'renamed' }],
      ['DELETE', `/v1/admin/api-keys/${p.keys[0].key_id}`, undefined],
    ];
    for (const [m, path, body] of mutations) {
      const r = await admin(m, path, body);
      expect(r.status, `${m} ${path}`).toBe(409);
      expect(r.body.error, `${m} ${path}`).toBe('TENANT_CLOSED');
    }
    for (const path of [`/v1/admin/tenants/${p.t}`, `/v1/admin/budgets?tenant_id=${p.t}`, `/v1/admin/budgets/lookup?${q}`, `/v1/admin/api-keys?tenant_id=${p.t}`]) {
      expect((await admin('GET', path)).status, path).toBe(200);
    }
  });

  it('an interrupted cascade (crash after 3 steps) completes on re-close with no duplicate events', async () => {
    const p = await populated('cc-crash');
    process.env.CYCLES_TEST_CASCADE_STOP_AFTER = '3';
    const c = await admin('PATCH', `/v1/admin/tenants/${p.t}`, { status: 'CLOSED' });
    expect(c.status).toBe(500);
    delete process.env.CYCLES_TEST_CASCADE_STOP_AFTER;
    // flip is durable, children partly done, guard already active, pending mark kept
    expect((await admin('GET', `/v1/admin/tenants/${p.t}`)).body.status).toBe('CLOSED');
    expect(await s.redis.client.sismember(keys.closePending(), p.t)).toBe(1);
    const mid = cascadeCounts(await outboxEvents(s.redis.client, p.t));
    expect((mid['api_key.revoked_via_tenant_cascade'] ?? 0) + (mid['budget.closed_via_tenant_cascade'] ?? 0)).toBeLessThan(4);
    const fund = await admin('POST', `/v1/admin/budgets/fund?tenant_id=${p.t}&scope=${enc(p.ws)}&unit=${U}`, { operation: 'CREDIT', amount: T(1) });
    expect(fund.body.error).toBe('TENANT_CLOSED');

    const again = await admin('PATCH', `/v1/admin/tenants/${p.t}`, { status: 'CLOSED' });
    expect(again.status).toBe(200);
    await expectFullyClosed(p);
    const counts = cascadeCounts(await outboxEvents(s.redis.client, p.t));
    expect([counts['tenant.closed'], counts['api_key.revoked_via_tenant_cascade'], counts['budget.closed_via_tenant_cascade'],
      counts['reservation.released_via_tenant_cascade']]).toEqual([1, 2, 2, 2]);
  });

  it('an interrupted cascade is completed by the resume worker of a freshly started server on the same Redis', async () => {
    const p = await populated('cc-resume');
    process.env.CYCLES_TEST_CASCADE_STOP_AFTER = '1';
    expect((await admin('PATCH', `/v1/admin/tenants/${p.t}`, { status: 'CLOSED' })).status).toBe(500);
    delete process.env.CYCLES_TEST_CASCADE_STOP_AFTER;
    const second = await startServer({ env: { REDIS_URL: s.redis.url, ADMIN_API_KEY: ADMIN_KEY, CYCLES_RUNTIME_PORT: '0', CYCLES_ADMIN_PORT: '0', CYCLES_LOG_LEVEL: 'silent' } });
    try {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && await s.redis.client.sismember(keys.closePending(), p.t)) await new Promise((r) => setTimeout(r, 50));
      await expectFullyClosed(p);
      const counts = cascadeCounts(await outboxEvents(s.redis.client, p.t));
      expect([counts['tenant.closed'], counts['api_key.revoked_via_tenant_cascade'], counts['budget.closed_via_tenant_cascade']]).toEqual([1, 2, 2]);
    } finally {
      await second.stop();
    }
  });
});
