// Audit log: exactly one row per admin-plane request (success, validation failure, 401,
// 403, 404, unknown route), attribution, ids equal to the response headers, no secrets,
// retention, and every listAuditLogs filter.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, call, type TestServer, type ApiResponse } from './helpers/server';
import { putBudget, putTenant } from './helpers/fixtures';
import { keys } from '../src/store/keys';

let s: TestServer;
let n = 0;
const tid = () => `aud-${process.pid}-${++n}`;

beforeAll(async () => { s = await startTestServer({ CYCLES_AUDIT_UNAUTH_RETENTION_DAYS: '1' }); });
afterAll(async () => { await s?.stop(); });

const admin = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  call(s.adminUrl, method, path, { adminKey: s.adminKey, body, headers });

async function total(): Promise<number> {
  return s.redis.client.zcard(keys.auditAll());
}

/** The audit row of one response, found by its X-Request-Id (via the API). */
async function rowOf(r: ApiResponse): Promise<any> {
  const id = r.headers.get('x-request-id')!;
  const q = await admin('GET', `/v1/admin/audit/logs?request_id=${id}`);
  expect(q.status).toBe(200);
  expect(q.body.logs).toHaveLength(1);
  return q.body.logs[0];
}

/** Runs `fn`, then checks that it added exactly one audit row (waits for the async write). */
async function exactlyOne(fn: () => Promise<ApiResponse>): Promise<{ r: ApiResponse; row: any }> {
  const before = await total();
  const r = await fn();
  const row = await rowOf(r); // goes through the server's connection: ordered after the write
  // the lookup itself is audited too: +2 in total, one of them the request under test
  expect(await total()).toBe(before + 2);
  expect(row.request_id).toBe(r.headers.get('x-request-id'));
  expect(row.trace_id).toBe(r.headers.get('x-cycles-trace-id'));
  if (r.status >= 400) {
    expect(row.error_code).toBe(r.body.error);
    expect(r.body.request_id).toBe(row.request_id);
  } else {
    expect(row.error_code).toBeUndefined();
  }
  expect(row.status).toBe(r.status);
  return { r, row };
}

describe('exactly one row per request', () => {
  it('success (tenant-key write): tenant, key_id, operationId, resource', async () => {
    const t = tid();
    const key = await s.tenantKey(t);
    const { r, row } = await exactlyOne(() => call(s.adminUrl, 'POST', '/v1/admin/policies', { key, body: { name: 'a', scope_pattern: `tenant:${t}` } }));
    expect(r.status).toBe(201);
    expect(row).toMatchObject({ tenant_id: t, operation: 'createPolicy', resource_type: 'policy', resource_id: r.body.policy_id });
    expect(row.key_id).toMatch(/.+/);
    expect(row.metadata.actor_type).toBe('api_key');
    expect(row.log_id).toMatch(/^log_/);
  });

  it('success (admin AoBO write): tenant_id is the target tenant, actor admin_on_behalf_of', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const { row } = await exactlyOne(() => admin('POST', '/v1/admin/policies', { tenant_id: t, name: 'a', scope_pattern: `tenant:${t}` }));
    expect(row.tenant_id).toBe(t);
    expect(row.key_id).toBeUndefined();
    expect(row.metadata.actor_type).toBe('admin_on_behalf_of');
  });

  it('success (admin read): __admin__, actor admin', async () => {
    const { row } = await exactlyOne(() => admin('GET', '/v1/admin/overview'));
    expect(row).toMatchObject({ tenant_id: '__admin__', operation: 'getAdminOverview', status: 200 });
    expect(row.metadata.actor_type).toBe('admin');
  });

  it('validation failure 400', async () => {
    const { row } = await exactlyOne(() => admin('POST', '/v1/admin/policies', { name: 'x' }));
    expect(row).toMatchObject({ status: 400, error_code: 'INVALID_REQUEST', operation: 'createPolicy', tenant_id: '__admin__' });
    expect(row.metadata.error_message).toMatch(/.+/);
  });

  it('401 (missing and wrong credentials) → __unauth__', async () => {
    const a = await exactlyOne(() => call(s.adminUrl, 'GET', '/v1/admin/overview'));
    expect(a.row).toMatchObject({ tenant_id: '__unauth__', status: 401, error_code: 'UNAUTHORIZED', operation: 'getAdminOverview' });
    const b = await exactlyOne(() => call(s.adminUrl, 'GET', '/v1/admin/tenants', { adminKey: 'not-the-admin-key' }));
    expect(b.row.tenant_id).toBe('__unauth__');
  });

  it('403 (missing permission) is attributed to the key that was authenticated', async () => {
    const t = tid();
    const key = await s.tenantKey(t, ['budgets:read']);
    const { row } = await exactlyOne(() => call(s.adminUrl, 'GET', '/v1/admin/policies', { key }));
    expect(row).toMatchObject({ tenant_id: t, status: 403, error_code: 'INSUFFICIENT_PERMISSIONS' });
    expect(row.key_id).toMatch(/.+/);
  });

  it('404 from a handler and 404 for an unknown route', async () => {
    const a = await exactlyOne(() => admin('PATCH', '/v1/admin/policies/pol_missing', { priority: 1 }));
    expect(a.row).toMatchObject({ status: 404, error_code: 'NOT_FOUND', operation: 'updatePolicy', resource_type: 'policy', resource_id: 'pol_missing' });
    const b = await exactlyOne(() => admin('GET', '/v1/admin/nothing-here'));
    expect(b.row).toMatchObject({ status: 404, operation: 'GET:/v1/admin/nothing-here', tenant_id: '__unauth__' });
  });

  it('an inbound traceparent is the trace_id of the row', async () => {
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const { row } = await exactlyOne(() => admin('GET', '/v1/admin/overview', undefined, { traceparent: `00-${trace}-00f067aa0ba902b7-01` }));
    expect(row.trace_id).toBe(trace);
  });

  it('health endpoints are not audited', async () => {
    const before = await total();
    await call(s.adminUrl, 'GET', '/healthz');
    await admin('GET', '/v1/admin/overview'); // flushes ordering on the server connection
    await new Promise((r) => setTimeout(r, 50));
    expect(await total()).toBe(before + 1);
  });
});

