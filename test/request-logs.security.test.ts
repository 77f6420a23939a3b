// Request logs (docs/decisions.md DO7): one pino JSON line per API request with method,
// route, operationId, status, duration, tenant and trace id — and never key material. The
// server runs at debug level with every kind of secret configured or sent (admin key, tenant
// API keys, a wrong key, webhook signing secrets and custom header values, the webhook
// secret key, the evidence signing seed), and every line it writes is searched for each.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { startServer, type RunningServer } from '../src/server';
import { startTestRedis, type TestRedis } from './helpers/redis';
import { call } from './helpers/server';
import { Receiver, waitFor } from './delivery-helpers';
import { fixtureSeedHex, FIXTURE_PUBLIC_KEY } from './helpers/evidence';
import { uid } from './helpers/reservations';

const ADMIN_KEY = `log-admin-${randomBytes(16).toString('hex')}`;
const WEBHOOK_SECRET_KEY = randomBytes(32).toString('base64');
const SIGNING_SECRET = `whsec_${randomBytes(32).toString('base64url')}`;
const HEADER_SECRET = `Bearer hdr-${randomBytes(12).toString('hex')}`;
const WRONG_KEY = `cyc_live_${randomBytes(20).toString('hex')}`;
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('request logs', () => {
  let redis: TestRedis;
  let server: RunningServer;
  let rx: Receiver;
  const lines: string[] = [];
  const secrets: Record<string, string> = {
    'admin key': ADMIN_KEY,
    'webhook secret key': WEBHOOK_SECRET_KEY,
    'webhook signing secret (sent)': SIGNING_SECRET,
    'webhook header value': HEADER_SECRET,
    'wrong API key': WRONG_KEY,
    'evidence signing seed': fixtureSeedHex(),
  };
  let runtimeUrl: string;
  let adminUrl: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    rx = await new Receiver().start();
    server = await startServer({
      env: {
        REDIS_URL: redis.url, ADMIN_API_KEY: ADMIN_KEY, CYCLES_RUNTIME_PORT: '0', CYCLES_ADMIN_PORT: '0',
        CYCLES_LOG_LEVEL: 'debug', CYCLES_VALIDATE_RESPONSES: '1', CYCLES_SPECS_DIR: process.env.CYCLES_SPECS_DIR ?? '',
        CYCLES_WEBHOOK_SECRET_KEY: WEBHOOK_SECRET_KEY, CYCLES_WEBHOOK_POLL_MS: '20',
        EVIDENCE_SERVER_ID: 'https://cycles.example.com/v1', EVIDENCE_SIGNING_PRIVATE_KEY_HEX: fixtureSeedHex(),
        EVIDENCE_SIGNING_SIGNER_DID: FIXTURE_PUBLIC_KEY,
      },
      logDestination: { write: (s: string) => { lines.push(...s.split('\n').filter(Boolean)); } },
    });
    runtimeUrl = server.urls.runtime!;
    adminUrl = server.urls.admin!;
  });
  afterAll(async () => { await server?.stop(); await redis?.stop(); await rx?.stop(); });

  it('writes one line per request with its fields, and no key material anywhere', async () => {
    const admin = (method: string, path: string, body?: unknown) => call(adminUrl, method, path, { adminKey: ADMIN_KEY, body });
    const tenant = uid('logs');
    expect((await admin('POST', '/v1/admin/tenants', { tenant_id: tenant, name: tenant })).status).toBe(201);
    expect((await admin('POST', '/v1/admin/budgets', { tenant_id: tenant, scope: `tenant:${tenant}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1000 } })).status).toBe(201);
    const created = await admin('POST', '/v1/admin/api-keys', { tenant_id: tenant, name: 'agent' });
    expect(created.status).toBe(201);
    const key = created.body.key_secret as string;
    secrets['tenant API key'] = key;
    // loopback http receivers allowed; a tenant key that manages webhooks
    expect((await admin('PUT', '/v1/admin/config/webhook-security', { blocked_cidr_ranges: ['10.0.0.0/8'], allow_http: true })).status).toBe(200);
    const hooksKey = await admin('POST', '/v1/admin/api-keys', { tenant_id: tenant, name: 'hooks', permissions: ['webhooks:write', 'webhooks:read'] });
    expect(hooksKey.status, hooksKey.text).toBe(201);
    secrets['tenant webhook API key'] = hooksKey.body.key_secret;
    const wh = await call(adminUrl, 'POST', '/v1/webhooks', {
      key: hooksKey.body.key_secret,
      body: { url: rx.endpoint('/hook'), event_types: ['budget.funded'], signing_secret: SIGNING_SECRET, headers: { Authorization: HEADER_SECRET } },
    });
    expect(wh.status, wh.text).toBe(201);
    rx.setSecret('/hook', SIGNING_SECRET);
    // a server-generated signing secret too
    const gen = await admin('POST', `/v1/admin/webhooks?tenant_id=${tenant}`, { url: rx.endpoint('/hook2'), event_types: ['budget.funded'] });
    expect(gen.status, gen.text).toBe(201);
    secrets['webhook signing secret (generated)'] = gen.body.signing_secret;

    const fund = await admin('POST', `/v1/admin/budgets/fund?tenant_id=${tenant}&scope=${encodeURIComponent(`tenant:${tenant}`)}&unit=TOKENS`,
      { operation: 'CREDIT', amount: { unit: 'TOKENS', amount: 5 } });
    expect(fund.status).toBe(200);
    const reserve = await call(runtimeUrl, 'POST', '/v1/reservations', {
      key, headers: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` },
      body: { idempotency_key: uid('k'), subject: { tenant }, action: { kind: 'llm.completion', name: 'm' }, estimate: { unit: 'TOKENS', amount: 10 } },
    });
    expect(reserve.status).toBe(200);
    expect((await call(runtimeUrl, 'GET', `/v1/balances?tenant=${tenant}`, { key: WRONG_KEY })).status).toBe(401);
    expect((await call(adminUrl, 'GET', '/v1/admin/tenants', { adminKey: `${ADMIN_KEY}x` })).status).toBe(401);
    // a key in a body that fails validation (the message must not echo it into a log)
    expect((await admin('POST', '/v1/admin/tenants', { tenant_id: tenant, name: 'x', key_secret: key })).status).toBe(400);
    // both deliveries attempted (signed with the secrets), evidence signed by the worker
    await waitFor(() => rx.at('/hook').length >= 1 && rx.at('/hook2').length >= 1, 15_000, 'webhook deliveries');
    expect(rx.at('/hook')[0].signatureOk).toBe(true);
    expect(rx.at('/hook')[0].headers.authorization).toBe(HEADER_SECRET);
    await waitFor(() => lines.some((l) => l.includes('"operationId":"createReservation"')), 5_000, 'the reserve log line');

    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = parsed.filter((l) => l.msg === 'request');
    const r = requests.find((l) => l.operationId === 'createReservation')!;
    expect(r).toMatchObject({
      level: 30, plane: 'runtime', method: 'POST', route: '/v1/reservations', path: '/v1/reservations',
      status: 200, tenant, trace_id: TRACE,
    });
    expect(typeof r.duration_ms).toBe('number');
    expect(r.request_id).toBe(reserve.headers.get('x-request-id'));
    const fundLine = requests.find((l) => l.operationId === 'fundBudget')!;
    expect(fundLine).toMatchObject({ plane: 'admin', route: '/v1/admin/budgets/fund', status: 200, tenant });
    const denied = requests.find((l) => l.operationId === 'getBalances')!;
    expect(denied).toMatchObject({ status: 401, route: '/v1/balances' });
    expect(denied.tenant).toBeUndefined();
    // one line per request: every response's X-Request-Id appears exactly once
    expect(requests.filter((l) => l.request_id === r.request_id)).toHaveLength(1);

    expect(lines.length).toBeGreaterThan(10);
    const kinds = [...new Set(parsed.map((l) => String(l.msg)))];
    console.log(`${lines.length} log lines (${requests.length} request lines; messages: ${kinds.join(' | ')}) searched for ${Object.keys(secrets).length} secrets`);
    for (const [what, secret] of Object.entries(secrets)) {
      const hits = lines.filter((l) => l.includes(secret));
      expect(hits, `${what} appears in a log line`).toEqual([]);
    }
  });
});
