// Security probes of the audit log (docs/decisions.md DP2): a live tenant key secret and
// the admin key, sent through every request field an audit row copies — plain, percent-
// encoded, double-encoded, partly encoded — never reach a stored row, index key or index
// member; request values cannot create audit index keys beyond a constant number; and
// rows stay findable by request id and by the exact stored tenant_id.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, call, ADMIN_KEY, type TestServer, type ApiResponse } from './helpers/server';
import { putBudget } from './helpers/fixtures';
import { keys } from '../src/store/keys';
import { makeScrubber, REDACTED } from '../src/admin/auditScrub';

let s: TestServer;
const T = `scrub-${process.pid}`;
let secret = '';

beforeAll(async () => {
  s = await startTestServer({ CYCLES_AUDIT_UNAUTH_RETENTION_DAYS: '1' });
  const t = await admin('POST', '/v1/admin/tenants', { tenant_id: T, name: 'scrub' });
  expect(t.status, t.text).toBe(201);
  const k = await admin('POST', '/v1/admin/api-keys', { tenant_id: T, name: 'probe' });
  expect(k.status, k.text).toBe(201);
  secret = k.body.key_secret;
  expect(secret).toMatch(/^cyc_live_[A-Za-z0-9_-]{20,}$/);
});
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  call(s.adminUrl, method, path, { adminKey: ADMIN_KEY, body, headers });

/** The audit row of one response, via the API (the response is validated against the
 *  spec by the test server; goes through the server's connection, so after the write). */
async function rowOf(r: ApiResponse): Promise<any> {
  const q = await admin('GET', `/v1/admin/audit/logs?request_id=${r.headers.get('x-request-id')}`);
  expect(q.status, q.text).toBe(200);
  expect(q.body.logs, r.headers.get('x-request-id')!).toHaveLength(1);
  return q.body.logs[0];
}

// Encodings of a secret as an operator might (mis)paste it into a URL.
const hex = (c: string) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
const pctAll = (x: string) => [...x].map(hex).join('');
const variants = (x: string) => ({
  plain: x,
  first: hex(x[0]) + x.slice(1), // `/v1/admin/tenants/%61dmin…`
  all: pctAll(x),
  upper: pctAll(x).toUpperCase(),
  double: pctAll(x).replace(/%/g, '%25'),
  tail: x.slice(0, 12) + pctAll(x.slice(12)), // the prefix would match as a literal
});

/** Independent of the server's decoder: undo %XX layers of ASCII until nothing changes. */
function decodeAll(x: string): string {
  for (let i = 0; i < 10; i++) {
    const next = x.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
    if (next === x) return x;
    x = next;
  }
  return x;
}

/** Every audit key name, string value and zset member in the private Redis. */
async function rawAuditStore(): Promise<string[]> {
  const out: string[] = [];
  for (const k of await s.redis.client.keys('*audit*')) {
    out.push(k);
    const type = await s.redis.client.type(k);
    if (type === 'string') out.push((await s.redis.client.get(k))!);
    else if (type === 'zset') out.push(...(await s.redis.client.zrange(k, 0, -1)));
    else throw new Error(`unexpected audit key type ${type} for ${k}`);
  }
  return out;
}

