// v0.1.26 action-quota counter endpoints (listActionQuotaCounters, resetActionQuotaCounter)
// on both planes, and the overview's quota_health (docs/decisions.md DG20, DG21).
// Counters are seeded directly in Redis following the storage contract of quota_common.lua
// (hash fields, key TTL, index zset scored by the key's expiry).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { startTestServer, call, ADMIN_KEY, type TestServer } from './helpers/server';
import { putTenant } from './helpers/fixtures';
import { expectValidEvent, storedEvents } from './helpers/events';
import { keys } from '../src/store/keys';

let s: TestServer;
let off: TestServer;
beforeAll(async () => {
  [s, off] = await Promise.all([startTestServer({ CYCLES_FEATURES: 'v0.1.26' }), startTestServer()]);
});
afterAll(async () => { await Promise.all([s?.stop(), off?.stop()]); });

const PATH = '/v1/admin/action-quota-counters';
const RESET = `${PATH}/reset`;
const CLEANUP_MS: Record<string, number> = {
  per_minute_tumbling: 120_000, per_hour_tumbling: 3_660_000, per_day_tumbling: 90_000_000, per_tenant_per_day: 90_000_000,
};

interface Seed {
  tenant: string;
  scope: string;
  kind?: string;
  riskClass?: string;
  window: string;
  windowKey: string;
  used: number | bigint;
  limit: number | bigint;
  policyId?: string;
  ttlMs?: number;
  lastMs?: number;
  thresholds?: string[];
  /** index score override (ms); a past value makes the entry expired */
  indexScore?: number;
}

/** Writes one counter the way reserve.lua does (quota_common.lua contract); returns its key. */
async function seed(redis: Redis, c: Seed): Promise<string> {
  const kindPart = c.riskClass ? `__risk__:${c.riskClass}` : c.kind!;
  const key = keys.quotaCounter(c.tenant, c.scope, kindPart, c.window, c.windowKey);
  const now = Date.now();
  const h: Record<string, string> = {
    used: String(c.used), limit: String(c.limit), policy_id: c.policyId ?? 'pol_q', scope: c.scope,
    action_kind: c.riskClass ? '__risk__' : c.kind!, window: c.window, window_key: c.windowKey,
    created_ms: String(now - 5000), last_ms: String(c.lastMs ?? now - 1000),
  };
  if (c.riskClass) h.risk_class = c.riskClass;
  const ttl = c.window === 'per_run' ? (c.ttlMs ?? 86_400_000) : CLEANUP_MS[c.window];
  if (c.window === 'per_run') h.ttl_ms = String(ttl);
  for (const pct of c.thresholds ?? []) h[`th:${pct}`] = '1';
  await redis.multi().del(key).hset(key, h).pexpire(key, ttl)
    .zadd(keys.quotaIndex(c.tenant), String(c.indexScore ?? now + ttl), key).exec();
  return key;
}

const list = async (url: string, query: string, auth: { key?: string; adminKey?: string }) =>
  call(url, 'GET', `${PATH}${query ? `?${query}` : ''}`, auth);
const ok = (r: { status: number; text: string; body: any }) => { expect(r.status, r.text).toBe(200); return r.body; };
const counterIds = (rows: any[]) => rows.map((c) => `${c.scope}|${c.action_kind}|${c.risk_class ?? ''}|${c.window}|${c.window_key}`);
const correlation = (...parts: string[]) =>
  `corr_${createHash('sha1').update(['quota', ...parts].join('\n')).digest('hex')}`;

