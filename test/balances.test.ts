// getBalances (GET /v1/balances): filter requirement, tenancy (403, acme vs acme-corp),
// whole-segment matching, order, keyset pagination.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { putBudget } from './helpers/fixtures';

let srv: TestServer;
let n = 0;
const U = 'USD_MICROCENTS';

beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });

const get = (key: string, qs: string) => call(srv.runtimeUrl, 'GET', `/v1/balances?${qs}`, { key });

async function tenant(prefix = 'bal') {
  const t = `${prefix}${++n}`;
  return { t, key: await srv.tenantKey(t) };
}

describe('getBalances', () => {
  it('no subject filter → 400 INVALID_REQUEST (blank values count as absent)', async () => {
    const { key } = await tenant();
    for (const qs of ['', 'limit=10', 'workspace=&agent=']) {
      const r = await get(key, qs);
      expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    }
  });

  it('tenant param must equal the key tenant (case-insensitive) else 403; omitted → own tenant', async () => {
    const { t, key } = await tenant();
    await putBudget(srv.redis.client, t, `tenant:${t}`, U, { allocated: 100 });
    const bad = await get(key, 'tenant=somebody');
    expect([bad.status, bad.body.error]).toEqual([403, 'FORBIDDEN']);
    const ok = await get(key, `tenant=${t.toUpperCase()}`);
    expect(ok.status).toBe(200);
    expect(ok.body.balances.map((b: any) => b.scope)).toEqual([`tenant:${t}`]);
    expect(ok.body.has_more).toBe(false);
    expect(ok.body.next_cursor).toBeUndefined();
  });

  it('never returns another tenant\'s balances, even with a prefix-similar id (acme vs acme-corp)', async () => {
    const acme = `acme${++n}`;
    const corp = `${acme}-corp`;
    await putBudget(srv.redis.client, acme, `tenant:${acme}`, U, { allocated: 1 });
    await putBudget(srv.redis.client, corp, `tenant:${corp}`, U, { allocated: 2 });
    await putBudget(srv.redis.client, corp, `tenant:${corp}/workspace:prod`, U, { allocated: 3 });
    const key = await srv.tenantKey(acme);
    const r = await get(key, 'workspace=prod');
    expect(r.status).toBe(200);
    expect(r.body.balances).toEqual([]);
    const all = await get(key, `tenant=${acme}`);
    expect(all.body.balances.map((b: any) => b.scope)).toEqual([`tenant:${acme}`]);
    expect(all.text).not.toContain('acme-corp');
  });

  it('matches whole segments anywhere in the path, all units, sorted by scope then unit, exact amounts', async () => {
    const { t, key } = await tenant();
    const c = srv.redis.client;
    await putBudget(c, t, `tenant:${t}`, U, { allocated: 1000 });
    await putBudget(c, t, `tenant:${t}/workspace:prod`, U, { allocated: 500, spent: 120, reserved: 30, debt: 0, overdraft_limit: 10 });
    await putBudget(c, t, `tenant:${t}/workspace:prod`, 'TOKENS', { allocated: 2n ** 53n + 1n });
    await putBudget(c, t, `tenant:${t}/workspace:prod/agent:bot`, U, { allocated: 50 });
    await putBudget(c, t, `tenant:${t}/workspace:prod2`, U, { allocated: 70 });
    await putBudget(c, t, `tenant:${t}/app:prod`, U, { allocated: 70 });
    const r = await get(key, 'workspace=PROD');
    expect(r.status).toBe(200);
    expect(r.body.balances.map((b: any) => `${b.scope_path}|${b.remaining.unit}`)).toEqual([
      `tenant:${t}/workspace:prod|TOKENS`,
      `tenant:${t}/workspace:prod|${U}`,
      `tenant:${t}/workspace:prod/agent:bot|${U}`,
    ]);
    const ws = r.body.balances[1];
    expect(ws).toEqual({
      scope: `tenant:${t}/workspace:prod`,
      scope_path: `tenant:${t}/workspace:prod`,
      remaining: { unit: U, amount: 350 },
      reserved: { unit: U, amount: 30 },
      spent: { unit: U, amount: 120 },
      allocated: { unit: U, amount: 500 },
      debt: { unit: U, amount: 0 },
      overdraft_limit: { unit: U, amount: 10 },
      is_over_limit: false,
    });
    expect(r.body.balances[0].allocated.amount).toBe(2n ** 53n + 1n);
    // two filters combine (AND)
    const both = await get(key, 'workspace=prod&agent=bot');
    expect(both.body.balances.map((b: any) => b.scope)).toEqual([`tenant:${t}/workspace:prod/agent:bot`]);
    // include_children is accepted (and ignored)
    const ic = await get(key, 'workspace=prod&include_children=true');
    expect(ic.body.balances).toHaveLength(3);
  });

  it('pages with limit/cursor: every row exactly once, in order; bad cursor or cursor from another filter → 400', async () => {
    const { t, key } = await tenant();
    const want: string[] = [];
    for (let i = 0; i < 7; i++) {
      const scope = `tenant:${t}/agent:a${i}`;
      await putBudget(srv.redis.client, t, scope, U, { allocated: i });
      want.push(scope);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = await get(key, `tenant=${t}&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.balances.map((b: any) => b.scope));
      expect(r.body.has_more).toBe(r.body.next_cursor !== undefined);
      cursor = r.body.next_cursor;
      if (pages === 0) {
        const other = await get(key, `agent=a1&limit=3&cursor=${cursor}`);
        expect([other.status, other.body.error]).toEqual([400, 'INVALID_REQUEST']);
      }
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([`tenant:${t}`, ...want].filter((s) => s !== `tenant:${t}`));
    const garbage = await get(key, `tenant=${t}&cursor=not-a-cursor`);
    expect([garbage.status, garbage.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('limit outside 1..200 → 400; key without balances:read → 403; no key → 401', async () => {
    const { t, key } = await tenant();
    for (const l of ['0', '201', 'abc']) {
      const r = await get(key, `tenant=${t}&limit=${l}`);
      expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    }
    const weak = await srv.tenantKey(t, ['reservations:list']);
    const r = await get(weak, `tenant=${t}`);
    expect([r.status, r.body.error]).toEqual([403, 'FORBIDDEN']);
    const anon = await call(srv.runtimeUrl, 'GET', `/v1/balances?tenant=${t}`);
    expect(anon.status).toBe(401);
  });
});