describe('runtime plane', () => {
  it('only the admin-key releaseReservation is audited, as admin_on_behalf_of', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    await putBudget(s.redis.client, t, `tenant:${t}`, 'TOKENS', { allocated: 1000 });
    const key = await s.tenantKey(t);
    const before = await total();
    const res = await call(s.runtimeUrl, 'POST', '/v1/reservations', { key, body: {
      idempotency_key: `rv-${t}`, subject: { tenant: t }, action: { kind: 'llm.completion', name: 'x' }, estimate: { unit: 'TOKENS', amount: 10 } } });
    expect(res.status).toBe(200);
    const rel = await call(s.runtimeUrl, 'POST', `/v1/reservations/${res.body.reservation_id}/release`, { adminKey: s.adminKey, body: { idempotency_key: `rl-${t}` } });
    expect(rel.status).toBe(200);
    const row = await rowOf(rel);
    expect(row).toMatchObject({ operation: 'releaseReservation', status: 200, resource_type: 'reservation', resource_id: res.body.reservation_id });
    expect(row.metadata.actor_type).toBe('admin_on_behalf_of');
    expect(row.trace_id).toBe(rel.headers.get('x-cycles-trace-id'));
    expect(await total()).toBe(before + 2); // the release + the lookup; the tenant-key reserve is not audited
  });
});

describe('secrets never reach audit rows', () => {
  it('create an API key, use it, validate it, fail with it: no row contains the secret or the admin key', async () => {
    const t = tid();
    await putTenant(s.redis.client, t);
    const created = await admin('POST', '/v1/admin/api-keys', { tenant_id: t, name: 'k' });
    expect(created.status).toBe(201);
    const secret: string = created.body.key_secret;
    expect(secret).toMatch(/^cyc_/);
    await call(s.adminUrl, 'GET', '/v1/admin/policies', { key: secret });
    await admin('POST', '/v1/auth/validate', { key_secret: secret });
    await admin('POST', '/v1/auth/validate', { key_secret: secret, extra: 1 });
    await call(s.adminUrl, 'GET', `/v1/admin/${secret}`, { key: secret, headers: { 'User-Agent': `agent ${secret}` } });
    await call(s.adminUrl, 'GET', '/v1/admin/policies', { key: secret + 'x' });
    await admin('GET', '/v1/admin/overview');
    const ids = await s.redis.client.zrange(keys.auditAll(), 0, -1);
    const rows = await s.redis.client.mget(ids.map((id) => keys.auditEntry(id)));
    expect(rows.length).toBeGreaterThan(5);
    for (const raw of rows) {
      if (!raw) continue;
      expect(raw.includes(secret), raw).toBe(false);
      expect(raw.includes(secret.slice(9))).toBe(false);
      expect(raw.includes(s.adminKey)).toBe(false);
    }
  });
});

