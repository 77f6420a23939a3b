// listEvents / getEvent / listTenantEvents over real HTTP on a real Redis (responses are
// validated against the spec by the test server): every filter AND-combined, both sort
// directions, keyset paging stable under concurrent writes, the cross-tenant index, the
// scan bound, tenant isolation and the tenant-visible categories.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestServer, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { expectValidEvent } from './helpers/events';
import { appendEvent, type EventCtx } from '../src/events/outbox';
import { keys } from '../src/store/keys';
import { EVENTS_SCAN_MAX } from '../src/events/query';
import { comparePos, posOf } from '../src/events/model';

let s: TestServer;
let n = 0;
const tid = (p = 'ev') => `${p}-${process.pid}-${++n}`;
const admin = (path: string) => call(s.adminUrl, 'GET', path, { adminKey: s.adminKey });
const asKey = (key: string, path: string) => call(s.adminUrl, 'GET', path, { key });
const qs = (o: Record<string, string | number | undefined>) =>
  Object.entries(o).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&');
const trace = (c: string) => c.repeat(32);
const actx = (o: Partial<EventCtx> = {}): EventCtx => ({ trace_id: trace('a'), request_id: 'r-0', actor_json: '{"type":"admin"}', ...o });
const evId = (t: string, sid: string) => `evt_${sid.replace('-', '_')}_${t}`;

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out; last: ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
/** Waits until the relay has indexed these events (cross-tenant and id-filter queries). */
async function indexed(ids: string[]): Promise<void> {
  await until(() => s.redis.client.zmscore(keys.eventIndex(), ...ids), (v) => v.every((x) => x !== null));
}

/** Follows next_cursor to the end; every page validated. */
async function all(path: (cursor?: string) => string, key?: string): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const r = key ? await asKey(key, path(cursor)) : await admin(path(cursor));
    expect(r.status, r.text).toBe(200);
    for (const e of r.body.events) expectValidEvent(e);
    out.push(...r.body.events);
    if (!r.body.has_more) { expect(r.body.next_cursor).toBeUndefined(); return out; }
    expect(typeof r.body.next_cursor).toBe('string');
    cursor = r.body.next_cursor;
  }
  throw new Error('paging did not end');
}

beforeAll(async () => { s = await startTestServer(); });
afterAll(async () => { await s?.stop(); });

describe('getEvent', () => {
  it('returns the record listEvents returns; unknown / malformed ids are 404 EVENT_NOT_FOUND', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const sid = await appendEvent(s.redis.client, t, 'tenant.updated', { tenant_id: t, previous_status: 'ACTIVE', new_status: 'ACTIVE', changed_fields: ['name'] }, actx());
    const one = await admin(`/v1/admin/events/${evId(t, sid)}`);
    expect(one.status, one.text).toBe(200);
    expectValidEvent(one.body);
    const list = await admin(`/v1/admin/events?tenant_id=${t}`);
    expect(list.body.events).toEqual([one.body]);
    for (const bad of [evId(t, '1-0'), `evt_${sid.replace('-', '_')}_nobody`, 'evt_1', 'nope', `evt_0${sid.replace('-', '_')}_${t}`]) {
      const r = await admin(`/v1/admin/events/${encodeURIComponent(bad)}`);
      expect(r.status, bad).toBe(404);
      expect(r.body.error).toBe('EVENT_NOT_FOUND');
    }
  });

  it('needs the admin key', async () => {
    const t = tid();
    const key = await s.tenantKey(t, ['events:read']);
    const r = await asKey(key, '/v1/admin/events/evt_1_0_x');
    expect([401, 403]).toContain(r.status);
  });
});