describe('no secret reaches the audit store through any request field', () => {
  it('query tenant_id / tenant / scope, body tenant_id and payload fields, path segments (plain and percent-encoded), user agent, forwarded headers, release reason', async () => {
    const probes: { label: string; r: ApiResponse }[] = [];
    const probe = async (label: string, r: Promise<ApiResponse>) => { probes.push({ label, r: await r }); };

    // A reservation the admin key can release with a reason.
    await putBudget(s.redis.client, T, `tenant:${T}`, 'TOKENS', { allocated: 1000 });
    const reservations: string[] = [];
    for (let i = 0; i < 2; i++) {
      const rv = await call(s.runtimeUrl, 'POST', '/v1/reservations', { key: secret, body: {
        idempotency_key: `rv-${i}`, subject: { tenant: T }, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: 'TOKENS', amount: 1 } } });
      expect(rv.status, rv.text).toBe(200);
      reservations.push(rv.body.reservation_id);
    }

    for (const [name, S] of [['tenant key', secret], ['admin key', ADMIN_KEY]] as const) {
      const v = variants(S);
      const q = encodeURIComponent;
      // query parameters that attribution / resource inference copy
      await probe(`${name} ?tenant_id`, admin('GET', `/v1/admin/budgets?tenant_id=${q(S)}`));
      await probe(`${name} ?tenant_id encoded`, admin('GET', `/v1/admin/budgets?tenant_id=${v.all}`));
      await probe(`${name} ?tenant`, admin('GET', `/v1/admin/budgets?tenant=${q(S)}`));
      await probe(`${name} ?scope (lookup)`, admin('GET', `/v1/admin/budgets/lookup?scope=${q(`tenant:${S}`)}&unit=TOKENS`));
      await probe(`${name} fund ?tenant_id&scope`, admin('POST', `/v1/admin/budgets/fund?tenant_id=${q(S)}&scope=${q(S)}&unit=TOKENS`,
        { operation: 'CREDIT', amount: { unit: 'TOKENS', amount: 1 }, idempotency_key: S }));
      // request bodies whose fields attribution / handlers copy
      await probe(`${name} createPolicy body`, admin('POST', '/v1/admin/policies', { tenant_id: S, name: S, scope_pattern: `tenant:${S}` }));
      await probe(`${name} createBudget body`, admin('POST', '/v1/admin/budgets', { tenant_id: S, scope: `tenant:${S}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1 } }));
      await probe(`${name} createApiKey body`, admin('POST', '/v1/admin/api-keys', { tenant_id: S, name: S }));
      await probe(`${name} validate body`, admin('POST', '/v1/auth/validate', { key_secret: S }));
      await probe(`${name} bulk budgets filter tenant`, admin('POST', '/v1/admin/budgets/bulk-action', {
        filter: { tenant_id: S }, action: 'CREDIT', amount: { unit: 'TOKENS', amount: 1 }, idempotency_key: `b1-${S}` }));
      await probe(`${name} bulk budgets (filter, idempotency_key in metadata)`, admin('POST', '/v1/admin/budgets/bulk-action', {
        filter: { tenant_id: T, search: S }, action: 'CREDIT', amount: { unit: 'TOKENS', amount: 1 }, idempotency_key: S, reason: S }));
      await probe(`${name} bulk tenants`, admin('POST', '/v1/admin/tenants/bulk-action', { filter: { search: S }, action: 'SUSPEND', idempotency_key: S }));
      // path segments: target_tenant_id, resource_id, metadata.path, operation fallback
      for (const [enc, seg] of Object.entries(v)) {
        await probe(`${name} getTenant path ${enc}`, admin('GET', `/v1/admin/tenants/${seg}`));
        await probe(`${name} updateTenant path ${enc}`, admin('PATCH', `/v1/admin/tenants/${seg}`, { name: 'x' }));
        await probe(`${name} updatePolicy path ${enc}`, admin('PATCH', `/v1/admin/policies/${seg}`, { priority: 1 }));
        await probe(`${name} revokeApiKey path ${enc}`, admin('DELETE', `/v1/admin/api-keys/${seg}`));
        await probe(`${name} tenant webhook path ${enc}`, admin('GET', `/v1/webhooks/${seg}`));
        await probe(`${name} config path ${enc}`, admin('GET', `/v1/admin/config/${seg}`));
        await probe(`${name} unknown route ${enc}`, admin('GET', `/v1/admin/${seg}`));
        await probe(`${name} unknown route, tenant key ${enc}`, call(s.adminUrl, 'GET', `/v1/admin/x/${seg}`, { key: secret }));
        await probe(`${name} unauthenticated ${enc}`, call(s.adminUrl, 'GET', `/v1/admin/tenants/${seg}`));
      }
      // headers: the user agent is recorded; the others must not become anything recorded
      for (const [enc, ua] of Object.entries(v)) {
        await probe(`${name} user-agent ${enc}`, admin('GET', '/v1/admin/overview', undefined, { 'User-Agent': `probe/1 ${ua} (x)` }));
      }
      await probe(`${name} forwarded headers`, admin('GET', '/v1/admin/overview', undefined, {
        'X-Forwarded-For': S, 'X-Real-IP': S, 'X-Cycles-Trace-Id': S, traceparent: S, 'X-Request-Id': S }));
      // wrong credentials carrying the other secret
      await probe(`${name} as the wrong credential`, call(s.adminUrl, 'GET', '/v1/admin/overview', { adminKey: S === ADMIN_KEY ? secret : `${S}x` }));
      // runtime: the admin-key release records the request's reason
      const rid = reservations.shift()!;
      await probe(`${name} release reason`, call(s.runtimeUrl, 'POST', `/v1/reservations/${rid}/release`, {
        adminKey: ADMIN_KEY, body: { idempotency_key: `rl-${rid}`, reason: `because ${S} and ${v.all}` } }));
    }
    expect(probes.length).toBeGreaterThan(100);

    // Every row is found by its request id (and the listing validates against the spec).
    const rows = new Map<string, any>();
    for (const p of probes) rows.set(p.label, await rowOf(p.r));

    // The stored fields really were exercised: they hold [REDACTED] where the secret was.
    for (const name of ['tenant key', 'admin key']) {
      expect(rows.get(`${name} ?tenant_id`).tenant_id).toBe(REDACTED);
      expect(rows.get(`${name} ?tenant`).tenant_id).toBe(REDACTED);
      expect(rows.get(`${name} createPolicy body`).tenant_id).toBe(REDACTED);
      expect(rows.get(`${name} ?scope (lookup)`).resource_id).toBe(`tenant:${REDACTED}`);
      for (const enc of Object.keys(variants('x'))) {
        const g = rows.get(`${name} getTenant path ${enc}`);
        expect(g.metadata.target_tenant_id, enc).toBe(REDACTED);
        expect(g.resource_id, enc).toBe(REDACTED);
        expect(g.metadata.path, enc).toBe(`/v1/admin/tenants/${REDACTED}`);
        expect(rows.get(`${name} unknown route ${enc}`).operation, enc).toBe(`GET:/v1/admin/${REDACTED}`);
        expect(rows.get(`${name} user-agent ${enc}`).user_agent, enc).toBe(`probe/1 ${REDACTED} (x)`);
      }
      expect(rows.get(`${name} release reason`).metadata.reason).toBe(`because ${REDACTED} and ${REDACTED}`);
    }
    for (const name of ['tenant key', 'admin key']) {
      expect(rows.get(`${name} bulk budgets filter tenant`).tenant_id).toBe(REDACTED);
      const bulk = rows.get(`${name} bulk budgets (filter, idempotency_key in metadata)`);
      expect(bulk.status).toBe(200);
      expect(bulk.tenant_id).toBe(T);
      expect(bulk.metadata.filter).toEqual({ tenant_id: T, search: REDACTED });
      expect(bulk.metadata.idempotency_key).toBe(REDACTED);
    }

    // The raw store: key names, entry JSON and index members, after undoing any encoding.
    const needles = [secret, secret.slice('cyc_live_'.length), secret.slice(-16), ADMIN_KEY, ADMIN_KEY.slice(-14)];
    const store = await rawAuditStore();
    expect(store.length).toBeGreaterThan(probes.length);
    for (const raw of store) {
      const text = decodeAll(raw);
      for (const n of needles) expect(text.includes(n), `${n} in ${raw.slice(0, 300)}`).toBe(false);
    }

    // Redacted rows share one index and are listed by their stored value.
    const red = await admin('GET', `/v1/admin/audit/logs?tenant_id=${encodeURIComponent(REDACTED)}&limit=100`);
    expect(red.status).toBe(200);
    expect(red.body.logs.length).toBeGreaterThan(4);
    expect(red.body.logs.every((r: any) => r.tenant_id === REDACTED)).toBe(true);
    expect(red.body.logs.map((r: any) => r.request_id)).toContain(rows.get('admin key ?tenant_id').request_id);
  });
});

describe('request values cannot create audit index keys', () => {
  it('N distinct junk tenant_id values add a constant number of index keys; each row is still listed by its value', async () => {
    const idxKeys = async () => new Set(await s.redis.client.keys('cycles:audit:idx:*'));
    // one trace for every request, so the trace index does not grow per request either
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await admin('GET', '/v1/admin/overview', undefined, { traceparent });
    const before = await idxKeys();
    const N = 60;
    const junk = Array.from({ length: N }, (_, i) => [
      `UPPER-${i}`, `under_score_${i}`, `sp ace ${i}`, `üñí-${i}`, String(i) /* under 3 characters */, `ab:${i}`,
      `${'a'.repeat(65)}-${i}`, // grammar characters, over the 64-character bound
      `${'long-'.repeat(150)}${i}`, // 750+ characters
      `__other__${i}`, `{t:${i}}`,
    ][i % 10]);
    const uniqueJunk = [...new Set(junk)];
    const made: { value: string; r: ApiResponse }[] = [];
    for (const value of uniqueJunk) {
      made.push({ value, r: await admin('GET', `/v1/admin/budgets?tenant_id=${encodeURIComponent(value)}`, undefined, { traceparent }) });
    }
    expect(uniqueJunk).toHaveLength(N);
    for (const { r } of made) expect(r.headers.get('x-cycles-trace-id')).toBe('0af7651916cd43dd8448eb211c80319c');
    // ordered after every write above (same server connection); same trace as the rest
    const last = await admin('GET', `/v1/admin/audit/logs?request_id=${made[made.length - 1].r.headers.get('x-request-id')}`, undefined, { traceparent });
    expect(last.body.logs).toHaveLength(1);
    // At most the one shared index is new (it may exist already from the probes above).
    const added = [...(await idxKeys())].filter((k) => !before.has(k));
    expect(added.filter((k) => k !== keys.auditTenantOther())).toEqual([]);
    expect(await s.redis.client.zcard(keys.auditTenantOther())).toBeGreaterThanOrEqual(N);

    // listAuditLogs?tenant_id=<junk> returns exactly that request's row.
    for (const { value, r } of made.filter((_, i) => i % 5 === 0 || made[i].value.length > 64)) {
      const l = await admin('GET', `/v1/admin/audit/logs?tenant_id=${encodeURIComponent(value)}`);
      expect(l.status, l.text).toBe(200);
      expect(l.body.logs.map((x: any) => x.request_id), value).toEqual([r.headers.get('x-request-id')]);
      expect(l.body.logs[0].tenant_id).toBe(value);
    }
    // ... also with a non-timestamp sort (the sort window reads the same shared index)
    const one = made.find((m) => m.value.startsWith('UPPER-'))!;
    const sorted = await admin('GET', `/v1/admin/audit/logs?tenant_id=${one.value}&sort_by=status`);
    expect(sorted.body.logs.map((x: any) => x.request_id)).toEqual([one.r.headers.get('x-request-id')]);
    // a grammar-valid tenant keeps its own index (and nothing else was put there)
    const valid = await admin('GET', `/v1/admin/budgets?tenant_id=${T}`, undefined, { traceparent });
    await rowOf(valid);
    expect(await s.redis.client.zscore(keys.auditTenantOther(), `log_${valid.headers.get('x-request-id')!.slice(4)}`)).toBeNull();
    expect(await s.redis.client.zcard(keys.auditByTenant(T))).toBeGreaterThan(0);
  });

  it('per-tenant, per-key, shared and trace index keys expire one retention after their newest row', async () => {
    const key = await s.tenantKey(T);
    const r = await call(s.adminUrl, 'GET', '/v1/admin/policies', { key });
    const row = await rowOf(r);
    const day = 86_400_000;
    const near = (ttl: number, ret: number) => { expect(ttl).toBeGreaterThan(ret - 60_000); expect(ttl).toBeLessThanOrEqual(ret); };
    near(await s.redis.client.pttl(keys.auditByTenant(T)), 400 * day);
    near(await s.redis.client.pttl(keys.auditByKey(row.key_id)), 400 * day);
    near(await s.redis.client.pttl(keys.auditByTrace(row.trace_id)), 400 * day);
    near(await s.redis.client.pttl(keys.auditTenantOther()), 400 * day);
    near(await s.redis.client.pttl(keys.auditByTenant('__admin__')), 400 * day);
    await call(s.adminUrl, 'GET', '/v1/admin/overview'); // __unauth__: its own tier (1 day here)
    await rowOf(await admin('GET', '/v1/admin/overview'));
    near(await s.redis.client.pttl(keys.auditByTenant('__unauth__')), day);
    expect(await s.redis.client.pttl(keys.auditAll())).toBe(-1); // one key, trimmed by time
  });
});

describe('an admin key shaped like a trace id (32 lowercase hex)', () => {
  it('sent as X-Cycles-Trace-Id or inside traceparent: the row has no trace_id and no trace index names the key', async () => {
    const hexKey = '0123456789abcdef0123456789abcdef'.split('').reverse().join('');
    const s2 = await startTestServer({ ADMIN_API_KEY: hexKey });
    try {
      const sent = [
        await call(s2.adminUrl, 'GET', '/v1/admin/overview', { adminKey: hexKey, headers: { 'X-Cycles-Trace-Id': hexKey } }),
        await call(s2.adminUrl, 'GET', '/v1/admin/overview', { adminKey: hexKey, headers: { traceparent: `00-${hexKey}-00f067aa0ba902b7-01` } }),
      ];
      for (const r of sent) {
        expect(r.status).toBe(200);
        const q = await call(s2.adminUrl, 'GET', `/v1/admin/audit/logs?request_id=${r.headers.get('x-request-id')}`, { adminKey: hexKey });
        expect(q.status, q.text).toBe(200);
        expect(q.body.logs).toHaveLength(1);
        expect(q.body.logs[0].trace_id).toBeUndefined();
      }
      for (const k of await s2.redis.client.keys('*audit*')) {
        expect(k.includes(hexKey), k).toBe(false);
        if ((await s2.redis.client.type(k)) === 'string') expect((await s2.redis.client.get(k))!.includes(hexKey), k).toBe(false);
      }
    } finally {
      await s2.stop();
    }
  });
});

describe('makeScrubber (the rule for one string)', () => {
  const scrub = makeScrubber(ADMIN_KEY);
  const live = 'cyc_live_AbCdEfGhIjKlMnOpQrStUvWxYz012345';

  it('keeps strings without secrets exactly as sent, including their percent-encoding', () => {
    for (const x of ['/v1/admin/tenants/acme%2Dcorp', '100%', '%zz%4', '%ff%fe', 'plain', '']) expect(scrub(x)).toBe(x);
  });

  it('redacts literal, encoded, double-encoded and partly encoded secrets without leaving a remainder', () => {
    for (const S of [live, ADMIN_KEY]) {
      for (const [enc, x] of Object.entries(variants(S))) {
        const out = scrub(`/a/${x}/b`);
        expect(out, enc).toBe(`/a/${REDACTED}/b`);
      }
    }
    expect(scrub(`${ADMIN_KEY}${ADMIN_KEY}`)).toBe(REDACTED + REDACTED);
    expect(scrub('whsec_abc and cyc_test_x1')).toBe(`${REDACTED} and ${REDACTED}`);
  });

  it('an admin key shorter than 8 characters is not treated as a secret (it would redact common words)', () => {
    expect(makeScrubber('admin')('admin overview')).toBe('admin overview');
  });
});