describe('retention', () => {
  it('entries carry their tier TTL: __unauth__ 1 day (configured), authenticated 400 days (default)', async () => {
    const a = await call(s.adminUrl, 'GET', '/v1/admin/overview');
    const b = await admin('GET', '/v1/admin/overview');
    await rowOf(b);
    const ttl = async (r: ApiResponse) => s.redis.client.pttl(keys.auditEntry(`log_${r.headers.get('x-request-id')!.replace(/^req_/, '')}`));
    const ua = await ttl(a);
    const aa = await ttl(b);
    expect(ua).toBeGreaterThan(86_400_000 - 60_000);
    expect(ua).toBeLessThanOrEqual(86_400_000);
    expect(aa).toBeGreaterThan(399 * 86_400_000);
  });

  it('index members older than the tier are trimmed on write', async () => {
    const old = Date.now() - 3 * 86_400_000;
    await s.redis.client.zadd(keys.auditByTenant('__unauth__'), old, 'log_ancient');
    await call(s.adminUrl, 'GET', '/v1/admin/overview');
    await admin('GET', '/v1/admin/overview');
    expect(await s.redis.client.zscore(keys.auditByTenant('__unauth__'), 'log_ancient')).toBeNull();
  });
});

describe('listAuditLogs filters', () => {
  // A private tenant stream so counts are exact.
  const t = `audf-${process.pid}`;
  let key: string;
  let key2: string;
  const made: ApiResponse[] = [];
  let fromIso = '';

  beforeAll(async () => {
    fromIso = new Date(Date.now() - 1000).toISOString();
    key = await s.tenantKey(t);
    key2 = await s.tenantKey(t, ['policies:read']);
    made.push(await call(s.adminUrl, 'POST', '/v1/admin/policies', { key, body: { name: 'f1', scope_pattern: `tenant:${t}` } })); // 201
    made.push(await call(s.adminUrl, 'POST', '/v1/admin/policies', { key, body: { name: 'f1', scope_pattern: `tenant:${t}` } })); // 409
    made.push(await call(s.adminUrl, 'GET', '/v1/admin/policies', { key })); // 200
    made.push(await call(s.adminUrl, 'POST', '/v1/admin/policies', { key: key2, body: { name: 'f2', scope_pattern: `tenant:${t}` } })); // 403
    made.push(await call(s.adminUrl, 'PATCH', '/v1/admin/policies/pol_zzz', { key, body: { priority: 1 } })); // 404
    expect(made.map((r) => r.status)).toEqual([201, 409, 200, 403, 404]);
  });

  const q = async (query: string) => {
    const r = await admin('GET', `/v1/admin/audit/logs?tenant_id=${t}${query}`);
    expect(r.status, r.text).toBe(200);
    return r.body.logs as any[];
  };
  const statuses = (rows: any[]) => rows.map((r) => r.status);

  it('tenant_id, default order newest first', async () => {
    expect(statuses(await q(''))).toEqual([404, 403, 200, 409, 201]);
  });

  it('operation (comma IN-list and repeated form), status, status_min/max', async () => {
    expect(statuses(await q('&operation=createPolicy'))).toEqual([403, 409, 201]);
    expect(statuses(await q('&operation=listPolicies,updatePolicy'))).toEqual([404, 200]);
    expect(statuses(await q('&operation=listPolicies&operation=updatePolicy'))).toEqual([404, 200]);
    expect(statuses(await q('&status=409'))).toEqual([409]);
    expect(statuses(await q('&status_min=400&status_max=404'))).toEqual([404, 403]);
    expect(statuses(await q('&status_min=401'))).toEqual([404, 403, 409]);
    expect(statuses(await q('&status_max=299'))).toEqual([200, 201]);
  });

  it('error_code (nulls never match), error_code_exclude (nulls always pass), unknown codes match nothing', async () => {
    expect(statuses(await q('&error_code=DUPLICATE_RESOURCE,NOT_FOUND'))).toEqual([404, 409]);
    expect(statuses(await q('&error_code=NO_SUCH_CODE'))).toEqual([]);
    expect(statuses(await q('&error_code_exclude=NOT_FOUND,INSUFFICIENT_PERMISSIONS'))).toEqual([200, 409, 201]);
    expect(statuses(await q('&error_code=NOT_FOUND,DUPLICATE_RESOURCE&error_code_exclude=NOT_FOUND'))).toEqual([409]);
  });

  it('key_id, resource_type, resource_id, request_id, trace_id, search', async () => {
    const created = made[0].body.policy_id;
    const all = await q('');
    const k2 = all.find((r) => r.status === 403).key_id;
    expect(statuses(await q(`&key_id=${k2}`))).toEqual([403]);
    const r = await admin('GET', `/v1/admin/audit/logs?key_id=${k2}`);
    expect(statuses(r.body.logs)).toEqual([403]);
    expect(statuses(await q('&resource_type=policy'))).toEqual([404, 403, 200, 409, 201]);
    expect(statuses(await q('&resource_type=budget,tenant'))).toEqual([]);
    expect(statuses(await q(`&resource_id=${created}`))).toEqual([201]);
    expect(statuses(await q(`&request_id=${made[1].headers.get('x-request-id')}`))).toEqual([409]);
    const trace = made[2].headers.get('x-cycles-trace-id')!;
    expect(statuses((await admin('GET', `/v1/admin/audit/logs?trace_id=${trace}`)).body.logs)).toEqual([200]);
    expect(statuses(await q('&search=pol_ZZZ'))).toEqual([404]);
    expect(statuses(await q('&search=duplicate_res'))).toEqual([409]);
    expect(statuses(await q('&search=%20%20'))).toHaveLength(5);
    expect(statuses(await q(`&search=${made[3].headers.get('x-request-id')!.slice(4, 14)}`))).toEqual([403]);
  });

  it('from / to', async () => {
    expect(statuses(await q(`&from=${fromIso}`))).toHaveLength(5);
    expect(statuses(await q('&to=2000-01-01T00:00:00Z'))).toEqual([]);
    expect(statuses(await q(`&from=${new Date(Date.now() + 60_000).toISOString()}`))).toEqual([]);
  });

  it('sort_by / sort_dir and paging with a cursor visit every row exactly once', async () => {
    expect(statuses(await q('&sort_dir=asc'))).toEqual([201, 409, 200, 403, 404]);
    expect(statuses(await q('&sort_by=status&sort_dir=asc'))).toEqual([200, 201, 403, 404, 409]);
    expect(statuses(await q('&sort_by=status'))).toEqual([409, 404, 403, 201, 200]);
    const ops = (await q('&sort_by=operation&sort_dir=asc')).map((r) => r.operation);
    expect(ops).toEqual([...ops].sort());
    for (const sort of ['', '&sort_by=status', '&sort_dir=asc']) {
      const seen: string[] = [];
      let cursor = '';
      for (let i = 0; i < 10; i++) {
        const r = await admin('GET', `/v1/admin/audit/logs?tenant_id=${t}&limit=2${sort}${cursor ? `&cursor=${cursor}` : ''}`);
        expect(r.status).toBe(200);
        seen.push(...r.body.logs.map((x: any) => x.log_id));
        if (!r.body.has_more) { expect(r.body.next_cursor).toBeUndefined(); break; }
        expect(r.body.logs).toHaveLength(2);
        cursor = r.body.next_cursor;
      }
      expect(seen).toHaveLength(5);
      expect(new Set(seen).size).toBe(5);
    }
  });

  it('400 rules: status with a range, range outside [100,599], min > max, >25 list items, search > 128, bad sort, bad cursor, from > to', async () => {
    const bad = [
      '&status=200&status_min=100', '&status=200&status_max=500', '&status_min=99', '&status_max=600',
      '&status_min=500&status_max=400', `&operation=${Array.from({ length: 26 }, (_, i) => `op${i}`).join(',')}`,
      `&${Array.from({ length: 26 }, (_, i) => `error_code=E${i}`).join('&')}`,
      `&search=${'x'.repeat(129)}`, '&sort_by=nope', '&sort_dir=up', '&cursor=garbage!', '&limit=0',
      '&from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z', '&trace_id=XYZ',
    ];
    for (const b of bad) {
      const r = await admin('GET', `/v1/admin/audit/logs?tenant_id=${t}${b}`);
      expect([r.status, r.body.error], b).toEqual([400, 'INVALID_REQUEST']);
    }
    const page = await admin('GET', `/v1/admin/audit/logs?tenant_id=${t}&limit=1`);
    const reuse = await admin('GET', `/v1/admin/audit/logs?tenant_id=${t}&limit=1&status=200&cursor=${page.body.next_cursor}`);
    expect([reuse.status, reuse.body.error]).toEqual([400, 'INVALID_REQUEST']);
  });

  it('sentinel streams: ?tenant_id=__unauth__ and __admin__', async () => {
    const u = await call(s.adminUrl, 'GET', '/v1/admin/overview');
    const a = await admin('GET', '/v1/admin/overview');
    const ul = await admin('GET', `/v1/admin/audit/logs?tenant_id=__unauth__&request_id=${u.headers.get('x-request-id')}`);
    expect(ul.body.logs).toHaveLength(1);
    const al = await admin('GET', `/v1/admin/audit/logs?tenant_id=__admin__&limit=5`);
    expect(al.body.logs.some((r: any) => r.request_id === a.headers.get('x-request-id'))).toBe(true);
    expect(al.body.logs.every((r: any) => r.tenant_id === '__admin__')).toBe(true);
  });
});
