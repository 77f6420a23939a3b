// A tenant key restricted by scope_filter reaches only the scopes its filter admits, on
// every runtime operation: reserve/decide/events are refused outside it (403), commit /
// release / extend / get of a reservation outside it are refused (403) with nothing
// changed, and lists and balances simply do not show what lies outside.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { putBudget, getBudget } from './helpers/fixtures';

const U = 'TOKENS';
let srv: TestServer;
let n = 0;
beforeAll(async () => { srv = await startTestServer(); }, 30_000);
afterAll(async () => { await srv?.stop(); });

async function setup() {
  const t = `sf${++n}-${Math.random().toString(36).slice(2, 7)}`;
  await putBudget(srv.redis.client, t, `tenant:${t}`, U, { allocated: 10_000 });
  await putBudget(srv.redis.client, t, `tenant:${t}/workspace:eng`, U, { allocated: 1_000 });
  await putBudget(srv.redis.client, t, `tenant:${t}/workspace:ops`, U, { allocated: 1_000 });
  const full = await srv.tenantKey(t);
  const eng = await srv.tenantKey(t, undefined, ['workspace:eng']);
  return { t, full, eng };
}
const reserveBody = (t: string, ws: string) => ({
  idempotency_key: `k-${Math.random().toString(36).slice(2)}`,
  subject: { tenant: t, workspace: ws, agent: 'a' }, action: { kind: 'llm.completion', name: 'x' },
  estimate: { unit: U, amount: 10 },
});
const rt = (method: string, path: string, key: string, body?: unknown) => call(srv.runtimeUrl, method, path, { key, body });

describe('runtime scope_filter', () => {
  it('reserve, decide and events outside the filter are 403 with nothing written; inside they work', async () => {
    const { t, eng } = await setup();
    const out = await rt('POST', '/v1/reservations', eng, reserveBody(t, 'ops'));
    expect([out.status, out.body.error]).toEqual([403, 'FORBIDDEN']);
    const { idempotency_key: _k, ...decideBase } = reserveBody(t, 'ops');
    const dec = await rt('POST', '/v1/decide', eng, { ...decideBase, idempotency_key: 'd1' });
    expect(dec.status).toBe(403);
    const ev = await rt('POST', '/v1/events', eng, {
      idempotency_key: 'e1', subject: { tenant: t, workspace: 'ops' }, action: { kind: 'x.y', name: 'x' }, actual: { unit: U, amount: 5 },
    });
    expect(ev.status).toBe(403);
    expect((await getBudget(srv.redis.client, t, `tenant:${t}/workspace:ops`, U)).reserved).toBe('0');
    expect((await getBudget(srv.redis.client, t, `tenant:${t}/workspace:ops`, U)).spent).toBe('0');
    const ok = await rt('POST', '/v1/reservations', eng, reserveBody(t, 'eng'));
    expect(ok.status, ok.text).toBe(200);
  });

  it('commit, release, extend and get of a reservation outside the filter are 403 and leave it ACTIVE', async () => {
    const { t, full, eng } = await setup();
    const r = await rt('POST', '/v1/reservations', full, reserveBody(t, 'ops'));
    expect(r.status).toBe(200);
    const id = r.body.reservation_id;
    const c = await rt('POST', `/v1/reservations/${id}/commit`, eng, { idempotency_key: 'c', actual: { unit: U, amount: 5 } });
    const rel = await rt('POST', `/v1/reservations/${id}/release`, eng, { idempotency_key: 'r' });
    const ext = await rt('POST', `/v1/reservations/${id}/extend`, eng, { idempotency_key: 'x', extend_by_ms: 1000 });
    const get = await rt('GET', `/v1/reservations/${id}`, eng);
    expect([c.status, rel.status, ext.status, get.status]).toEqual([403, 403, 403, 403]);
    const still = await rt('GET', `/v1/reservations/${id}`, full);
    expect([still.status, still.body.status]).toEqual([200, 'ACTIVE']);
    expect((await getBudget(srv.redis.client, t, `tenant:${t}/workspace:ops`, U)).reserved).toBe('10');
  });

  it('lists and balances show only what the filter admits', async () => {
    const { t, full, eng } = await setup();
    const inEng = await rt('POST', '/v1/reservations', full, reserveBody(t, 'eng'));
    const inOps = await rt('POST', '/v1/reservations', full, reserveBody(t, 'ops'));
    const listed = await rt('GET', '/v1/reservations', eng);
    expect(listed.status, listed.text).toBe(200);
    const ids = listed.body.reservations.map((x: any) => x.reservation_id);
    expect(ids).toContain(inEng.body.reservation_id);
    expect(ids).not.toContain(inOps.body.reservation_id);
    const all = await rt('GET', '/v1/reservations', full);
    expect(all.body.reservations.map((x: any) => x.reservation_id)).toEqual(expect.arrayContaining([inEng.body.reservation_id, inOps.body.reservation_id]));

    const bal = await rt('GET', `/v1/balances?tenant=${t}`, eng);
    expect(bal.status, bal.text).toBe(200);
    expect(bal.body.balances.map((b: any) => b.scope)).toEqual([`tenant:${t}/workspace:eng`]);
    const balAll = await rt('GET', `/v1/balances?tenant=${t}`, full);
    expect(balAll.body.balances).toHaveLength(3);
  });
});
