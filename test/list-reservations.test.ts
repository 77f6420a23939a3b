// listReservations (GET /v1/reservations): tenancy, filters, the three inclusive windows,
// sort orders and tie-breaker, include projection, keyset pagination (static and under
// concurrent inserts), cursor binding, and the per-request scan bound.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { putReservation, type ReservationSeed } from './helpers/seedReservations';
import { MAX_ROWS_HYDRATED } from '../src/ledger/reservationRead';

let srv: TestServer;
let n = 0;
const U = 'USD_MICROCENTS';
const iso = (ms: number) => new Date(ms).toISOString();

beforeAll(async () => { srv = await startTestServer(); }, 60_000);
afterAll(async () => { await srv?.stop(); });

async function tenant(prefix = 'lr') {
  const t = `${prefix}${++n}`;
  return { t, key: await srv.tenantKey(t) };
}

const list = (auth: { key?: string; adminKey?: string }, qs = '') =>
  call(srv.runtimeUrl, 'GET', `/v1/reservations${qs ? `?${qs}` : ''}`, auth);

async function seed(t: string, rows: ReservationSeed[]) {
  for (const r of rows) await putReservation(srv.redis.client, t, r);
}

/** Walks every page; returns ids in order. */
async function walk(key: string, qs: string, between?: (page: number) => Promise<void>) {
  const ids: string[] = [];
  let cursor: string | undefined;
  let page = 0;
  do {
    const r = await list({ key }, `${qs}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(r.status).toBe(200);
    expect(r.body.has_more).toBe(r.body.next_cursor !== undefined);
    ids.push(...r.body.reservations.map((x: any) => x.reservation_id));
    cursor = r.body.next_cursor;
    if (between) await between(page);
    page++;
    expect(page).toBeLessThan(500);
  } while (cursor);
  return ids;
}

const T0 = 1_760_000_000_000;

describe('listReservations tenancy', () => {
  it('tenant key sees only its own tenant (acme vs acme-corp); mismatching tenant param → 403', async () => {
    const acme = `acme${++n}`;
    const corp = `${acme}-corp`;
    await seed(acme, [{ id: `r_${acme}_1`, created_at_ms: T0 }]);
    await seed(corp, [{ id: `r_${corp}_1`, created_at_ms: T0 }, { id: `r_${corp}_2`, created_at_ms: T0 + 1 }]);
    const key = await srv.tenantKey(acme);
    const r = await list({ key });
    expect(r.status).toBe(200);
    expect(r.body.reservations.map((x: any) => x.reservation_id)).toEqual([`r_${acme}_1`]);
    expect(r.text).not.toContain('-corp');
    const same = await list({ key }, `tenant=${acme.toUpperCase()}`);
    expect(same.status).toBe(200);
    const bad = await list({ key }, `tenant=${corp}`);
    expect([bad.status, bad.body.error]).toEqual([403, 'FORBIDDEN']);
  });

  it('admin key: tenant required (400 with the spec message), then filters that tenant', async () => {
    const { t } = await tenant();
    await seed(t, [{ id: `r_${t}_a`, created_at_ms: T0 }]);
    const r = await list({ adminKey: srv.adminKey });
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    expect(r.body.message).toBe('tenant query parameter is required when using admin key authentication');
    const ok = await list({ adminKey: srv.adminKey }, `tenant=${t}`);
    expect(ok.status).toBe(200);
    expect(ok.body.reservations.map((x: any) => x.reservation_id)).toEqual([`r_${t}_a`]);
    const bad = await list({ adminKey: 'nope' }, `tenant=${t}`);
    expect(bad.status).toBe(401);
  });

  it('a key without reservations:list → 403', async () => {
    const { t } = await tenant();
    const weak = await srv.tenantKey(t, ['balances:read']);
    const r = await list({ key: weak });
    expect([r.status, r.body.error]).toEqual([403, 'FORBIDDEN']);
  });
});

describe('listReservations rows and filters', () => {
  it('lists a reservation created through the API with the required summary fields', async () => {
    const { t, key } = await tenant();
    await putBudget(srv.redis.client, t, `tenant:${t}`, U, { allocated: 1000 });
    const c = await call(srv.runtimeUrl, 'POST', '/v1/reservations', {
      key,
      body: { idempotency_key: 'lost-id', subject: { tenant: t, agent: 'bot' }, action: { kind: 'k', name: 'n' }, estimate: { unit: U, amount: 7 }, metadata: { a: 1 } },
    });
    expect(c.status).toBe(200);
    const r = await list({ key }, 'idempotency_key=lost-id');
    expect(r.status).toBe(200);
    expect(r.body.reservations).toHaveLength(1);
    const row = r.body.reservations[0];
    expect(row).toMatchObject({
      reservation_id: c.body.reservation_id, status: 'ACTIVE', idempotency_key: 'lost-id',
      subject: { tenant: t, agent: 'bot' }, reserved: { unit: U, amount: 7 },
      scope_path: `tenant:${t}/agent:bot`, affected_scopes: [`tenant:${t}`, `tenant:${t}/agent:bot`],
    });
    expect(row.metadata).toBeUndefined();
    expect((await list({ key }, 'idempotency_key=other')).body.reservations).toEqual([]);
  });

  it('status and whole-segment subject filters; invalid status / sort → 400', async () => {
    const { t, key } = await tenant();
    await seed(t, [
      { id: 'a', created_at_ms: T0, subject: { tenant: t, workspace: 'prod' } },
      { id: 'b', created_at_ms: T0 + 1, subject: { tenant: t, workspace: 'prod2' }, status: 'COMMITTED' },
      { id: 'c', created_at_ms: T0 + 2, subject: { tenant: t, workspace: 'prod', agent: 'x' }, status: 'RELEASED' },
      { id: 'd', created_at_ms: T0 + 3, subject: { tenant: t, app: 'prod' } },
    ]);
    const ids = async (qs: string) => (await list({ key }, qs)).body.reservations.map((x: any) => x.reservation_id);
    expect(await ids('workspace=prod')).toEqual(['c', 'a']);
    expect(await ids('workspace=PROD&agent=x')).toEqual(['c']);
    expect(await ids('status=ACTIVE')).toEqual(['d', 'a']);
    expect(await ids('status=COMMITTED')).toEqual(['b']);
    for (const qs of ['status=DONE', 'sort_by=amount', 'sort_dir=up', 'limit=0', 'limit=201']) {
      const r = await list({ key }, qs);
      expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    }
  });

  it('include projects metadata / committed_metadata only on request; committed always on COMMITTED rows', async () => {
    const { t, key } = await tenant();
    await seed(t, [
      { id: 'm1', created_at_ms: T0, status: 'COMMITTED', estimate: 100, charged: 90, metadata: { m: 1 }, committed_metadata: { c: 2 } },
      { id: 'm2', created_at_ms: T0 + 1, metadata: { m: 3 } },
    ]);
    const plain = await list({ key }, 'sort_dir=asc');
    const [c0, a0] = plain.body.reservations;
    expect(c0.committed).toEqual({ unit: U, amount: 90 });
    expect(c0.finalized_at_ms).toBe(T0 + 1000);
    expect(c0.metadata).toBeUndefined();
    expect(c0.committed_metadata).toBeUndefined();
    expect(a0.committed).toBeUndefined();
    expect(a0.finalized_at_ms).toBeUndefined();
    const inc = await list({ key }, 'sort_dir=asc&include=metadata,%20bogus,,committed_metadata');
    expect(inc.status).toBe(200);
    expect(inc.body.reservations[0]).toMatchObject({ metadata: { m: 1 }, committed_metadata: { c: 2 } });
    expect(inc.body.reservations[1].metadata).toEqual({ m: 3 });
    const onlyMeta = await list({ key }, 'sort_dir=asc&include=metadata');
    expect(onlyMeta.body.reservations[0].committed_metadata).toBeUndefined();
    const empty = await list({ key }, 'include=');
    expect(empty.status).toBe(200);
  });
});

describe('listReservations time windows', () => {
  async function windowed() {
    const { t, key } = await tenant();
    await seed(t, [
      { id: 'w1', created_at_ms: T0, expires_at_ms: T0 + 10_000 },
      { id: 'w2', created_at_ms: T0 + 1000, expires_at_ms: T0 + 20_000, status: 'COMMITTED', finalized_at_ms: T0 + 5000 },
      { id: 'w3', created_at_ms: T0 + 2000, expires_at_ms: T0 + 30_000, status: 'RELEASED', finalized_at_ms: T0 + 6000 },
      { id: 'w4', created_at_ms: T0 + 3000, expires_at_ms: T0 + 40_000, status: 'EXPIRED' },
    ]);
    const ids = async (qs: string) => {
      const r = await list({ key }, `sort_dir=asc&${qs}`);
      expect(r.status).toBe(200);
      return r.body.reservations.map((x: any) => x.reservation_id);
    };
    return { t, key, ids };
  }

  it('from/to bound created_at_ms inclusively; either side alone works', async () => {
    const { ids } = await windowed();
    expect(await ids(`from=${iso(T0 + 1000)}&to=${iso(T0 + 2000)}`)).toEqual(['w2', 'w3']);
    expect(await ids(`from=${iso(T0 + 2000)}`)).toEqual(['w3', 'w4']);
    expect(await ids(`to=${iso(T0)}`)).toEqual(['w1']);
    // sort_by does not change which field the window binds to
    expect(await ids(`sort_by=expires_at_ms&from=${iso(T0 + 1000)}&to=${iso(T0 + 1000)}`)).toEqual(['w2']);
  });

  it('expires_from/expires_to bound expires_at_ms on every status', async () => {
    const { ids } = await windowed();
    expect(await ids(`expires_from=${iso(T0 + 20_000)}&expires_to=${iso(T0 + 40_000)}`)).toEqual(['w2', 'w3', 'w4']);
    expect(await ids(`expires_to=${iso(T0 + 10_000)}`)).toEqual(['w1']);
  });

  it('finalized_* bound finalized_at_ms and exclude ACTIVE and EXPIRED rows', async () => {
    const { ids } = await windowed();
    expect(await ids(`finalized_from=${iso(T0)}`)).toEqual(['w2', 'w3']);
    expect(await ids(`finalized_to=${iso(T0 + 5000)}`)).toEqual(['w2']);
    expect(await ids(`finalized_from=${iso(T0 + 5000)}&finalized_to=${iso(T0 + 6000)}`)).toEqual(['w2', 'w3']);
  });

  it('windows combine with AND; blank bounds are unset; lower > upper → 400 for each pair; malformed → 400', async () => {
    const { key, ids } = await windowed();
    expect(await ids(`from=${iso(T0)}&expires_to=${iso(T0 + 20_000)}&finalized_from=${iso(T0)}`)).toEqual(['w2']);
    expect(await ids('from=&to=&expires_from=&expires_to=&finalized_from=&finalized_to=')).toEqual(['w1', 'w2', 'w3', 'w4']);
    for (const [lo, hi] of [['from', 'to'], ['expires_from', 'expires_to'], ['finalized_from', 'finalized_to']]) {
      const r = await list({ key }, `${lo}=${iso(T0 + 1)}&${hi}=${iso(T0)}`);
      expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
    }
    const bad = await list({ key }, 'from=yesterday');
    expect([bad.status, bad.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });
});

describe('listReservations sorting and pagination', () => {
  async function tied() {
    const { t, key } = await tenant();
    // created_at ties (ids deliberately not in insertion order), reserved ties
    await seed(t, [
      { id: 'r-c', created_at_ms: T0 + 5, estimate: 30, expires_at_ms: T0 + 900 },
      { id: 'r-a', created_at_ms: T0 + 5, estimate: 10, expires_at_ms: T0 + 700 },
      { id: 'r-b', created_at_ms: T0 + 5, estimate: 30, expires_at_ms: T0 + 800, status: 'COMMITTED' },
      { id: 'r-e', created_at_ms: T0 + 1, estimate: 2n ** 53n + 1n, expires_at_ms: T0 + 600, status: 'RELEASED' },
      { id: 'r-d', created_at_ms: T0 + 9, estimate: 10, expires_at_ms: T0 + 500 },
    ]);
    const ids = async (qs: string) => {
      const r = await list({ key }, qs);
      expect(r.status).toBe(200);
      return r.body.reservations.map((x: any) => x.reservation_id);
    };
    return { t, key, ids };
  }

  it('default is created_at_ms desc with ties by reservation_id ascending; asc likewise', async () => {
    const { ids } = await tied();
    expect(await ids('')).toEqual(['r-d', 'r-a', 'r-b', 'r-c', 'r-e']);
    expect(await ids('sort_by=created_at_ms&sort_dir=asc')).toEqual(['r-e', 'r-a', 'r-b', 'r-c', 'r-d']);
  });

  it('reserved, status, expires_at_ms, reservation_id sorts (ties by id asc; exact int64 order)', async () => {
    const { ids } = await tied();
    expect(await ids('sort_by=reserved&sort_dir=asc')).toEqual(['r-a', 'r-d', 'r-b', 'r-c', 'r-e']);
    expect(await ids('sort_by=reserved')).toEqual(['r-e', 'r-b', 'r-c', 'r-a', 'r-d']);
    expect(await ids('sort_by=status&sort_dir=asc')).toEqual(['r-a', 'r-c', 'r-d', 'r-b', 'r-e']);
    expect(await ids('sort_by=expires_at_ms&sort_dir=asc')).toEqual(['r-d', 'r-e', 'r-a', 'r-b', 'r-c']);
    expect(await ids('sort_by=reservation_id&sort_dir=desc')).toEqual(['r-e', 'r-d', 'r-c', 'r-b', 'r-a']);
  });

  it('every sort visits every row exactly once in order at limit=2 (static set)', async () => {
    const { key, ids } = await tied();
    for (const qs of ['sort_dir=desc', 'sort_dir=asc', 'sort_by=reserved', 'sort_by=status&sort_dir=asc', 'sort_by=tenant', 'sort_by=scope_path']) {
      const full = await ids(qs);
      expect(full).toHaveLength(5);
      expect(await walk(key, `${qs}&limit=2`)).toEqual(full);
    }
  });

  it('cursor is bound to filters, windows and sort — but not to include', async () => {
    const { key } = await tied();
    const first = await list({ key }, 'limit=2&status=ACTIVE');
    const cur = first.body.next_cursor;
    expect(cur).toBeDefined();
    for (const qs of ['limit=2', 'limit=2&status=COMMITTED', `limit=2&status=ACTIVE&from=${iso(T0)}`,
      'limit=2&status=ACTIVE&sort_dir=asc', 'limit=2&status=ACTIVE&sort_by=reserved', 'limit=2&status=ACTIVE&workspace=x']) {
      const r = await list({ key }, `${qs}&cursor=${cur}`);
      expect([qs, r.status, r.body.error]).toEqual([qs, 400, 'INVALID_REQUEST']);
    }
    const ok = await list({ key }, `limit=2&status=ACTIVE&include=metadata&cursor=${cur}`);
    expect(ok.status).toBe(200);
    // blank window values are the same as absent for the binding too
    const blank = await list({ key }, `limit=2&status=ACTIVE&from=&cursor=${cur}`);
    expect(blank.status).toBe(200);
    // corrupted token
    const edited = cur.slice(0, -2) + (cur.endsWith('A') ? 'BB' : 'AA');
    const r = await list({ key }, `limit=2&status=ACTIVE&cursor=${edited}`);
    expect([r.status, r.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('stays duplicate-free and complete while reservations are inserted between pages', async () => {
    for (const sort of ['sort_dir=desc', 'sort_dir=asc', 'sort_by=reservation_id&sort_dir=asc']) {
      const { t, key } = await tenant();
      const base: ReservationSeed[] = [];
      for (let i = 0; i < 20; i++) base.push({ id: `base-${String(i).padStart(2, '0')}`, created_at_ms: T0 + (i % 7) });
      await seed(t, base);
      let k = 0;
      const seen = await walk(key, `${sort}&limit=3`, async () => {
        // new rows on both sides of the cursor, including ties with existing sort values
        await seed(t, [
          { id: `new-${k}-lo`, created_at_ms: T0 - 1 - k },
          { id: `new-${k}-hi`, created_at_ms: T0 + 100 + k },
          { id: `new-${k}-tie`, created_at_ms: T0 + 3 },
        ]);
        k++;
      });
      expect(new Set(seen).size).toBe(seen.length);
      for (const b of base) expect(seen).toContain(b.id);
    }
  });

  it(`scan bound: created_at path resumes past ${MAX_ROWS_HYDRATED} examined rows; other sorts answer 400`, async () => {
    const { t, key } = await tenant();
    const pipe = srv.redis.client.pipeline();
    // two matching rows at the oldest end, then MAX+100 non-matching newer rows
    await seed(t, [
      { id: 'old-1', created_at_ms: T0, status: 'COMMITTED' },
      { id: 'old-2', created_at_ms: T0 + 1, status: 'COMMITTED' },
    ]);
    const { keys } = await import('../src/store/keys');
    for (let i = 0; i < MAX_ROWS_HYDRATED + 100; i++) {
      const id = `bulk-${i}`;
      pipe.hset(keys.reservation(t, id), {
        reservation_id: id, tenant: t, status: 'ACTIVE', subject: `{"tenant":"${t}"}`, action: '{"kind":"k","name":"n"}',
        unit: U, estimate: '1', scope_path: `tenant:${t}`, affected_scopes: `["tenant:${t}"]`,
        created_at_ms: String(T0 + 10 + i), expires_at_ms: String(T0 + 100_000),
      });
      pipe.zadd(keys.reservationIndex(t), T0 + 10 + i, id);
    }
    await pipe.exec();
    const p1 = await list({ key }, 'status=COMMITTED&limit=5');
    expect(p1.status).toBe(200);
    expect(p1.body.reservations).toEqual([]);
    expect(p1.body.has_more).toBe(true);
    const p2 = await list({ key }, `status=COMMITTED&limit=5&cursor=${p1.body.next_cursor}`);
    expect(p2.body.reservations.map((x: any) => x.reservation_id)).toEqual(['old-2', 'old-1']);
    expect(p2.body.has_more).toBe(false);
    const sorted = await list({ key }, 'sort_by=status');
    expect([sorted.status, sorted.body.error]).toEqual([400, 'INVALID_REQUEST']);
    // narrowing the created window brings the candidate set under the bound
    const narrow = await list({ key }, `sort_by=status&to=${iso(T0 + 20)}`);
    expect(narrow.status).toBe(200);
    expect(narrow.body.reservations).toHaveLength(13);
  });
});
