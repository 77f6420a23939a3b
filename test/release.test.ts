// releaseReservation: ledger restore on every scope, each error code, replay, admin-key
// release on the owner's behalf, and the tenant-close cascade's guard bypass.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { getBudget, putBudget, putTenant } from './helpers/fixtures';
import { commitPath, expectLedgerHolds, redisNowMs, releasePath, reserve, setExpiry, uid, readReservation } from './helpers/reservations';
import { keys } from '../src/store/keys';
import { releaseForCascade } from '../src/ledger/release';

const U = 'USD_MICROCENTS';
let srv: TestServer;
beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });
const redis = () => srv.redis.client;

async function tenant(): Promise<{ t: string; key: string; root: string; ws: string; subject: Record<string, string> }> {
  const t = uid('r');
  const root = `tenant:${t}`;
  const ws = `${root}/workspace:w`;
  await putBudget(redis(), t, root, U, { allocated: 10_000, spent: 1_000 });
  await putBudget(redis(), t, ws, U, { allocated: 2_000 });
  return { t, key: await srv.tenantKey(t), root, ws, subject: { tenant: t, workspace: 'w' } };
}

const release = (key: string, id: string, body: Record<string, unknown> = {}) =>
  call(srv.runtimeUrl, 'POST', releasePath(id), { key, body: { idempotency_key: uid('k'), ...body } });

describe('release', () => {
  it('gives the whole estimate back on every budgeted scope; spent unchanged', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 700, subject: c.subject });
    expect((await getBudget(redis(), c.t, c.ws, U)).remaining).toBe('1300');
    const r = await release(c.key, id, { reason: 'not needed' });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ status: 'RELEASED', released: { unit: U, amount: 700 } });
    expect(r.body.balances.map((b: any) => [b.scope, b.remaining.amount, b.reserved.amount, b.spent.amount]))
      .toEqual([[c.root, 9_000, 0, 1_000], [c.ws, 2_000, 0, 0]]);
    const h = await readReservation(redis(), c.t, id);
    expect([h.status, h.release_reason]).toEqual(['RELEASED', 'not needed']);
    expect(Number(h.released_at_ms)).toBeGreaterThan(0);
    expect(await redis().zscore(keys.expirySchedule(c.t), id)).toBeNull();
    await expectLedgerHolds(redis(), c.t);
  });

  it('replay is byte-identical and restores once; a different payload under the key is IDEMPOTENCY_MISMATCH', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 300 });
    const body = { idempotency_key: uid('k'), reason: 'done' };
    const first = await call(srv.runtimeUrl, 'POST', releasePath(id), { key: c.key, body });
    expect(first.status).toBe(200);
    await reserve(srv, c.key, c.t, { estimate: 50 }); // ledger moves on
    const again = await call(srv.runtimeUrl, 'POST', releasePath(id), { key: c.key, body });
    expect(again.text).toBe(first.text);
    expect((await getBudget(redis(), c.t, c.root, U)).reserved).toBe('50');
    const mismatch = await call(srv.runtimeUrl, 'POST', releasePath(id), { key: c.key, body: { ...body, reason: 'other' } });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error).toBe('IDEMPOTENCY_MISMATCH');
  });

  it('404 NOT_FOUND and 403 FORBIDDEN (another tenant\'s reservation)', async () => {
    const a = await tenant();
    const b = await tenant();
    const id = await reserve(srv, a.key, a.t, { estimate: 10 });
    const nf = await release(a.key, 'res_nope');
    expect([nf.status, nf.body.error]).toEqual([404, 'NOT_FOUND']);
    const fb = await release(b.key, id);
    expect([fb.status, fb.body.error]).toEqual([403, 'FORBIDDEN']);
    expect((await readReservation(redis(), a.t, id)).status).toBe('ACTIVE');
  });

  it('409 RESERVATION_FINALIZED after commit, and after release with a different key', async () => {
    const c = await tenant();
    const a = await reserve(srv, c.key, c.t, { estimate: 100 });
    expect((await call(srv.runtimeUrl, 'POST', commitPath(a), { key: c.key, body: { idempotency_key: 'c', actual: { unit: U, amount: 100 } } })).status).toBe(200);
    const afterCommit = await release(c.key, a);
    expect([afterCommit.status, afterCommit.body.error]).toEqual([409, 'RESERVATION_FINALIZED']);
    const b = await reserve(srv, c.key, c.t, { estimate: 100 });
    expect((await release(c.key, b)).status).toBe(200);
    const twice = await release(c.key, b);
    expect([twice.status, twice.body.error]).toEqual([409, 'RESERVATION_FINALIZED']);
    const root = await getBudget(redis(), c.t, c.root, U);
    expect([root.spent, root.reserved, root.remaining]).toEqual(['1100', '0', '8900']);
  });

  it('410 past expires_at + grace; inside the grace window release still works', async () => {
    const c = await tenant();
    const late = await reserve(srv, c.key, c.t, { estimate: 100, grace_period_ms: 1_000 });
    const inGrace = await reserve(srv, c.key, c.t, { estimate: 100, grace_period_ms: 60_000 });
    const now = await redisNowMs(redis());
    await setExpiry(redis(), c.t, late, now - 2_000);
    await setExpiry(redis(), c.t, inGrace, now - 2_000);
    const r = await release(c.key, late);
    expect([r.status, r.body.error]).toEqual([410, 'RESERVATION_EXPIRED']);
    expect((await release(c.key, inGrace)).status).toBe(200);
    expect((await getBudget(redis(), c.t, c.root, U)).reserved).toBe('100');
  });

  it('409 TENANT_CLOSED for fresh releases; a pre-close replay returns the original', async () => {
    const c = await tenant();
    const done = await reserve(srv, c.key, c.t, { estimate: 100 });
    const open = await reserve(srv, c.key, c.t, { estimate: 100 });
    const body = { idempotency_key: uid('k') };
    const original = await call(srv.runtimeUrl, 'POST', releasePath(done), { key: c.key, body });
    expect(original.status).toBe(200);
    await putTenant(redis(), c.t, { status: 'CLOSED' });
    const fresh = await release(c.key, open);
    expect([fresh.status, fresh.body.error]).toEqual([409, 'TENANT_CLOSED']);
    const finalized = await release(c.key, done);
    expect([finalized.status, finalized.body.error]).toEqual([409, 'TENANT_CLOSED']);
    const replay = await call(srv.runtimeUrl, 'POST', releasePath(done), { key: c.key, body });
    expect(replay.text).toBe(original.text);
  });

  it('a tenant key without reservations:release is 403', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 10 });
    const weak = await srv.tenantKey(c.t, ['reservations:create']);
    const r = await release(weak, id);
    expect(r.status).toBe(403);
    expect((await readReservation(redis(), c.t, id)).status).toBe('ACTIVE');
  });
});

