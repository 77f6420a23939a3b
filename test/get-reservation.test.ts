// getReservation (GET /v1/reservations/{id}): detail projection, tenancy (403 vs 404),
// admin key, 410 on EXPIRED, reads never blocked by a CLOSED tenant.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { putBudget, putTenant } from './helpers/fixtures';
import { putReservation } from './helpers/seedReservations';
import { keys } from '../src/store/keys';
import { newReservationId } from '../src/ledger/reservationId';

let srv: TestServer;
let n = 0;
const U = 'USD_MICROCENTS';

beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });

async function tenantWithBudget(prefix = 'gr') {
  const t = `${prefix}${++n}`;
  await putBudget(srv.redis.client, t, `tenant:${t}`, U, { allocated: 10_000 });
  return { t, key: await srv.tenantKey(t) };
}

async function reserve(t: string, key: string, extra: Record<string, unknown> = {}) {
  const r = await call(srv.runtimeUrl, 'POST', '/v1/reservations', {
    key,
    body: {
      idempotency_key: `gk-${++n}`,
      subject: { tenant: t, workspace: 'prod' },
      action: { kind: 'llm.completion', name: 'x' },
      estimate: { unit: U, amount: 250 },
      ...extra,
    },
  });
  expect(r.status).toBe(200);
  return r.body.reservation_id as string;
}

const get = (id: string, auth: { key?: string; adminKey?: string }) =>
  call(srv.runtimeUrl, 'GET', `/v1/reservations/${encodeURIComponent(id)}`, auth);

describe('getReservation', () => {
  it('returns the ReservationDetail of an ACTIVE reservation created through the API, with metadata', async () => {
    const { t, key } = await tenantWithBudget();
    const id = await reserve(t, key, { metadata: { run: 'r1', big: 9007199254740993n } });
    const r = await get(id, { key });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      reservation_id: id,
      status: 'ACTIVE',
      subject: { tenant: t, workspace: 'prod' },
      action: { kind: 'llm.completion', name: 'x' },
      reserved: { unit: U, amount: 250 },
      scope_path: `tenant:${t}/workspace:prod`,
      affected_scopes: [`tenant:${t}`, `tenant:${t}/workspace:prod`],
    });
    expect(r.body.metadata).toEqual({ run: 'r1', big: 9007199254740993n });
    expect(r.body.finalized_at_ms).toBeUndefined();
    expect(r.body.committed).toBeUndefined();
    expect(typeof r.body.created_at_ms).toBe('number');
    expect(r.body.expires_at_ms).toBeGreaterThan(r.body.created_at_ms);
  });

  it('COMMITTED rows carry committed, finalized_at_ms and committed_metadata; RELEASED rows finalized_at_ms only', async () => {
    const { t, key } = await tenantWithBudget();
    const now = Date.now();
    await putReservation(srv.redis.client, t, {
      id: `res_c_${t}`, status: 'COMMITTED', created_at_ms: now, finalized_at_ms: now + 10, estimate: 300, charged: 280,
      committed_metadata: { outcome: 'ok' },
    });
    await putReservation(srv.redis.client, t, { id: `res_r_${t}`, status: 'RELEASED', created_at_ms: now, finalized_at_ms: now + 20 });
    const c = await get(`res_c_${t}`, { key });
    expect(c.status).toBe(200);
    expect(c.body.committed).toEqual({ unit: U, amount: 280 });
    expect(c.body.finalized_at_ms).toBe(now + 10);
    expect(c.body.committed_metadata).toEqual({ outcome: 'ok' });
    const r = await get(`res_r_${t}`, { key });
    expect(r.status).toBe(200);
    expect(r.body.finalized_at_ms).toBe(now + 20);
    expect(r.body.committed).toBeUndefined();
  });

  it('another tenant\'s reservation → 403 (acme-corp vs acme); unknown id → 404', async () => {
    const acme = `acme${++n}`;
    const corp = `${acme}-corp`;
    await putBudget(srv.redis.client, corp, `tenant:${corp}`, U, { allocated: 1000 });
    const corpKey = await srv.tenantKey(corp);
    const acmeKey = await srv.tenantKey(acme);
    const id = await reserve(corp, corpKey);
    const r = await get(id, { key: acmeKey });
    expect([r.status, r.body.error]).toEqual([403, 'FORBIDDEN']);
    expect(r.text).not.toContain('workspace');
    const missing = await get('res_does_not_exist', { key: acmeKey });
    expect([missing.status, missing.body.error]).toEqual([404, 'NOT_FOUND']);
  });

  it('an id naming another tenant that holds no such reservation is 404, not 403', async () => {
    const { key } = await tenantWithBudget();
    const r = await get(newReservationId('someone-else'), { key });
    expect([r.status, r.body.error]).toEqual([404, 'NOT_FOUND']);
  });

  it('admin key reads any tenant\'s reservation; unknown id → 404; bad admin key → 401', async () => {
    const { t, key } = await tenantWithBudget();
    const id = await reserve(t, key);
    const r = await get(id, { adminKey: srv.adminKey });
    expect(r.status).toBe(200);
    expect(r.body.reservation_id).toBe(id);
    const missing = await get('res_nope', { adminKey: srv.adminKey });
    expect(missing.status).toBe(404);
    const bad = await get(id, { adminKey: 'wrong' });
    expect([bad.status, bad.body.error]).toEqual([401, 'UNAUTHORIZED']);
    const none = await get(id, {});
    expect(none.status).toBe(401);
  });

  it('EXPIRED → 410 RESERVATION_EXPIRED (tenant and admin)', async () => {
    const { t, key } = await tenantWithBudget();
    const id = newReservationId(t);
    await putReservation(srv.redis.client, t, { id, status: 'EXPIRED', created_at_ms: Date.now() - 100_000 });
    const r = await get(id, { key });
    expect([r.status, r.body.error]).toEqual([410, 'RESERVATION_EXPIRED']);
    const a = await get(id, { adminKey: srv.adminKey });
    expect(a.status).toBe(410);
  });

  it('reads are not blocked by a CLOSED tenant', async () => {
    const { t, key } = await tenantWithBudget();
    await putTenant(srv.redis.client, t);
    const id = await reserve(t, key);
    await srv.redis.client.hset(keys.tenant(t), 'status', 'CLOSED');
    const r = await get(id, { key });
    expect(r.status).toBe(200);
  });

  it('a key without reservations:list → 403; an over-long id → 400', async () => {
    const { t, key } = await tenantWithBudget();
    const id = await reserve(t, key);
    const weak = await srv.tenantKey(t, ['balances:read']);
    const r = await get(id, { key: weak });
    expect([r.status, r.body.error]).toEqual([403, 'FORBIDDEN']);
    const long = await get('x'.repeat(129), { key });
    expect([long.status, long.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });
});
