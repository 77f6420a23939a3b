// The foundation every handler stands on: the operation table, request validation that
// runs before any handler (proved by watching Redis writes), authentication rules, the
// v0.1.26 feature gate, health/readiness, and the coverage report / 501 for missing handlers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestServer, call, type TestServer } from './helpers/server';
import type { Role } from '../src/server';
import { operations, type OperationInfo } from '../src/generated/operations';
import { SpecValidator } from '../conformance/validate';
import { invalidRequest, samplePathParams } from '../conformance/invalid';
import { fillPath } from '../conformance/harness';
import { coverageReport } from '../src/ops';
import { handlerFile } from '../src/handlers';
import { createPlaneApp } from '../src/http/app';
import { Authenticator } from '../src/auth/authenticate';
import { loadConfig, REPO_ROOT } from '../src/config';
import { createLogger } from '../src/log';
import type { Handler } from '../src/http/types';

const ALL_TENANT_PERMS = [
  'reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend',
  'reservations:list', 'balances:read', 'budgets:read', 'budgets:write', 'policies:read',
  'policies:write', 'webhooks:read', 'webhooks:write', 'events:read', 'action_quotas:read',
];
const accepts = (op: OperationInfo, scheme: string) => op.security.some((alt) => alt.includes(scheme));
const urlOf = (s: TestServer, op: OperationInfo) => (op.plane === 'runtime' ? s.runtimeUrl : s.adminUrl);

// Commands that change data. EVAL/EVALSHA run ledger scripts, so any of them counts.
const WRITE_COMMANDS = new Set([
  'set', 'setnx', 'setex', 'psetex', 'getset', 'getdel', 'append', 'incr', 'incrby', 'decr', 'decrby', 'incrbyfloat',
  'hset', 'hsetnx', 'hmset', 'hdel', 'hincrby', 'hincrbyfloat', 'del', 'unlink', 'expire', 'pexpire', 'expireat',
  'pexpireat', 'persist', 'rename', 'renamenx', 'copy', 'restore', 'zadd', 'zrem', 'zincrby', 'zremrangebyscore',
  'zremrangebyrank', 'zpopmin', 'zpopmax', 'sadd', 'srem', 'spop', 'smove', 'lpush', 'rpush', 'lpop', 'rpop', 'ltrim',
  'lrem', 'lset', 'xadd', 'xtrim', 'xdel', 'xack', 'xgroup', 'eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'flushall', 'flushdb',
]);
/** The audit trail is written for every admin request, including rejected ones, by design. */
const isAuditKey = (k: unknown) => typeof k === 'string' && k.startsWith('cycles:audit:');

let on: TestServer; // CYCLES_FEATURES=v0.1.26
let off: TestServer; // features off
const spec = new SpecValidator();

beforeAll(async () => {
  // HTTP planes only, and no counter flush inside the test: the MONITOR check below must see
  // the writes of the requests, not those of background work (relay, sweeper, signals).
  const quiet = { CYCLES_SIGNAL_FLUSH_MS: '600000' };
  const planes = { roles: ['runtime', 'admin'] as Role[] };
  [on, off] = await Promise.all([startTestServer({ CYCLES_FEATURES: 'v0.1.26', ...quiet }, planes), startTestServer(quiet, planes)]);
});
afterAll(async () => { await Promise.all([on?.stop(), off?.stop()]); });

/** The router matched the request: any answer but the router's own 404 (a handler may answer
 *  404 for the sample resource, e.g. getActionKind for a kind that is not registered). */
const routed = (r: { status: number; body: any }) => !(r.status === 404 && /^No route/.test(String(r.body?.message)));

describe('operation table', () => {
  it('has 65 operations: 15 runtime and 50 admin, 4 of each v0.1.26 (action kinds, on both planes)', () => {
    expect(operations).toHaveLength(65);
    const actionKinds = ['getActionKind', 'listActionKinds', 'listActionQuotaCounters', 'resetActionQuotaCounter'];
    for (const plane of ['runtime', 'admin'] as const) {
      const rows = operations.filter((o) => o.plane === plane);
      expect(rows).toHaveLength(plane === 'runtime' ? 15 : 50);
      expect(rows.filter((o) => o.feature === 'v0.1.26').map((o) => o.operationId).sort()).toEqual(actionKinds);
    }
    expect(new Set(operations.map((o) => `${o.plane}:${o.operationId}`)).size).toBe(65);
  });

  it('routes every operation on its own plane and not on the other', async () => {
    for (const op of operations) {
      const path = fillPath(op.path, samplePathParams(spec, op));
      const own = await call(urlOf(on, op), op.method.toUpperCase(), path);
      expect(routed(own), `${op.plane} ${op.operationId}: ${own.text}`).toBe(true);
      const otherHas = operations.some((o) => o.plane !== op.plane && o.path === op.path && o.method === op.method);
      if (!otherHas) {
        const other = await call(op.plane === 'runtime' ? on.adminUrl : on.runtimeUrl, op.method.toUpperCase(), path);
        expect([404, 405], `${op.operationId} answered on the other plane`).toContain(other.status);
      }
    }
  });
});