describe('release with the admin key', () => {
  it('releases any tenant\'s reservation on its behalf and writes an admin_on_behalf_of audit row', async () => {
    const c = await tenant();
    const id = await reserve(srv, c.key, c.t, { estimate: 250 });
    const r = await call(srv.runtimeUrl, 'POST', releasePath(id), {
      adminKey: srv.adminKey, body: { idempotency_key: uid('k'), reason: '[INCIDENT_FORCE_RELEASE]' },
    });
    expect(r.status, r.text).toBe(200);
    expect(r.body.released).toEqual({ unit: U, amount: 250 });
    expect(r.headers.get('x-cycles-tenant')).toBe(c.t);
    const h = await readReservation(redis(), c.t, id);
    expect(h.status).toBe('RELEASED');
    expect(JSON.parse(h.released_by)).toEqual({ type: 'admin_on_behalf_of' });
    // The audit row is written after the response; poll briefly.
    let rows: any[] = [];
    for (let i = 0; i < 50 && rows.length === 0; i++) {
      const logs = await call(srv.adminUrl, 'GET', `/v1/admin/audit/logs?request_id=${r.headers.get('x-request-id')}`, { adminKey: srv.adminKey });
      expect(logs.status, logs.text).toBe(200);
      rows = logs.body.logs;
      if (rows.length === 0) await new Promise((res) => setTimeout(res, 20));
    }
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ tenant_id: c.t, operation: 'releaseReservation', status: 200, resource_id: id });
    expect(rows[0].metadata).toMatchObject({ actor_type: 'admin_on_behalf_of', reason: '[INCIDENT_FORCE_RELEASE]' });
    await expectLedgerHolds(redis(), c.t);
  });

  it('404 for an unknown reservation; a wrong admin key is 401', async () => {
    const nf = await call(srv.runtimeUrl, 'POST', releasePath('res_unknown'), { adminKey: srv.adminKey, body: { idempotency_key: 'x' } });
    expect([nf.status, nf.body.error]).toEqual([404, 'NOT_FOUND']);
    const bad = await call(srv.runtimeUrl, 'POST', releasePath('res_unknown'), { adminKey: 'wrong', body: { idempotency_key: 'x' } });
    expect(bad.status).toBe(401);
  });
});

describe('releaseForCascade (tenant-close cascade)', () => {
  it('bypasses the closed-tenant guard, restores the ledger, is idempotent, and skips finalized reservations', async () => {
    const c = await tenant();
    const open = await reserve(srv, c.key, c.t, { estimate: 400, subject: c.subject });
    const done = await reserve(srv, c.key, c.t, { estimate: 100 });
    expect((await release(c.key, done)).status).toBe(200);
    await putTenant(redis(), c.t, { status: 'CLOSED' });
    const first = await releaseForCascade(redis(), c.t, open);
    expect(first.outcome).toBe('released');
    const second = await releaseForCascade(redis(), c.t, open);
    expect(second).toEqual(first);
    expect(await releaseForCascade(redis(), c.t, done)).toEqual({ outcome: 'skipped', code: 'RESERVATION_FINALIZED' });
    expect(await releaseForCascade(redis(), c.t, 'res_missing')).toEqual({ outcome: 'skipped', code: 'NOT_FOUND' });
    const ws = await getBudget(redis(), c.t, c.ws, U);
    expect([ws.reserved, ws.remaining]).toEqual(['0', '2000']);
    expect((await readReservation(redis(), c.t, open)).status).toBe('RELEASED');
    await expectLedgerHolds(redis(), c.t);
  });
});