async function eventually<T>(fn: () => Promise<T | undefined>, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('listActionQuotaCounters', () => {
  const A = 'qa-list';
  const B = 'qa-other';
  beforeAll(async () => {
    const r = s.redis.client;
    await seed(r, { tenant: A, scope: `tenant:${A}`, kind: 'llm.completion', window: 'per_hour_tumbling', windowKey: '2026-04-09T14', used: 142, limit: 200, policyId: 'pol_eng', lastMs: Date.parse('2026-04-09T14:32:17Z') });
    await seed(r, { tenant: A, scope: `tenant:${A}/agent:bot`, kind: 'message.email.send', window: 'per_run', windowKey: 'run-1', used: 2, limit: 2 });
    await seed(r, { tenant: A, scope: `tenant:${A}/agent:bot`, kind: 'message.email.send', window: 'per_run', windowKey: 'run-2', used: 1, limit: 2 });
    await seed(r, { tenant: A, scope: `tenant:${A}/agent:bot`, riskClass: 'external_side_effect', window: 'per_day_tumbling', windowKey: '2026-04-09', used: 7, limit: 10 });
    await seed(r, { tenant: A, scope: `tenant:${A}/agent:other`, kind: 'http.get', window: 'per_minute_tumbling', windowKey: '2026-04-09T14:32', used: 0, limit: 5 });
    await seed(r, { tenant: A, scope: `tenant:${A}`, kind: 'payment.charge', window: 'per_tenant_per_day', windowKey: '2026-12-31', used: 2n ** 60n, limit: 2n ** 62n });
    await seed(r, { tenant: B, scope: `tenant:${B}`, kind: 'llm.completion', window: 'per_hour_tumbling', windowKey: '2026-04-09T14', used: 1, limit: 3 });
  });

  it('the admin key must name the tenant: 400 without tenant_id, on both planes', async () => {
    for (const url of [s.runtimeUrl, s.adminUrl]) {
      const r = await list(url, '', { adminKey: ADMIN_KEY });
      expect([r.status, r.body.error], url).toEqual([400, 'INVALID_REQUEST']);
      expect(r.body.message).toMatch(/tenant_id/);
      const blank = await list(url, 'tenant_id=', { adminKey: ADMIN_KEY });
      expect(blank.status, url).toBe(400);
    }
  });

  it('renders ActionQuotaState: remaining, expires_at at the end of the bucket, risk counters, int64', async () => {
    const body = ok(await list(s.adminUrl, `tenant_id=${A}`, { adminKey: ADMIN_KEY }));
    expect(body.has_more).toBe(false);
    expect(body.next_cursor).toBeUndefined();
    const byKind = Object.fromEntries(body.counters.map((c: any) => [`${c.action_kind}:${c.window_key}`, c]));
    expect(byKind['llm.completion:2026-04-09T14']).toEqual({
      action_kind: 'llm.completion', scope: `tenant:${A}`, scope_path: `tenant:${A}`, window: 'per_hour_tumbling',
      window_key: '2026-04-09T14', used: 142, limit: 200, remaining: 58, policy_id: 'pol_eng',
      expires_at: '2026-04-09T15:00:00.000Z', last_incremented_at: '2026-04-09T14:32:17.000Z',
    });
    const risk = byKind['__risk__:2026-04-09'];
    expect([risk.risk_class, risk.expires_at, risk.remaining]).toEqual(['external_side_effect', '2026-04-10T00:00:00.000Z', 3]);
    const big = byKind['payment.charge:2026-12-31'];
    expect([big.used, big.limit, big.remaining, big.expires_at]).toEqual([2n ** 60n, 2n ** 62n, 2n ** 62n - 2n ** 60n, '2027-01-01T00:00:00.000Z']);
    // per_run: the key's expiry (the index score), about ttl_ms from now
    const run = byKind['message.email.send:run-1'];
    expect(run.remaining).toBe(0);
    expect(Math.abs(Date.parse(run.expires_at) - (Date.now() + 86_400_000))).toBeLessThan(60_000);
    expect(run.risk_class).toBeUndefined();
    // include_zero defaults to false: the http.get counter (used 0) is not listed
    expect(body.counters.some((c: any) => c.action_kind === 'http.get')).toBe(false);
    // ordered by counter key
    const keysInOrder = body.counters.map((c: any) => keys.quotaCounter(A, c.scope, c.risk_class ? `__risk__:${c.risk_class}` : c.action_kind, c.window, c.window_key));
    expect(keysInOrder).toEqual([...keysInOrder].sort());
  });

  it('filters: scope prefix, action_kind (incl. __risk__), window, run_id, include_zero', async () => {
    const q = async (query: string) => ok(await list(s.adminUrl, `tenant_id=${A}&${query}`, { adminKey: ADMIN_KEY })).counters as any[];
    expect(counterIds(await q(`scope=tenant:${A}/agent:bot`)).sort()).toEqual([
      `tenant:${A}/agent:bot|__risk__|external_side_effect|per_day_tumbling|2026-04-09`,
      `tenant:${A}/agent:bot|message.email.send||per_run|run-1`,
      `tenant:${A}/agent:bot|message.email.send||per_run|run-2`,
    ]);
    expect((await q(`scope=tenant:${A}/agent:b`)).length).toBe(3); // a plain string prefix
    expect(await q(`scope=tenant:${A}/agent:other`)).toEqual([]);
    expect((await q(`scope=tenant:${A}/agent:other&include_zero=true`)).map((c) => c.used)).toEqual([0]);
    expect((await q('include_zero=true')).length).toBe(6);
    expect((await q('action_kind=__risk__')).map((c) => c.risk_class)).toEqual(['external_side_effect']);
    expect((await q('action_kind=message.email.send')).map((c) => c.window_key).sort()).toEqual(['run-1', 'run-2']);
    expect((await q('window=per_hour_tumbling')).map((c) => c.action_kind)).toEqual(['llm.completion']);
    expect((await q('run_id=run-2')).map((c) => [c.window, c.window_key, c.used])).toEqual([['per_run', 'run-2', 1]]);
    expect(await q('run_id=2026-04-09')).toEqual([]); // run_id selects per_run counters only
    expect(await q('action_kind=llm.completion&window=per_run')).toEqual([]);
  });

  it('a tenant key lists its own tenant only (tenant_id ignored), with X-Cycles-Tenant', async () => {
    const key = await s.tenantKey(A, ['action_quotas:read']);
    for (const url of [s.runtimeUrl, s.adminUrl]) {
      const r = await list(url, `tenant_id=${B}`, { key });
      const body = ok(r);
      expect(body.counters.length, url).toBe(5);
      expect(body.counters.every((c: any) => c.scope.startsWith(`tenant:${A}`))).toBe(true);
      expect(r.headers.get('x-cycles-tenant')).toBe(A);
      expect(r.headers.get('x-cycles-permission-deprecated')).toBeNull();
    }
    const other = ok(await list(s.runtimeUrl, '', { key: await s.tenantKey(B, ['action_quotas:read']) }));
    expect(counterIds(other.counters)).toEqual([`tenant:${B}|llm.completion||per_hour_tumbling|2026-04-09T14`]);
  });

  it('a key with a scope_filter sees only counters inside it', async () => {
    const key = await s.tenantKey(A, ['action_quotas:read'], ['agent:bot']);
    const body = ok(await list(s.runtimeUrl, '', { key }));
    expect(body.counters.map((c: any) => c.scope)).toEqual(Array(3).fill(`tenant:${A}/agent:bot`));
  });

  it('balances:read alone is accepted with X-Cycles-Permission-Deprecated; neither permission is 403', async () => {
    const legacy = await s.tenantKey(A, ['balances:read']);
    const weak = await s.tenantKey(A, ['reservations:create', 'budgets:read']);
    for (const [url, code] of [[s.runtimeUrl, 'FORBIDDEN'], [s.adminUrl, 'INSUFFICIENT_PERMISSIONS']] as const) {
      const r = await list(url, '', { key: legacy });
      expect(ok(r).counters.length).toBe(5);
      expect(r.headers.get('x-cycles-permission-deprecated'), url).toBe('balances:read; use action_quotas:read');
      const both = await list(url, '', { key: await s.tenantKey(A, ['balances:read', 'action_quotas:read']) });
      expect(both.headers.get('x-cycles-permission-deprecated'), url).toBeNull();
      const denied = await list(url, '', { key: weak });
      expect([denied.status, denied.body.error], url).toEqual([403, code]);
    }
    expect((await list(s.adminUrl, `tenant_id=${A}`, {})).status).toBe(401);
  });

  it('expired index entries are not listed and are pruned from the index', async () => {
    const T = 'qa-expired';
    const r = s.redis.client;
    const live = await seed(r, { tenant: T, scope: `tenant:${T}`, kind: 'http.get', window: 'per_hour_tumbling', windowKey: '2026-04-09T10', used: 1, limit: 5 });
    // an index entry whose key already expired (score in the past), with and without the hash
    const stale = await seed(r, { tenant: T, scope: `tenant:${T}`, kind: 'http.post', window: 'per_hour_tumbling', windowKey: '2026-04-09T09', used: 4, limit: 5, indexScore: Date.now() - 10_000 });
    await r.zadd(keys.quotaIndex(T), String(Date.now() - 1), keys.quotaCounter(T, `tenant:${T}`, 'http.put', 'per_run', 'gone'));
    const body = ok(await list(s.adminUrl, `tenant_id=${T}&include_zero=true`, { adminKey: ADMIN_KEY }));
    expect(body.counters.map((c: any) => c.action_kind)).toEqual(['http.get']);
    expect(await r.zrange(keys.quotaIndex(T), 0, -1)).toEqual([live]);
    expect(stale).not.toBe(live);
  });

  it('pages with an opaque cursor over more than `limit` counters: no duplicates, no gaps, filters bound', async () => {
    const T = 'qa-paging';
    const r = s.redis.client;
    const all: string[] = [];
    for (let i = 0; i < 23; i++) {
      const scope = `tenant:${T}/agent:a${String(i % 7).padStart(2, '0')}`;
      const used = i % 5 === 0 ? 0 : i; // some zero counters (skipped by default)
      await seed(r, { tenant: T, scope, kind: i % 2 ? 'http.get' : 'llm.completion', window: 'per_run', windowKey: `run-${i}`, used, limit: 50 });
      if (used > 0) all.push(`${scope}|${i % 2 ? 'http.get' : 'llm.completion'}||per_run|run-${i}`);
    }
    const walk = async (query: string, limit: number) => {
      const seen: any[] = [];
      let cursor: string | undefined;
      for (let n = 0; n < 50; n++) {
        const body = ok(await list(s.runtimeUrl, `tenant_id=${T}&limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`, { adminKey: ADMIN_KEY }));
        expect(body.counters.length).toBeLessThanOrEqual(limit);
        seen.push(...body.counters);
        if (!body.has_more) { expect(body.next_cursor).toBeUndefined(); return seen; }
        expect(typeof body.next_cursor).toBe('string');
        expect(body.next_cursor).toMatch(/^[A-Za-z0-9_-]+$/);
        cursor = body.next_cursor;
      }
      throw new Error('did not finish');
    };
    for (const limit of [1, 4, 5, 200]) {
      const ids = counterIds(await walk('', limit));
      expect(new Set(ids).size, `limit ${limit}`).toBe(ids.length);
      expect([...ids].sort(), `limit ${limit}`).toEqual([...all].sort());
    }
    const withZero = counterIds(await walk('&include_zero=true', 4));
    expect(withZero.length).toBe(23);
    const gets = counterIds(await walk('&action_kind=http.get', 3));
    expect(gets).toEqual(all.filter((id) => id.includes('|http.get|')).sort((a, b) => {
      // key order: scope, then kind, then window key
      const ka = keys.quotaCounter(T, a.split('|')[0], 'http.get', 'per_run', a.split('|')[4]);
      const kb = keys.quotaCounter(T, b.split('|')[0], 'http.get', 'per_run', b.split('|')[4]);
      return ka < kb ? -1 : 1;
    }));

    // a cursor is bound to its filters and tenant, and must be well-formed
    const first = ok(await list(s.adminUrl, `tenant_id=${T}&limit=2`, { adminKey: ADMIN_KEY }));
    for (const q of [`tenant_id=${T}&limit=2&action_kind=http.get&cursor=${first.next_cursor}`, `tenant_id=${A}&limit=2&cursor=${first.next_cursor}`,
      `tenant_id=${T}&cursor=not-a-cursor`, `tenant_id=${T}&cursor=${first.next_cursor.slice(0, -3)}xyz`]) {
      const bad = await list(s.adminUrl, q, { adminKey: ADMIN_KEY });
      expect([bad.status, bad.body.error], q).toEqual([400, 'INVALID_REQUEST']);
    }
    for (const q of ['limit=0', 'limit=201']) {
      expect((await list(s.adminUrl, `tenant_id=${T}&${q}`, { adminKey: ADMIN_KEY })).status, q).toBe(400);
    }
  });
});

describe('resetActionQuotaCounter', () => {
  const T = 'qa-reset';
  const scope = `tenant:${T}/agent:bot`;
  const hour = { tenant_id: T, scope, action_kind: 'message.email.send', window: 'per_hour_tumbling', window_key: '2026-04-09T14' };
  let hourKey: string;
  beforeAll(async () => {
    hourKey = await seed(s.redis.client, { tenant: T, scope, kind: hour.action_kind, window: hour.window, windowKey: hour.window_key, used: 9, limit: 10, policyId: 'pol_mail', thresholds: ['0.8', '0.9'] });
  });
  const reset = (url: string, body: unknown, auth: { key?: string; adminKey?: string } = { adminKey: ADMIN_KEY }) =>
    call(url, 'POST', RESET, { ...auth, body });

  it('is AdminKeyAuth only: a tenant key is 401 on both planes, nothing changes', async () => {
    const key = await s.tenantKey(T, ['action_quotas:read', 'admin:write', 'balances:read']);
    for (const url of [s.runtimeUrl, s.adminUrl]) {
      const r = await reset(url, hour, { key });
      expect([r.status, r.body.error], url).toEqual([401, 'UNAUTHORIZED']);
      expect((await reset(url, hour, {})).status).toBe(401);
    }
    expect(await s.redis.client.hget(hourKey, 'used')).toBe('9');
  });

  it('400 without tenant_id (missing_required_field: tenant_id) and for a risk_class that does not fit action_kind', async () => {
    const { tenant_id: _t, ...noTenant } = hour;
    for (const url of [s.runtimeUrl, s.adminUrl]) {
      const r = await reset(url, noTenant);
      expect([r.status, r.body.error], url).toEqual([400, 'INVALID_REQUEST']);
      expect(r.body.message).toContain('missing_required_field: tenant_id');
      const blank = await reset(url, { ...hour, tenant_id: '' });
      expect(blank.body.message).toContain('missing_required_field: tenant_id');
      const riskNoClass = await reset(url, { ...hour, action_kind: '__risk__' });
      expect([riskNoClass.status, riskNoClass.body.error], url).toEqual([400, 'INVALID_REQUEST']);
      expect(riskNoClass.body.message).toMatch(/risk_class/);
      const classOnKind = await reset(url, { ...hour, risk_class: 'side_effect' });
      expect([classOnKind.status, classOnKind.body.error], url).toEqual([400, 'INVALID_REQUEST']);
      expect((await reset(url, { ...hour, window: 'weekly' })).status).toBe(400);
    }
    expect(await s.redis.client.hget(hourKey, 'used')).toBe('9');
  });

  it('404 NOT_FOUND when no counter matches every key field', async () => {
    for (const body of [
      { ...hour, window_key: '2026-04-09T15' }, { ...hour, tenant_id: 'qa-nobody' }, { ...hour, action_kind: 'http.get' },
      { ...hour, scope: `tenant:${T}` }, { ...hour, window: 'per_day_tumbling' },
      { ...hour, action_kind: '__risk__', risk_class: 'external_side_effect' },
    ]) {
      const r = await reset(s.adminUrl, body);
      expect([r.status, r.body.error], JSON.stringify(body)).toEqual([404, 'NOT_FOUND']);
    }
    expect(await storedEvents(s.redis.client, T)).toEqual([]);
  });

  it('resets a calendar counter: used 0, TTL kept, threshold flags cleared, quota.counter_reset with the counter correlation', async () => {
    const r = s.redis.client;
    const pttlBefore = await r.pttl(hourKey);
    const res = await reset(s.adminUrl, { ...hour, reason: 'double counting after incident INC-7' });
    const body = ok(res);
    expect(body.previous_used).toBe(9);
    expect(body.counter).toMatchObject({ ...(({ tenant_id: _t, ...rest }) => rest)(hour), used: 0, limit: 10, remaining: 10, policy_id: 'pol_mail', expires_at: '2026-04-09T15:00:00.000Z' });
    expect(await r.hget(hourKey, 'used')).toBe('0');
    expect(await r.hmget(hourKey, 'th:0.8', 'th:0.9')).toEqual([null, null]);
    expect(await r.hget(hourKey, 'limit')).toBe('10');
    const pttl = await r.pttl(hourKey);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(pttlBefore);
    expect(pttlBefore - pttl).toBeLessThan(10_000);

    const events = (await storedEvents(r, T)).filter((e) => e.event_type === 'quota.counter_reset');
    expect(events).toHaveLength(1);
    const ev = events[0] as any;
    expectValidEvent(ev);
    const corr = correlation(T, scope, 'message.email.send', 'per_hour_tumbling', '2026-04-09T14');
    expect(ev.correlation_id).toBe(corr);
    expect(ev.tenant_id).toBe(T);
    expect(ev.scope).toBe(scope);
    expect(ev.actor).toEqual({ type: 'admin' });
    expect(ev.request_id).toBe(res.headers.get('x-request-id'));
    expect(ev.data).toEqual({
      tenant_id: T, scope, action_kind: 'message.email.send', window: 'per_hour_tumbling', window_key: '2026-04-09T14',
      previous_used: 9, limit: 10, actor_id: 'admin', reason: 'double counting after incident INC-7', policy_id: 'pol_mail',
    });

    // a second reset of the same counter: previous_used 0, the same correlation_id
    await r.hset(hourKey, 'used', '4');
    const again = ok(await reset(s.runtimeUrl, hour));
    expect(again.previous_used).toBe(4);
    const both = (await storedEvents(r, T)).filter((e) => e.event_type === 'quota.counter_reset') as any[];
    expect(both).toHaveLength(2);
    expectValidEvent(both[1]);
    expect(both[1].correlation_id).toBe(corr);
    expect(both[1].data.reason).toBeUndefined();
    expect(both[1].data.previous_used).toBe(4);
  });

  it('resets a per_run risk-class counter: TTL and index score refreshed, risk_class in the event and correlation', async () => {
    const r = s.redis.client;
    const key = await seed(r, { tenant: T, scope, riskClass: 'high_risk', window: 'per_run', windowKey: 'run:7', used: 3, limit: 3, ttlMs: 600_000, thresholds: ['0.5'] });
    await r.pexpire(key, 5_000);
    await r.zadd(keys.quotaIndex(T), String(Date.now() + 5_000), key);
    const body = ok(await reset(s.adminUrl, { tenant_id: T, scope, action_kind: '__risk__', risk_class: 'high_risk', window: 'per_run', window_key: 'run:7' }));
    expect(body.previous_used).toBe(3);
    expect(body.counter).toMatchObject({ action_kind: '__risk__', risk_class: 'high_risk', used: 0, remaining: 3, window_key: 'run:7' });
    expect(Math.abs(Date.parse(body.counter.expires_at) - (Date.now() + 600_000))).toBeLessThan(10_000);
    expect(await r.pttl(key)).toBeGreaterThan(590_000);
    expect(Number(await r.zscore(keys.quotaIndex(T), key))).toBeGreaterThan(Date.now() + 590_000);
    expect(await r.hget(key, 'th:0.5')).toBeNull();
    const ev = (await storedEvents(r, T)).filter((e) => e.event_type === 'quota.counter_reset').pop() as any;
    expectValidEvent(ev);
    expect(ev.data).toMatchObject({ action_kind: '__risk__', risk_class: 'high_risk', window: 'per_run', window_key: 'run:7', previous_used: 3, limit: 3 });
    expect(ev.correlation_id).toBe(correlation(T, scope, 'high_risk', 'per_run', 'run:7'));
    // the reset counter is still listed (used 0 only with include_zero)
    const listed = ok(await list(s.adminUrl, `tenant_id=${T}&action_kind=__risk__&include_zero=true`, { adminKey: ADMIN_KEY }));
    expect(listed.counters.map((c: any) => c.used)).toEqual([0]);
  });

  it('writes an audit row attributed to the tenant with actor_type admin', async () => {
    const rows = await eventually(async () => {
      const r = await call(s.adminUrl, 'GET', `/v1/admin/audit/logs?tenant_id=${T}&operation=resetActionQuotaCounter&limit=100`, { adminKey: ADMIN_KEY });
      expect(r.status, r.text).toBe(200);
      const ok200 = (r.body.logs as any[]).filter((l) => l.status === 200);
      return ok200.length >= 3 ? r.body.logs as any[] : undefined;
    });
    const row = rows.find((l) => l.status === 200 && l.metadata?.reason)!;
    expect(row.resource_type).toBe('quota_counter');
    expect(row.metadata).toMatchObject({ actor_type: 'admin', window: 'per_hour_tumbling', previous_used: '9', reason: 'double counting after incident INC-7' });
    // the runtime-plane reset is audited too
    expect(rows.filter((l) => l.status === 200 && l.metadata?.path === RESET).length).toBeGreaterThanOrEqual(3);
    expect(rows.some((l) => l.status === 404)).toBe(true);
  });
});

describe('flag off', () => {
  it('both routes are 404 on both planes', async () => {
    for (const url of [off.runtimeUrl, off.adminUrl]) {
      const l = await call(url, 'GET', `${PATH}?tenant_id=qa-list`, { adminKey: ADMIN_KEY });
      expect([l.status, l.body.error], url).toEqual([404, 'NOT_FOUND']);
      const r = await call(url, 'POST', RESET, { adminKey: ADMIN_KEY, body: { tenant_id: 'qa-list', scope: 'tenant:qa-list', action_kind: 'http.get', window: 'per_run', window_key: 'r' } });
      expect([r.status, r.body.error], url).toEqual([404, 'NOT_FOUND']);
    }
  });

  it('the overview has no quota_health', async () => {
    const o = ok(await call(off.adminUrl, 'GET', '/v1/admin/overview', { adminKey: ADMIN_KEY }));
    expect(o).not.toHaveProperty('quota_health');
  });
});

describe('getAdminOverview quota_health', () => {
  it('counts live counters at >= 80% and at the limit; top offenders by utilization then scope', async () => {
    const r = s.redis.client;
    const empty = ok(await call(s.adminUrl, 'GET', '/v1/admin/overview', { adminKey: ADMIN_KEY }));
    expect(empty.quota_health).toEqual({ counters_above_80pct: 0, counters_at_limit: 0, top_offenders: [] });

    const T = 'qa-health';
    const U = 'qa-health-2';
    await putTenant(r, T);
    await putTenant(r, U);
    const mk = (tenant: string, sub: string, kind: string, used: number, limit: number, extra: Partial<Seed> = {}) =>
      seed(r, { tenant, scope: `tenant:${tenant}/agent:${sub}`, kind, window: 'per_hour_tumbling', windowKey: '2026-04-09T14', used, limit, ...extra });
    await mk(T, 'a', 'http.get', 8, 10); // 80%: above
    await mk(T, 'b', 'http.get', 10, 10); // at limit
    await mk(T, 'c', 'http.get', 7, 10); // 70%
    await mk(T, 'd', 'http.get', 0, 10); // zero: never an offender
    await mk(T, 'e', 'http.get', 10, 10, { indexScore: Date.now() - 1000 }); // expired: not counted
    await mk(U, 'a', 'llm.completion', 3, 3); // at limit
    await seed(r, { tenant: U, scope: `tenant:${U}`, riskClass: 'high_risk', window: 'per_run', windowKey: 'r1', used: 799, limit: 1000 }); // 79.9%
    for (let i = 0; i < 12; i++) await mk(U, `z${String(i).padStart(2, '0')}`, 'http.post', 1, 100);

    const o = ok(await call(s.adminUrl, 'GET', '/v1/admin/overview', { adminKey: ADMIN_KEY }));
    const qh = o.quota_health;
    expect(qh.counters_above_80pct).toBe(3);
    expect(qh.counters_at_limit).toBe(2);
    expect(qh.top_offenders).toHaveLength(10);
    expect(qh.top_offenders.slice(0, 5)).toEqual([
      // equal utilization: by scope ('-' sorts before '/')
      { scope: `tenant:${U}/agent:a`, action_kind: 'llm.completion', window: 'per_hour_tumbling', used: 3, limit: 3, utilization_pct: 1 },
      { scope: `tenant:${T}/agent:b`, action_kind: 'http.get', window: 'per_hour_tumbling', used: 10, limit: 10, utilization_pct: 1 },
      { scope: `tenant:${T}/agent:a`, action_kind: 'http.get', window: 'per_hour_tumbling', used: 8, limit: 10, utilization_pct: 0.8 },
      { scope: `tenant:${U}`, action_kind: '__risk__', window: 'per_run', used: 799, limit: 1000, utilization_pct: 0.799 },
      { scope: `tenant:${T}/agent:c`, action_kind: 'http.get', window: 'per_hour_tumbling', used: 7, limit: 10, utilization_pct: 0.7 },
    ]);
    expect(qh.top_offenders.slice(5).map((t: any) => t.scope)).toEqual([0, 1, 2, 3, 4].map((i) => `tenant:${U}/agent:z0${i}`));
  });
});
