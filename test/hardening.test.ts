// Bad input that must end as a clean 4xx ErrorResponse, never a 500, a bare parser reply or
// a partial write (issue: hardening). Real HTTP on a real Redis; the operations that take a
// body come from the generated operation table, not a hand list.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/config';
import { operations, type OperationInfo } from '../src/generated/operations';
import { loadSpec } from '../src/http/spec';
import { startTestServer, call, ADMIN_KEY, type TestServer } from './helpers/server';
import { putTenant, putBudget } from './helpers/fixtures';
import { PERMISSIONS } from '../src/auth/permissions';

const U = 'USD_MICROCENTS';
let ts: TestServer;
let tenantKey: string;
let fullKey: string;

beforeAll(async () => {
  // flag on, so the v0.1.26 operations with bodies are routed (and covered) too; HTTP planes
  // only and no counter flush, so the "nothing written" snapshots see no background work
  ts = await startTestServer({ CYCLES_FEATURES: 'v0.1.26', CYCLES_SIGNAL_FLUSH_MS: '600000' }, { roles: ['runtime', 'admin'] });
  await putTenant(ts.redis.client, 'acme');
  await putBudget(ts.redis.client, 'acme', 'tenant:acme', U, { allocated: 1000n });
  tenantKey = await ts.tenantKey('acme');
  fullKey = await ts.tenantKey('acme', [...PERMISSIONS]);
});
afterAll(async () => { await ts?.stop(); });

const docs = {
  runtime: JSON.parse(readFileSync(join(REPO_ROOT, 'src/generated/runtime.openapi.json'), 'utf8')),
  admin: JSON.parse(readFileSync(join(REPO_ROOT, 'src/generated/admin.openapi.json'), 'utf8')),
};
const takesBody = (o: OperationInfo) => Boolean(docs[o.plane].paths?.[o.path]?.[o.method]?.requestBody);
const BODY_OPS = operations.filter(takesBody);

/** A concrete URL for an operation (path parameters filled) and the credential it accepts. */
function target(o: OperationInfo) {
  const path = o.path.replace(/\{([^}]+)\}/g, (_m, name: string) => (name === 'reservation_id' ? 'res_acme_00000000000000000000000000000000' : name === 'tenant_id' ? 'acme' : 'x1'));
  const admin = o.security.some((alt) => alt.includes('AdminKeyAuth'));
  const base = o.plane === 'runtime' ? ts.runtimeUrl : ts.adminUrl;
  // every permission, so the body is reached on every operation
  return { base, path, cred: admin ? { adminKey: ADMIN_KEY } : { key: fullKey } };
}

/** Every key but the audit log (written for each admin request by design), with its value. */
async function snapshot(): Promise<Map<string, string>> {
  const r = ts.redis.client;
  const out = new Map<string, string>();
  for (const k of (await r.keys('*')).filter((k) => !k.startsWith('cycles:audit:')).sort()) {
    const d = await r.dumpBuffer(k);
    out.set(k, d ? d.toString('base64') : '');
  }
  return out;
}

async function expectSpecError(res: { status: number; body: any; headers: Headers }, status: number) {
  expect(res.status).toBe(status);
  expect(res.body.error).toBe('INVALID_REQUEST');
  expect(res.body.request_id).toMatch(/^req_/);
  expect(res.headers.get('x-request-id')).toBe(res.body.request_id);
}