describe('request validation runs before any handler', () => {
  it('every operation with constrained input rejects a schema-invalid request with 400 INVALID_REQUEST and no Redis write', async () => {
    const tenantKey = await on.tenantKey('foundation-t1', ALL_TENANT_PERMS);
    const monitor = await on.redis.client.monitor();
    const writes: string[] = [];
    let seen = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      seen++;
      const cmd = String(args[0]).toLowerCase();
      if (WRITE_COMMANDS.has(cmd) && !isAuditKey(args[1])) writes.push(args.slice(0, 3).join(' '));
    });
    let checked = 0;
    const noInput: string[] = [];
    try {
      for (const op of operations) {
        const bad = invalidRequest(spec, op);
        if (!bad) { noInput.push(op.operationId); continue; }
        const auth = op.security.length === 0 ? {} : accepts(op, 'AdminKeyAuth') ? { adminKey: on.adminKey } : { key: tenantKey };
        const qs = new URLSearchParams(bad.query).toString();
        const res = await call(urlOf(on, op), op.method.toUpperCase(), fillPath(op.path, bad.params) + (qs ? `?${qs}` : ''), {
          ...auth, body: bad.body,
        });
        expect(res.status, `${op.plane} ${op.operationId} (${bad.what}): ${res.text}`).toBe(400);
        expect(res.body.error).toBe('INVALID_REQUEST');
        expect(res.body.request_id).toBe(res.headers.get('x-request-id'));
        checked++;
      }
      // MONITOR output is asynchronous; a PING round trip flushes what is pending.
      await on.redis.client.ping();
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      monitor.disconnect();
    }
    // The monitor works (tenant-key lookups are reads it must have seen) and saw no write.
    expect(seen).toBeGreaterThan(0);
    expect(writes).toEqual([]);
    // Operations without any constrained input (no body, no constrained parameter) have no
    // schema-invalid request at all; everything else was exercised.
    expect(checked + noInput.length).toBe(65);
    expect(checked).toBeGreaterThanOrEqual(45);
    for (const id of noInput) {
      const op = operations.find((o) => o.operationId === id)!;
      expect(spec.operation(op).requestBody, id).toBeUndefined();
    }
  });

  it('an operation without a handler still answers 400 (not 501) for invalid input', async () => {
    const app = await bareApp();
    try {
      const res = await call(app.url, 'POST', '/v1/reservations/r1/release', { adminKey: on.adminKey, body: [] });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('INVALID_REQUEST');
    } finally { await app.close(); }
  });
});

describe('authentication', () => {
  it('401 UNAUTHORIZED without credentials on every protected operation', async () => {
    for (const op of operations.filter((o) => o.security.length > 0)) {
      const res = await call(urlOf(on, op), op.method.toUpperCase(), fillPath(op.path, samplePathParams(spec, op)));
      expect(res.status, op.operationId).toBe(401);
      expect(res.body.error).toBe('UNAUTHORIZED');
    }
  });

  it('a wrong admin key is 401 on every AdminKeyAuth operation', async () => {
    for (const op of operations.filter((o) => accepts(o, 'AdminKeyAuth'))) {
      const res = await call(urlOf(on, op), op.method.toUpperCase(), fillPath(op.path, samplePathParams(spec, op)), { adminKey: 'wrong-admin-key' });
      expect(res.status, op.operationId).toBe(401);
    }
  });

  it('an unknown tenant key is 401; the admin key is not accepted by ApiKeyAuth-only operations', async () => {
    expect((await call(on.runtimeUrl, 'POST', '/v1/reservations', { key: 'cyc_nope', body: {} })).status).toBe(401);
    expect((await call(on.runtimeUrl, 'POST', '/v1/reservations', { adminKey: on.adminKey, body: {} })).status).toBe(401);
  });

  it('dual-auth operations judge the admin key when both headers are present', async () => {
    const key = await on.tenantKey('foundation-dual', ALL_TENANT_PERMS);
    // valid tenant key + wrong admin key → 401 (the admin key decides)
    const wrongAdmin = await call(on.runtimeUrl, 'GET', '/v1/reservations?tenant=foundation-dual', { key, adminKey: 'wrong-admin-key' });
    expect(wrongAdmin.status).toBe(401);
    // invalid tenant key + valid admin key → authenticated as admin
    const goodAdmin = await call(on.runtimeUrl, 'GET', '/v1/reservations?tenant=foundation-dual', { key: 'cyc_invalid', adminKey: on.adminKey });
    expect(goodAdmin.status).not.toBe(401);
    expect(goodAdmin.status).toBeLessThan(500);
  });
});

