// A SUSPENDED tenant is read-only for new spend: no new reservations (live 403, dry_run and
// decide DENY TENANT_SUSPENDED) and no events, while reservations made before the
// suspension can still be committed, released and extended (docs/decisions.md D9).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, putTenant, getBudget } from './helpers/fixtures';
import { ledgerHolds } from '../src/ledger/model';

const U = 'TOKENS';
let srv: TestServer;
let n = 0;
beforeAll(async () => { srv = await startTestServer(); }, 30_000);
afterAll(async () => { await srv?.stop(); });

async function tenant() {
  const t = `susp${++n}-${Math.random().toString(36).slice(2, 7)}`;
  await putTenant(srv.redis.client, t);
  await putBudget(srv.redis.client, t, `tenant:${t}`, U, { allocated: 1000 });
  return { t, key: await srv.tenantKey(t) };
}
const req = (t: string, extra: Record<string, unknown> = {}) => ({
  idempotency_key: `k-${Math.random().toString(36).slice(2)}`,
  subject: { tenant: t, agent: 'a' }, action: { kind: 'llm.completion', name: 'x' },
  estimate: { unit: U, amount: 100 }, ...extra,
});

describe('SUSPENDED tenant', () => {
  it('refuses new reservations and events, keeps existing ones usable, then reactivates', async () => {
    const { t, key } = await tenant();
    const before = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: req(t) });
    expect(before.status, before.text).toBe(200);
    const toCommit = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: req(t) });
    const toRelease = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: req(t) });

    await putTenant(srv.redis.client, t, { status: 'SUSPENDED' });

    const live = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: req(t) });
    expect([live.status, live.body.error, live.body.details?.reason]).toEqual([403, 'FORBIDDEN', 'TENANT_SUSPENDED']);
    const dry = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: req(t, { dry_run: true }) });
    expect([dry.status, dry.body.decision, dry.body.reason_code]).toEqual([200, 'DENY', 'TENANT_SUSPENDED']);
    const decide = await call(srv.runtimeUrl, 'POST', '/v1/decide', { key, body: req(t) });
    expect([decide.status, decide.body.decision, decide.body.reason_code]).toEqual([200, 'DENY', 'TENANT_SUSPENDED']);
    const ev = await call(srv.runtimeUrl, 'POST', '/v1/events', {
      key, body: { idempotency_key: 'e1', subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, actual: { unit: U, amount: 5 } },
    });
    expect([ev.status, ev.body.error, ev.body.details?.reason]).toEqual([403, 'FORBIDDEN', 'TENANT_SUSPENDED']);

    // existing reservations: extend, commit, release all work
    const ext = await call(srv.runtimeUrl, 'POST', `/v1/reservations/${before.body.reservation_id}/extend`, { key, body: { idempotency_key: 'x1', extend_by_ms: 1000 } });
    expect(ext.status, ext.text).toBe(200);
    const c = await call(srv.runtimeUrl, 'POST', `/v1/reservations/${toCommit.body.reservation_id}/commit`, { key, body: { idempotency_key: 'c1', actual: { unit: U, amount: 40 } } });
    expect(c.status, c.text).toBe(200);
    const r = await call(srv.runtimeUrl, 'POST', `/v1/reservations/${toRelease.body.reservation_id}/release`, { key, body: { idempotency_key: 'r1' } });
    expect(r.status, r.text).toBe(200);
    // reads work
    expect((await call(srv.runtimeUrl, 'GET', `/v1/balances?tenant=${t}`, { key })).status).toBe(200);

    const b = await getBudget(srv.redis.client, t, `tenant:${t}`, U);
    expect([b.spent, b.reserved, b.remaining]).toEqual(['40', '100', '860']);
    expect(ledgerHolds(b)).toBe(true);

    await putTenant(srv.redis.client, t, { status: 'ACTIVE' });
    const again = await call(srv.runtimeUrl, 'POST', '/v1/reservations', { key, body: req(t) });
    expect(again.status, again.text).toBe(200);
  });
});