describe('request bodies: well-formed Unicode, well-formed UTF-8, no duplicate names', () => {
  it('the operation table yields the body operations of both planes', () => {
    expect(BODY_OPS.length).toBeGreaterThan(20);
    expect(BODY_OPS.map((o) => o.operationId)).toEqual(expect.arrayContaining(['createReservation', 'decide', 'createTenant', 'updateTenant', 'createApiKey', 'createPolicy']));
  });

  it('a lone surrogate escape anywhere → 400 naming the field, on every body operation, nothing written', async () => {
    const before = await snapshot();
    for (const o of BODY_OPS) {
      const { base, path, cred } = target(o);
      const rawBody = '{"idempotency_key":"k-\\ud800","name":"ok"}';
      const res = await call(base, o.method.toUpperCase(), path, { rawBody, ...cred });
      const where = `${o.operationId} ${res.status} ${res.text}`;
      expect(res.status, where).toBe(400);
      expect(res.body.error, where).toBe('INVALID_REQUEST');
      expect(res.body.message, where).toContain('body.idempotency_key');
      expect(res.body.details?.field, where).toBe('body.idempotency_key');
    }
    expect(await snapshot()).toEqual(before);
  });

  it('invalid UTF-8 bytes → 400 on every body operation (no U+FFFD collapsing), nothing written', async () => {
    const before = await snapshot();
    const bytes = Buffer.concat([Buffer.from('{"idempotency_key":"k-'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    for (const o of BODY_OPS) {
      const { base, path, cred } = target(o);
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if ('adminKey' in cred) headers['X-Admin-API-Key'] = cred.adminKey!; else headers['X-Cycles-API-Key'] = cred.key!;
      const res = await fetch(base + path, { method: o.method.toUpperCase(), headers, body: bytes });
      const body = (await res.json()) as { error: string; message: string };
      expect(res.status, o.operationId).toBe(400);
      expect(body.error, o.operationId).toBe('INVALID_REQUEST');
      expect(body.message, o.operationId).toMatch(/UTF-8/);
    }
    expect(await snapshot()).toEqual(before);
  });

  // The fields the issue names, each inside an otherwise valid request.
  const reserve = (over: Record<string, unknown>) => ({
    idempotency_key: 'r-1', subject: { tenant: 'acme', agent: 'a' }, action: { kind: 'llm.completion', name: 'chat' },
    estimate: { unit: U, amount: 5 }, ...over,
  });
  const LONE = '\ud800';
  const named: { name: string; plane: 'runtime' | 'admin'; method: string; path: string; body: unknown; field: string }[] = [
    { name: 'reserve idempotency_key', plane: 'runtime', method: 'POST', path: '/v1/reservations', body: reserve({ idempotency_key: `k${LONE}` }), field: 'body.idempotency_key' },
    { name: 'reserve action.name', plane: 'runtime', method: 'POST', path: '/v1/reservations', body: reserve({ action: { kind: 'llm.completion', name: `x${LONE}` } }), field: 'body.action.name' },
    { name: 'reserve metadata value', plane: 'runtime', method: 'POST', path: '/v1/reservations', body: reserve({ metadata: { note: LONE } }), field: 'body.metadata.note' },
    { name: 'reserve metadata name', plane: 'runtime', method: 'POST', path: '/v1/reservations', body: reserve({ metadata: { [`n${LONE}`]: 1 } }), field: 'body.metadata' },
    { name: 'decide idempotency_key', plane: 'runtime', method: 'POST', path: '/v1/decide', body: reserve({ idempotency_key: `d${LONE}` }), field: 'body.idempotency_key' },
    { name: 'createTenant name', plane: 'admin', method: 'POST', path: '/v1/admin/tenants', body: { tenant_id: 'newco', name: `N${LONE}` }, field: 'body.name' },
    { name: 'updateTenant name', plane: 'admin', method: 'PATCH', path: '/v1/admin/tenants/acme', body: { name: `N${LONE}` }, field: 'body.name' },
    { name: 'createApiKey name', plane: 'admin', method: 'POST', path: '/v1/admin/api-keys', body: { tenant_id: 'acme', name: `k${LONE}` }, field: 'body.name' },
    { name: 'createPolicy name', plane: 'admin', method: 'POST', path: '/v1/admin/policies', body: { tenant_id: 'acme', name: `p${LONE}`, scope_pattern: 'tenant:acme' }, field: 'body.name' },
  ];
  for (const c of named) {
    it(`${c.name}: 400 naming ${c.field}, nothing written`, async () => {
      const before = await snapshot();
      // JSON.stringify writes a lone surrogate as the \ud800 escape (well-formed JSON text)
      const rawBody = JSON.stringify(c.body);
      expect(rawBody).toMatch(/\\ud800/);
      const res = await call(c.plane === 'runtime' ? ts.runtimeUrl : ts.adminUrl, c.method, c.path, {
        rawBody, ...(c.plane === 'runtime' ? { key: tenantKey } : { adminKey: ADMIN_KEY }),
      });
      await expectSpecError(res, 400);
      expect(res.body.details.field).toBe(c.field);
      expect(res.body.message).not.toMatch(/retry/i);
      expect(await snapshot()).toEqual(before);
    });
  }

  it('the same reserve with a well-formed surrogate pair is accepted', async () => {
    const res = await call(ts.runtimeUrl, 'POST', '/v1/reservations', { body: reserve({ idempotency_key: 'emoji-\ud83d\ude00' }), key: tenantKey });
    expect(res.status).toBe(200);
  });

  it('duplicate member names → 400 on the fast path and on the lossless (16+ digit) path alike', async () => {
    const before = await snapshot();
    const bodies = [
      '{"idempotency_key":"dup-1","idempotency_key":"dup-1","subject":{"tenant":"acme"},"action":{"kind":"llm","name":"x"},"estimate":{"unit":"USD_MICROCENTS","amount":5}}',
      '{"idempotency_key":"dup-2","subject":{"tenant":"acme","tenant":"acme"},"action":{"kind":"llm","name":"x"},"estimate":{"unit":"USD_MICROCENTS","amount":5}}',
      '{"idempotency_key":"dup-3","subject":{"tenant":"acme"},"action":{"kind":"llm","name":"x"},"estimate":{"unit":"USD_MICROCENTS","amount":5,"amount":1234567890123456}}',
      '{"idempotency_key":"dup-4","subject":{"tenant":"acme"},"action":{"kind":"llm","name":"x"},"estimate":{"unit":"USD_MICROCENTS","amount":1234567890123456,"amount":1234567890123456}}',
    ];
    const fields = ['body', 'body.subject', 'body.estimate', 'body.estimate'];
    for (const [i, rawBody] of bodies.entries()) {
      const res = await call(ts.runtimeUrl, 'POST', '/v1/reservations', { rawBody, key: tenantKey });
      await expectSpecError(res, 400);
      expect(res.body.message).toMatch(/Duplicate member name/);
      expect(res.body.details.field).toBe(fields[i]);
    }
    expect(await snapshot()).toEqual(before);
  });
});

describe('errors the HTTP parser raises get the ErrorResponse shape on both planes', () => {
  /** Sends raw bytes, returns status, headers and body of the single response. */
  function raw(url: string, bytes: string | Buffer): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const sock = connect({ host: hostname, port: Number(port) });
      const chunks: Buffer[] = [];
      sock.setTimeout(5000, () => { sock.destroy(); reject(new Error('timeout')); });
      sock.on('data', (d) => chunks.push(d));
      sock.on('error', () => { /* reset after the reply is fine */ });
      sock.on('close', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const [head, ...rest] = text.split('\r\n\r\n');
        const lines = head.split('\r\n');
        const status = Number(lines[0].split(' ')[1]);
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim(); }
        resolve({ status, headers, body: rest.join('\r\n\r\n') });
      });
      sock.write(bytes);
    });
  }

  const CASES: [string, string | Buffer, number][] = [
    ['headers over the limit', `GET /v1/balances HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, 431],
    ['request line over the limit', `GET /v1/${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
    ['bad Content-Length', 'POST /v1/reservations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', 400],
    ['Content-Length with Transfer-Encoding', 'POST /v1/reservations HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['NUL in the path', Buffer.from('GET /v1/bal\u0000ances HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'), 400],
    ['unknown method', 'FROB /v1/balances HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ];
  for (const plane of ['runtime', 'admin'] as const) {
    for (const [name, bytes, status] of CASES) {
      it(`${plane}: ${name} → ${status} ErrorResponse, Connection: close`, async () => {
        const r = await raw(plane === 'runtime' ? ts.runtimeUrl : ts.adminUrl, bytes);
        expect(r.status).toBe(status);
        expect(r.headers['connection']).toBe('close');
        expect(r.headers['content-type']).toBe('application/json');
        const body = JSON.parse(r.body);
        expect(body.error).toBe('INVALID_REQUEST');
        expect(body.request_id).toBe(r.headers['x-request-id']);
        expect(body.message.length).toBeGreaterThan(10);
        const spec = await loadSpec(plane);
        expect(() => spec.checkErrorBody(body, status)).not.toThrow();
      });
    }
  }

  it('the server keeps serving after parser errors', async () => {
    const res = await call(ts.runtimeUrl, 'GET', '/v1/balances?tenant=acme', { key: tenantKey });
    expect(res.status).toBe(200);
  });
});

describe('query parameters', () => {
  it('unknown names are ignored on both planes; known ones are still validated', async () => {
    const a = await call(ts.adminUrl, 'GET', '/v1/admin/tenants?unknown_param_name=x', { adminKey: ADMIN_KEY });
    expect(a.status).toBe(200);
    const r = await call(ts.runtimeUrl, 'GET', '/v1/reservations?future_filter=1&limit=5', { key: tenantKey });
    expect(r.status).toBe(200);
    const bad = await call(ts.adminUrl, 'GET', '/v1/admin/tenants?unknown_param_name=x&limit=101', { adminKey: ADMIN_KEY });
    await expectSpecError(bad, 400);
    const badRt = await call(ts.runtimeUrl, 'GET', '/v1/reservations?future_filter=1&status=NOPE', { key: tenantKey });
    await expectSpecError(badRt, 400);
  });
});

describe('list limits where the admin spec sets no maximum', () => {
  it('listBudgets?utilization_min=0.9&limit=2000 (the dashboard) → 200, clamped page, cursor for the rest', async () => {
    for (let i = 0; i < 3; i++) {
      await putBudget(ts.redis.client, 'acme', `tenant:acme/agent:hot${i}`, U, { allocated: 100n, spent: 95n });
    }
    const res = await call(ts.adminUrl, 'GET', '/v1/admin/budgets?utilization_min=0.9&limit=2000', { adminKey: ADMIN_KEY });
    expect(res.status).toBe(200);
    expect(res.body.ledgers.length).toBe(3);
    expect(res.body.has_more).toBe(false);
  });

  it('listBudgets clamps to the page cap and pages the rest with next_cursor', async () => {
    const { PAGE_CAP } = await import('../src/list/cursor');
    const r = ts.redis.client;
    const total = PAGE_CAP + 5;
    for (let i = 0; i < total; i += 200) {
      await Promise.all(Array.from({ length: Math.min(200, total - i) }, (_, j) =>
        putBudget(r, 'bulkco', `tenant:bulkco/agent:a${String(i + j).padStart(5, '0')}`, U, { allocated: 10n })));
    }
    await putTenant(r, 'bulkco');
    const first = await call(ts.adminUrl, 'GET', '/v1/admin/budgets?tenant_id=bulkco&limit=100000', { adminKey: ADMIN_KEY });
    expect(first.status).toBe(200);
    expect(first.body.ledgers.length).toBe(PAGE_CAP);
    expect(first.body.has_more).toBe(true);
    const second = await call(ts.adminUrl, 'GET', `/v1/admin/budgets?tenant_id=bulkco&limit=100000&cursor=${encodeURIComponent(first.body.next_cursor)}`, { adminKey: ADMIN_KEY });
    expect(second.status).toBe(200);
    expect(second.body.ledgers.length).toBe(5);
    expect(second.body.has_more).toBe(false);
  });

  for (const path of ['/v1/admin/policies', '/v1/admin/api-keys', '/v1/admin/audit/logs']) {
    it(`${path}?limit=2000 → 200 (no spec maximum)`, async () => {
      const res = await call(ts.adminUrl, 'GET', `${path}?tenant_id=acme&limit=2000`, { adminKey: ADMIN_KEY });
      expect(res.status, res.text).toBe(200);
    });
  }

  it('a non-positive limit is still a 400', async () => {
    const res = await call(ts.adminUrl, 'GET', '/v1/admin/budgets?limit=0', { adminKey: ADMIN_KEY });
    await expectSpecError(res, 400);
  });

  it('where the spec sets a maximum (tenants, runtime lists) it is still enforced', async () => {
    await expectSpecError(await call(ts.adminUrl, 'GET', '/v1/admin/tenants?limit=101', { adminKey: ADMIN_KEY }), 400);
    await expectSpecError(await call(ts.runtimeUrl, 'GET', '/v1/reservations?limit=201', { key: tenantKey }), 400);
    expect((await call(ts.adminUrl, 'GET', '/v1/admin/tenants?limit=100', { adminKey: ADMIN_KEY })).status).toBe(200);
  });
});

describe("Spring's actuator health paths (the reference clients' probes)", () => {
  for (const plane of ['runtime', 'admin'] as const) {
    it(`${plane}: /actuator/health{,/liveness,/readiness} answer without credentials`, async () => {
      const base = plane === 'runtime' ? ts.runtimeUrl : ts.adminUrl;
      for (const p of ['/actuator/health', '/actuator/health/liveness', '/actuator/health/readiness']) {
        const res = await fetch(base + p);
        expect(res.status, p).toBe(200);
        expect(await res.json()).toEqual({ status: 'UP' });
        expect(res.headers.get('x-request-id')).toMatch(/^req_/);
      }
    });
  }

  it('readiness and health say DOWN with 503 while Redis is unreachable; liveness stays UP', async () => {
    const other = await startTestServer();
    try {
      await other.redis.client.call('CLIENT', 'PAUSE', '3000', 'ALL');
      const base = other.runtimeUrl;
      const [h, rd, lv] = await Promise.all(['/actuator/health', '/actuator/health/readiness', '/actuator/health/liveness'].map((p) => fetch(base + p)));
      expect(h.status).toBe(503);
      expect(await h.json()).toEqual({ status: 'DOWN' });
      expect(rd.status).toBe(503);
      expect(lv.status).toBe(200);
    } finally {
      await other.redis.client.call('CLIENT', 'UNPAUSE').catch(() => {});
      await other.stop();
    }
  });
});