describe('v0.1.26 feature gate', () => {
  const gated = operations.filter((o) => o.feature === 'v0.1.26');
  it('extension routes answer 404 NOT_FOUND when CYCLES_FEATURES is off', async () => {
    for (const op of gated) {
      const res = await call(urlOf(off, op), op.method.toUpperCase(), fillPath(op.path, samplePathParams(spec, op)), { adminKey: off.adminKey });
      expect(res.status, op.operationId).toBe(404);
      expect(res.body.error).toBe('NOT_FOUND');
    }
  });
  it('extension routes are reachable when CYCLES_FEATURES=v0.1.26', async () => {
    for (const op of gated) {
      const res = await call(urlOf(on, op), op.method.toUpperCase(), fillPath(op.path, samplePathParams(spec, op)));
      if (op.security.length > 0) expect(res.status, op.operationId).toBe(401);
      else expect(routed(res), `${op.operationId}: ${res.text}`).toBe(true);
    }
  });
});

describe('cycles ops and 501', () => {
  it('coverageReport counts implemented vs not-yet from the handler files', () => {
    const report = coverageReport();
    expect(report.rows).toHaveLength(operations.length);
    const present = operations.filter((o) => existsSync(handlerFile(o.plane, o.operationId))).length;
    expect(report.implemented).toBe(present);
    expect(report.notYet).toBe(operations.length - present);
    for (const r of report.rows) expect(r.status).toBe(existsSync(handlerFile(r.plane, r.operationId)) ? 'implemented' : 'not-yet');
  });

  it('`cycles ops --json` prints the same report', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'ops', '--json'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual(coverageReport());
  });

  it('an operation without a handler answers 501 in ErrorResponse shape', async () => {
    const app = await bareApp();
    try {
      const res = await call(app.url, 'POST', '/v1/reservations/r1/release', {
        adminKey: on.adminKey, body: { idempotency_key: 'k-501' },
      });
      expect(res.status).toBe(501);
      expect(typeof res.body.error).toBe('string');
      expect(res.body.message).toMatch(/releaseReservation/);
      expect(res.body.request_id).toBe(res.headers.get('x-request-id'));
      expect(res.body.trace_id).toBe(res.headers.get('x-cycles-trace-id'));
      const problems = spec.checkResponse('runtime', null, 501, res.body, true);
      expect(problems).toEqual([]);
    } finally { await app.close(); }
  });
});

describe('health and readiness', () => {
  it('/healthz and /readyz answer 200 on both planes', async () => {
    for (const base of [off.runtimeUrl, off.adminUrl]) {
      for (const path of ['/healthz', '/readyz']) {
        const r = await call(base, 'GET', path, { headers: { 'X-Cycles-Trace-Id': 'abcdef0123456789abcdef0123456789' } });
        expect(r.status).toBe(200);
        // every response carries the correlation headers, probes included
        expect(r.headers.get('x-request-id')).toMatch(/^req_/);
        expect(r.headers.get('x-cycles-trace-id')).toBe('abcdef0123456789abcdef0123456789');
      }
    }
  });

  it('/readyz answers 503 while Redis is down and 200 again after it is back', async () => {
    off.redis.server.kill('SIGKILL');
    await off.redis.server.exited;
    for (const base of [off.runtimeUrl, off.adminUrl]) {
      const r = await call(base, 'GET', '/readyz');
      expect(r.status).toBe(503);
      expect((await call(base, 'GET', '/healthz')).status).toBe(200);
    }
    await off.redis.restart();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await call(off.runtimeUrl, 'GET', '/readyz')).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });
});

/** A runtime plane app with the given handler map, on an ephemeral port. */
async function bareApp() {
  const handlers = new Map<string, Handler>();
  const config = loadConfig({ REDIS_URL: on.redis.url, ADMIN_API_KEY: on.adminKey, CYCLES_VALIDATE_RESPONSES: '1' });
  const deps = { redis: on.redis.client, config, log: createLogger('silent') };
  const app = await createPlaneApp({
    plane: 'runtime', deps, handlers, authenticator: new Authenticator(on.redis.client, on.adminKey), isReady: async () => true,
  });
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }) };
}
