// Who may see and trigger deliveries: tenant keys reach only their own tenant's
// subscriptions (another tenant's id — or a __system__ one — is 404 exactly like an unknown
// id, and no probe is sent), permissions webhooks:read / webhooks:write, admin-only
// operations refuse tenant keys, and no read or probe response carries the signing secret
// or a custom header value.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, call, type TestServer } from './helpers/server';
import { Receiver, adminApi, allowLoopback, createSub, fundedTenant, waitFor, expectAllStoredEventsValid } from './delivery-helpers';

let s: TestServer;
let rx: Receiver;
let admin: ReturnType<typeof adminApi>;
let subA: { id: string; secret: string };
let subB: { id: string; secret: string };
let subSys: { id: string; secret: string };
let keyA: string;

beforeAll(async () => {
  s = await startTestServer({ CYCLES_WEBHOOK_POLL_MS: '10' });
  rx = await new Receiver().start();
  admin = adminApi(s.adminUrl, s.adminKey);
  await allowLoopback(admin);
  const fundA = await fundedTenant(admin, 'sec-a');
  await fundedTenant(admin, 'sec-b');
  subA = await createSub(admin, rx, { tenant: 'sec-a', path: '/sa', headers: { Authorization: 'Bearer header-secret-value' } });
  subB = await createSub(admin, rx, { tenant: 'sec-b', path: '/sb' });
  subSys = await createSub(admin, rx, { path: '/ssys', event_types: ['budget.funded'] });
  keyA = await s.tenantKey('sec-a', ['webhooks:read', 'webhooks:write']);
  await fundA();
  await waitFor(() => rx.at('/sa').length === 1, 10_000, 'delivery to A');
}, 30_000);
afterAll(async () => { await s?.stop(); await rx?.stop(); });

const asA = (method: string, path: string, body?: unknown, key = keyA) => call(s.adminUrl, method, path, { key, body });

describe('tenant isolation', () => {
  it('a tenant key lists its own subscription\'s deliveries', async () => {
    const r = await asA('GET', `/v1/webhooks/${subA.id}/deliveries`);
    expect(r.status, r.text).toBe(200);
    expect(r.body.deliveries).toHaveLength(1);
    expect(r.body.deliveries[0]).toMatchObject({ subscription_id: subA.id, status: 'SUCCESS' });
  });

  it('another tenant\'s or a __system__ subscription is 404 WEBHOOK_NOT_FOUND, like an unknown id', async () => {
    for (const id of [subB.id, subSys.id, 'whsub_sec-a_0123456789abcdef01234567', 'not-an-id']) {
      const list = await asA('GET', `/v1/webhooks/${id}/deliveries`);
      expect(list.status).toBe(404);
      expect(list.body.error).toBe('WEBHOOK_NOT_FOUND');
      const probe = await asA('POST', `/v1/webhooks/${id}/test`);
      expect(probe.status).toBe(404);
      expect(probe.body.error).toBe('WEBHOOK_NOT_FOUND');
    }
    expect(rx.at('/sb').filter((r) => r.event?.event_type === 'system.webhook_test')).toHaveLength(0);
    expect(rx.at('/ssys').filter((r) => r.event?.event_type === 'system.webhook_test')).toHaveLength(0);
  });

  it('the admin key reaches any subscription through the tenant-plane operations', async () => {
    expect((await admin('GET', `/v1/webhooks/${subB.id}/deliveries`)).status).toBe(200);
    expect((await admin('POST', `/v1/webhooks/${subB.id}/test`)).status).toBe(200);
  });
});

describe('permissions', () => {
  it('listing needs webhooks:read, probing needs webhooks:write', async () => {
    const readOnly = await s.tenantKey('sec-a', ['webhooks:read']);
    const writeOnly = await s.tenantKey('sec-a', ['webhooks:write']);
    const none = await s.tenantKey('sec-a', ['budgets:read']);
    expect((await asA('GET', `/v1/webhooks/${subA.id}/deliveries`, undefined, readOnly)).status).toBe(200);
    expect((await asA('POST', `/v1/webhooks/${subA.id}/test`, undefined, readOnly)).status).toBe(403);
    expect((await asA('GET', `/v1/webhooks/${subA.id}/deliveries`, undefined, writeOnly)).status).toBe(403);
    expect((await asA('POST', `/v1/webhooks/${subA.id}/test`, undefined, writeOnly)).status).toBe(200);
    for (const [m, p] of [['GET', 'deliveries'], ['POST', 'test']]) {
      const r = await asA(m, `/v1/webhooks/${subA.id}/${p}`, undefined, none);
      expect(r.status).toBe(403);
      expect(r.body.error).toBe('INSUFFICIENT_PERMISSIONS');
    }
  });

  it('the admin-plane delivery operations refuse tenant keys', async () => {
    const before = rx.at('/sa').length;
    for (const [m, p, body] of [
      ['GET', `/v1/admin/webhooks/${subA.id}/deliveries`, undefined],
      ['POST', `/v1/admin/webhooks/${subA.id}/test`, undefined],
      ['POST', `/v1/admin/webhooks/${subA.id}/replay`, {}],
    ] as const) {
      const r = await asA(m, p, body);
      expect([401, 403]).toContain(r.status);
    }
    const unauth = await call(s.adminUrl, 'GET', `/v1/admin/webhooks/${subA.id}/deliveries`);
    expect(unauth.status).toBe(401);
    expect(rx.at('/sa').length).toBe(before);
  });
});

describe('secrets stay out of responses', () => {
  it('delivery lists and probe results never carry the signing secret or a header value', async () => {
    const probe = await admin('POST', `/v1/admin/webhooks/${subA.id}/test`);
    expect(probe.status).toBe(200);
    const lists = [await admin('GET', `/v1/admin/webhooks/${subA.id}/deliveries`), await asA('GET', `/v1/webhooks/${subA.id}/deliveries`)];
    for (const r of [probe, ...lists]) {
      expect(r.text).not.toContain(subA.secret);
      expect(r.text).not.toContain('header-secret-value');
    }
    // … while the receiver did get both
    const last = rx.at('/sa').at(-1)!;
    expect(last.signatureOk).toBe(true);
    expect(last.headers.authorization).toBe('Bearer header-secret-value');
  });
});

describe('events', () => {
  it('every event this suite produced is a valid Event', async () => {
    expect(await expectAllStoredEventsValid(s.redis.client)).toBeGreaterThan(0);
  });
});