describe('listEvents', () => {
  it('tenant stream: newest first by default, asc is the exact reverse, paging visits each event once', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const p = s.redis.client.pipeline();
    for (let i = 0; i < 57; i++) appendEvent(p, t, 'budget.funded', { scope: `tenant:${t}`, unit: 'TOKENS', operation: 'CREDIT' }, actx());
    const sids = ((await p.exec()) ?? []).map(([, id]) => String(id));
    const ids = sids.map((x) => evId(t, x));
    const desc = await all((c) => `/v1/admin/events?${qs({ tenant_id: t, limit: 10, cursor: c })}`);
    expect(desc.map((e) => e.event_id)).toEqual([...ids].reverse());
    const asc = await all((c) => `/v1/admin/events?${qs({ tenant_id: t, limit: 7, sort_by: 'timestamp', sort_dir: 'asc', cursor: c })}`);
    expect(asc.map((e) => e.event_id)).toEqual(ids);
    const first = await admin(`/v1/admin/events?tenant_id=${t}`);
    expect(first.body.events).toHaveLength(50); // default limit
  });

  it('keyset paging is stable while new events arrive between pages', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const before: string[] = [];
    for (let i = 0; i < 30; i++) before.push(evId(t, await appendEvent(s.redis.client, t, 'tenant.updated', { tenant_id: t }, actx())));
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await admin(`/v1/admin/events?${qs({ tenant_id: t, limit: 4, cursor })}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.events.map((e: any) => e.event_id));
      // concurrent writes: newer events land in front of the walk
      await appendEvent(s.redis.client, t, 'tenant.updated', { tenant_id: t }, actx());
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...before].reverse());
  });

  it('without tenant_id: every tenant through the global index; __system__ events too', async () => {
    const ts = [tid(), tid(), tid()];
    const ids: string[] = [];
    const marker = `xt-${process.pid}-${n}`;
    for (let i = 0; i < 12; i++) {
      const t = ts[i % 3];
      ids.push(evId(t, await appendEvent(s.redis.client, t, 'tenant.updated', { tenant_id: t }, actx({ correlation_id: `${marker}:${i}` }))));
    }
    ids.push(evId('__system__', await appendEvent(s.redis.client, '__system__', 'system.high_latency',
      { component: 'store', message: 'slow', severity: 'warning' }, { actor_json: '{"type":"system"}', correlation_id: `${marker}:sys` })));
    await indexed(ids);
    // across tenants: by time; one millisecond's events by (seq, tenant) — no cross-tenant order is promised
    const ordered = [...ids].sort((a, b) => comparePos(posOf(a)!, posOf(b)!));
    const got = await all((c) => `/v1/admin/events?${qs({ search: marker, limit: 5, cursor: c })}`);
    expect(got.map((e) => e.event_id)).toEqual([...ordered].reverse());
    const asc = await all((c) => `/v1/admin/events?${qs({ search: marker, limit: 3, sort_dir: 'asc', sort_by: 'timestamp', cursor: c })}`);
    expect(asc.map((e) => e.event_id)).toEqual(ordered);
    const sys = await admin(`/v1/admin/events?${qs({ tenant_id: '__system__', category: 'system', search: marker })}`);
    expect(sys.body.events.map((e: any) => e.event_id)).toEqual([ids[12]]);
  });

  it('global index: 450 events in one millisecond page in (seq, tenant) order, both directions', async () => {
    const ta = tid(), tb = tid();
    const ms = Date.now() - 5000;
    const marker = `same-ms-${process.pid}-${n}`;
    const ids: string[] = [];
    const p = s.redis.client.pipeline();
    for (let i = 0; i < 225; i++) {
      for (const t of [ta, tb]) {
        p.xadd(keys.outbox(t), `${ms}-${i}`, 'type', 'tenant.updated', 'data', '{}', 'ts_ms', String(ms),
          'trace_id', '', 'request_id', '', 'actor', '{"type":"system"}', 'correlation_id', `${marker}-${i}`);
        ids.push(evId(t, `${ms}-${i}`));
      }
    }
    for (const [err] of (await p.exec()) ?? []) expect(err).toBeNull();
    await indexed(ids);
    const ordered = [...ids].sort((a, b) => comparePos(posOf(a)!, posOf(b)!));
    expect(ordered[2]).toBe(evId(ta, `${ms}-1`)); // seq 1 before seq 10 (numeric, not lexicographic)
    const desc = await all((c) => `/v1/admin/events?${qs({ search: marker, limit: 100, cursor: c })}`);
    expect(desc.map((e) => e.event_id)).toEqual([...ordered].reverse());
    const asc = await all((c) => `/v1/admin/events?${qs({ search: marker, limit: 100, sort_dir: 'asc', sort_by: 'timestamp', cursor: c })}`);
    expect(asc.map((e) => e.event_id)).toEqual(ordered);
  });

  it('every filter, AND-combined (each alone narrows; a contradiction gives nothing)', async () => {
    const t = tid();
    const other = tid();
    await putTenant(s.redis.client, t);
    const rid = `req-${t}`;
    const w = async (tenant: string, type: string, data: object, o: Partial<EventCtx>) => evId(tenant, await appendEvent(s.redis.client, tenant, type, data, actx(o)));
    const e1 = await w(t, 'budget.funded', { scope: `tenant:${t}/agent:x`, unit: 'TOKENS' }, { correlation_id: 'fund:1', request_id: rid, trace_id: trace('1') });
    const e2 = await w(t, 'budget.funded', { scope: `tenant:${t}/agent:xy`, unit: 'TOKENS' }, { correlation_id: 'fund:2', request_id: rid, trace_id: trace('2') });
    const e3 = await w(t, 'reservation.denied', { scope: `tenant:${t}/agent:x/toolset:web`, unit: 'TOKENS', reason_code: 'BUDGET_EXCEEDED' }, { request_id: 'req-other', trace_id: trace('1') });
    const e4 = await w(t, 'api_key.created', { key_id: 'k1', key_name: 'n' }, { request_id: rid, trace_id: trace('1'), correlation_id: 'Key:Upper' });
    const e5 = await w(other, 'budget.funded', { scope: `tenant:${other}/agent:x`, unit: 'TOKENS' }, { request_id: rid, trace_id: trace('1'), correlation_id: 'fund:1' });
    await indexed([e1, e2, e3, e4, e5]);
    const ids = async (q: Record<string, string | undefined>) => {
      const r = await admin(`/v1/admin/events?${qs(q)}`);
      expect(r.status, r.text).toBe(200);
      for (const e of r.body.events) expectValidEvent(e);
      return r.body.events.map((e: any) => e.event_id).sort();
    };
    const sorted = (...x: string[]) => [...x].sort();
    expect(await ids({ tenant_id: t })).toEqual(sorted(e1, e2, e3, e4));
    expect(await ids({ tenant_id: t, event_type: 'budget.funded' })).toEqual(sorted(e1, e2));
    expect(await ids({ tenant_id: t, category: 'reservation' })).toEqual([e3]);
    expect(await ids({ tenant_id: t, category: 'api_key' })).toEqual([e4]);
    // scope: path prefix — the scope itself or below it, never a sibling with a longer name
    expect(await ids({ scope: `tenant:${t}/agent:x` })).toEqual(sorted(e1, e3));
    expect(await ids({ scope: `TENANT:${t}/Agent:X` })).toEqual(sorted(e1, e3));
    expect(await ids({ scope: `tenant:${t}` })).toEqual(sorted(e1, e2, e3));
    expect(await ids({ correlation_id: 'fund:1' })).toEqual(sorted(e1, e5));
    expect(await ids({ correlation_id: 'fund:1', tenant_id: t })).toEqual([e1]);
    expect(await ids({ request_id: rid })).toEqual(sorted(e1, e2, e4, e5));
    expect(await ids({ request_id: rid, trace_id: trace('1') })).toEqual(sorted(e1, e4, e5));
    expect(await ids({ request_id: rid, trace_id: trace('1'), tenant_id: t, category: 'budget' })).toEqual([e1]);
    expect(await ids({ trace_id: trace('2') })).toEqual([e2]);
    // search: case-insensitive substring of correlation_id or scope
    expect(await ids({ tenant_id: t, search: 'key:up' })).toEqual([e4]);
    expect(await ids({ tenant_id: t, search: 'TOOLSET' })).toEqual([e3]);
    expect(await ids({ tenant_id: t, search: '   ' })).toEqual(sorted(e1, e2, e3, e4)); // blank = absent
    expect(await ids({ tenant_id: t, event_type: 'budget.funded', category: 'reservation' })).toEqual([]);
    expect(await ids({ tenant_id: other, scope: `tenant:${t}` })).toEqual([]);
    // time window: inclusive bounds at ms resolution
    const ms = (id: string) => Number(posOf(id)!.ms);
    const iso = (x: number) => new Date(x).toISOString();
    const mine = [e1, e2, e3, e4];
    const lo = ms(e2), hi = ms(e3);
    expect(await ids({ tenant_id: t, from: iso(lo), to: iso(hi) })).toEqual(sorted(...mine.filter((e) => ms(e) >= lo && ms(e) <= hi)));
    expect(await ids({ tenant_id: t, from: iso(hi + 1) })).toEqual(sorted(...mine.filter((e) => ms(e) > hi)));
    expect(await ids({ tenant_id: t, to: iso(lo - 1) })).toEqual(sorted(...mine.filter((e) => ms(e) < lo)));
    expect(await ids({ tenant_id: t, from: iso(hi + 1), to: iso(lo - 1) })).toEqual([]);
    expect(await ids({ request_id: rid, from: iso(ms(e4)) })).toEqual(sorted(...[e1, e2, e4, e5].filter((e) => ms(e) >= ms(e4))));
  });

  it('the dashboard budget timeline: GET /v1/admin/events?scope=tenant:<t>/agent:x&limit=20', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const scope = `tenant:${t}/agent:x`;
    for (let i = 0; i < 25; i++) await appendEvent(s.redis.client, t, 'budget.funded', { scope, unit: 'TOKENS', operation: 'CREDIT' }, actx());
    await appendEvent(s.redis.client, t, 'budget.funded', { scope: `tenant:${t}`, unit: 'TOKENS' }, actx());
    const r = await admin(`/v1/admin/events?scope=${encodeURIComponent(scope)}&limit=20`);
    expect(r.status, r.text).toBe(200);
    expect(r.body.events).toHaveLength(20);
    expect(r.body.has_more).toBe(true);
    for (const e of r.body.events) { expectValidEvent(e); expect(e.scope).toBe(scope); }
  });

  it('sort_by event_type / tenant_id / scope / category with both directions; cursor carries the sort', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const types = ['tenant.updated', 'budget.funded', 'reservation.denied', 'budget.created', 'tenant.suspended', 'budget.funded'];
    for (const ty of types) await appendEvent(s.redis.client, t, ty, { scope: `tenant:${t}` }, actx());
    const byType = await all((c) => `/v1/admin/events?${qs({ tenant_id: t, sort_by: 'event_type', sort_dir: 'asc', limit: 2, cursor: c })}`);
    expect(byType.map((e) => e.event_type)).toEqual([...types].sort());
    const byTypeDesc = await all((c) => `/v1/admin/events?${qs({ tenant_id: t, sort_by: 'event_type', limit: 4, cursor: c })}`);
    expect(byTypeDesc.map((e) => e.event_type)).toEqual([...types].sort().reverse());
    const byCat = await all((c) => `/v1/admin/events?${qs({ tenant_id: t, sort_by: 'category', sort_dir: 'asc', limit: 5, cursor: c })}`);
    expect(byCat.map((e) => e.category)).toEqual(types.map((x) => x.split('.')[0]).sort());
    // a cursor minted for one sort is refused under another, and for other filters
    const p1 = await admin(`/v1/admin/events?${qs({ tenant_id: t, sort_by: 'event_type', limit: 2 })}`);
    expect((await admin(`/v1/admin/events?${qs({ tenant_id: t, sort_by: 'scope', limit: 2, cursor: p1.body.next_cursor })}`)).status).toBe(400);
    expect((await admin(`/v1/admin/events?${qs({ tenant_id: t, sort_by: 'event_type', category: 'budget', limit: 2, cursor: p1.body.next_cursor })}`)).status).toBe(400);
    const bad = await admin(`/v1/admin/events?${qs({ tenant_id: t, cursor: 'garbage!' })}`);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('INVALID_REQUEST');
    expect((await admin(`/v1/admin/events?sort_by=size`)).status).toBe(400);
    expect((await admin(`/v1/admin/events?limit=101`)).status).toBe(400);
    expect((await admin(`/v1/admin/events?search=${'x'.repeat(129)}`)).status).toBe(400);
    expect((await admin(`/v1/admin/events?trace_id=XYZ`)).status).toBe(400);
  });

  it('bounded work: a rare match behind many others is reached through short pages, never lost', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const rare1 = evId(t, await appendEvent(s.redis.client, t, 'reservation.denied', { scope: `tenant:${t}`, reason_code: 'BUDGET_FROZEN' }, actx()));
    const p = s.redis.client.pipeline();
    for (let i = 0; i < EVENTS_SCAN_MAX + 500; i++) appendEvent(p, t, 'budget.funded', { scope: `tenant:${t}` }, actx());
    await p.exec();
    const rare2 = evId(t, await appendEvent(s.redis.client, t, 'reservation.denied', { scope: `tenant:${t}`, reason_code: 'BUDGET_FROZEN' }, actx()));
    const first = await admin(`/v1/admin/events?${qs({ tenant_id: t, event_type: 'reservation.denied', limit: 10 })}`);
    expect(first.body.events.map((e: any) => e.event_id)).toEqual([rare2]);
    expect(first.body.has_more).toBe(true); // budget spent before the stream ended
    const got = await all((c) => `/v1/admin/events?${qs({ tenant_id: t, event_type: 'reservation.denied', limit: 10, cursor: c })}`);
    expect(got.map((e) => e.event_id)).toEqual([rare2, rare1]);
  });
});

describe('listTenantEvents', () => {
  it('the caller\'s tenant only, only budget / reservation / tenant events (also unfiltered)', async () => {
    const t = tid();
    const other = tid();
    await putTenant(s.redis.client, t);
    const key = await s.tenantKey(t, ['events:read']);
    const w = async (tenant: string, type: string, data: object = {}) => evId(tenant, await appendEvent(s.redis.client, tenant, type, data, actx()));
    const visible = [await w(t, 'tenant.updated', { tenant_id: t }), await w(t, 'budget.funded', { scope: `tenant:${t}` }),
      await w(t, 'reservation.denied', { scope: `tenant:${t}/agent:a`, reason_code: 'BUDGET_EXCEEDED' })];
    await w(t, 'api_key.created', { key_id: 'k' });
    await w(t, 'policy.created', { policy_id: 'p' });
    await w(t, 'webhook.created', { subscription_id: 's', tenant_id: t });
    await w(other, 'budget.funded', { scope: `tenant:${other}` });
    const got = await all((c) => `/v1/events?${qs({ limit: 2, cursor: c })}`, key);
    expect(got.map((e) => e.event_id)).toEqual([...visible].reverse());
    for (const e of got) expect(e.tenant_id).toBe(t);
    const ok = await asKey(key, `/v1/events?category=budget`);
    expect(ok.body.events.map((e: any) => e.event_id)).toEqual([visible[1]]);
    expect((await asKey(key, `/v1/events?event_type=reservation.denied`)).body.events.map((e: any) => e.event_id)).toEqual([visible[2]]);
    expect((await asKey(key, `/v1/events?scope=${encodeURIComponent(`tenant:${t}/agent:a`)}`)).body.events.map((e: any) => e.event_id)).toEqual([visible[2]]);
    expect((await asKey(key, `/v1/events?scope=${encodeURIComponent(`tenant:${other}`)}`)).body.events).toEqual([]);
  });

  it('admin-only event_type / category filters are 400; no events:read is 403; the admin key is refused', async () => {
    const t = tid();
    const key = await s.tenantKey(t, ['events:read']);
    for (const q of ['event_type=api_key.created', 'event_type=system.webhook_test', 'category=policy', 'category=webhook']) {
      const r = await asKey(key, `/v1/events?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error).toBe('INVALID_REQUEST');
    }
    const noPerm = await s.tenantKey(t, ['budgets:read']);
    const r = await asKey(noPerm, '/v1/events');
    expect(r.status).toBe(403);
    const adm = await admin('/v1/events');
    expect([401, 403]).toContain(adm.status);
  });

  it('a key with a scope_filter sees only events inside it', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const key = await s.tenantKey(t, ['events:read'], [`tenant:${t}/workspace:eng`]);
    const inside = evId(t, await appendEvent(s.redis.client, t, 'budget.funded', { scope: `tenant:${t}/workspace:eng/agent:a` }, actx()));
    await appendEvent(s.redis.client, t, 'budget.funded', { scope: `tenant:${t}/workspace:ops` }, actx());
    await appendEvent(s.redis.client, t, 'tenant.updated', { tenant_id: t }, actx());
    const r = await asKey(key, '/v1/events');
    expect(r.body.events.map((e: any) => e.event_id)).toEqual([inside]);
  });
});
