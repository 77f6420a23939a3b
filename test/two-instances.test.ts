// The two-instance test server (test/helpers/server.ts; CYCLES_TEST_INSTANCES=2 in npm run
// test:cluster): two servers on one Redis behind a round-robin proxy per plane. These cases
// keep the alternation honest — requests, not connections, are split; both instances really
// answer (a stopped one shows up as every other request failing); what goes through one is
// seen through the other; and stop() ends both.
import { Agent, get } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, TEST_INSTANCES, call, startTestServer, type TestServer } from './helpers/server';
import { uid } from './helpers/reservations';

const TRACE = '0af7651916cd43dd8448eb211c80319c';

/** GET over `agent`; whether the request went out on a reused socket, and its status. */
function getVia(agent: Agent, url: string): Promise<{ reused: boolean; status: number }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ reused: req.reusedSocket, status: res.statusCode! }));
    });
    req.on('error', reject);
  });
}

async function refused(url: string): Promise<boolean> {
  return fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) }).then(() => false, () => true);
}

describe('two instances behind one URL per plane', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer({}, { instances: 2 }); }, 60_000);
  afterAll(async () => { await s?.stop(); });

  it('has two instances with their own ports, and the plane URLs are neither', () => {
    expect(s.servers).toHaveLength(2);
    expect(s.server).toBe(s.servers[0]);
    const own = s.servers.flatMap((x) => [x.urls.runtime, x.urls.admin]);
    expect(new Set(own).size).toBe(4);
    expect(own).not.toContain(s.runtimeUrl);
    expect(own).not.toContain(s.adminUrl);
  });

  it('alternates request by request, also on one keep-alive connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = [...s.forwarded.runtime];
      const got = [];
      for (let i = 0; i < 4; i++) got.push(await getVia(agent, `${s.runtimeUrl}/healthz`));
      expect(got.map((g) => g.status)).toEqual([200, 200, 200, 200]);
      expect(got.map((g) => g.reused)).toEqual([false, true, true, true]);
      expect(s.forwarded.runtime.map((n, i) => n - before[i]!)).toEqual([2, 2]);
    } finally {
      agent.destroy();
    }
  });

  it('state written through one instance is read through the other', async () => {
    const before = [...s.forwarded.admin];
    const tenant = uid('ti');
    const created = await call(s.adminUrl, 'POST', '/v1/admin/tenants', { adminKey: ADMIN_KEY, body: { tenant_id: tenant, name: tenant } });
    expect(created.status, created.text).toBe(201);
    for (let i = 0; i < 5; i++) {
      const r = await call(s.adminUrl, 'GET', `/v1/admin/tenants/${tenant}`, { adminKey: ADMIN_KEY });
      expect(r.status, r.text).toBe(200);
      expect(r.body.tenant_id).toBe(tenant);
    }
    expect(s.forwarded.admin.map((n, i) => n - before[i]!)).toEqual([3, 3]);
  });

  it('forwards method, path, query, headers and body, and brings status, headers and body back', async () => {
    const tenant = uid('tj');
    let r = await call(s.adminUrl, 'POST', '/v1/admin/tenants', { adminKey: ADMIN_KEY, body: { tenant_id: tenant, name: tenant } });
    expect(r.status, r.text).toBe(201);
    r = await call(s.adminUrl, 'POST', '/v1/admin/budgets', {
      adminKey: ADMIN_KEY,
      body: { tenant_id: tenant, scope: `tenant:${tenant}`, unit: 'TOKENS', allocated: { unit: 'TOKENS', amount: 1000 } },
    });
    expect(r.status, r.text).toBe(201);
    const key = await s.tenantKey(tenant);
    const reserve = (amount: number) => call(s.runtimeUrl, 'POST', '/v1/reservations', {
      key, headers: { 'X-Cycles-Trace-Id': TRACE },
      body: {
        idempotency_key: uid('k'), subject: { tenant, agent: 'a' }, action: { kind: 'llm.completion', name: 'x' },
        estimate: { unit: 'TOKENS', amount }, metadata: { pad: 'p'.repeat(8_000) },
      },
    });
    const before = [...s.forwarded.runtime];
    const ok = await reserve(600);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.headers.get('x-cycles-trace-id')).toBe(TRACE);
    expect(ok.headers.get('x-cycles-tenant')).toBe(tenant);
    // the other instance sees the first one's reservation: 400 left, not 1000
    const denied = await reserve(600);
    expect(denied.status, denied.text).toBe(409);
    expect(denied.body.error).toBe('BUDGET_EXCEEDED');
    expect(denied.headers.get('x-cycles-trace-id')).toBe(TRACE);
    expect(s.forwarded.runtime.map((n, i) => n - before[i]!)).toEqual([1, 1]);
    const list = await call(s.runtimeUrl, 'GET', `/v1/reservations?tenant=${tenant}&status=ACTIVE`, { key });
    expect(list.status, list.text).toBe(200);
    expect(list.body.reservations).toHaveLength(1);
  });

  it('both instances answer: with B stopped, every other request fails; stop() ends both', async () => {
    await s.servers[1]!.stop();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await call(s.runtimeUrl, 'GET', '/healthz')).status);
    expect(statuses.filter((x) => x === 502)).toHaveLength(3);
    expect(statuses.filter((x) => x === 200)).toHaveLength(3);
    const urls = [s.runtimeUrl, s.adminUrl, s.servers[0]!.urls.runtime!, s.servers[0]!.urls.admin!];
    await s.stop();
    for (const u of urls) expect(await refused(u), u).toBe(true);
    s = undefined as unknown as TestServer;
  });
});

// In npm run test:cluster every suite runs on two instances: the default must follow the env.
describe.runIf(TEST_INSTANCES === 2)('CYCLES_TEST_INSTANCES=2', () => {
  it('startTestServer() starts two instances and splits both planes', async () => {
    const s = await startTestServer();
    try {
      expect(s.servers).toHaveLength(2);
      for (let i = 0; i < 4; i++) {
        expect((await call(s.runtimeUrl, 'GET', '/healthz')).status).toBe(200);
        expect((await call(s.adminUrl, 'GET', '/healthz')).status).toBe(200);
      }
      expect(s.forwarded).toEqual({ runtime: [2, 2], admin: [2, 2] });
    } finally {
      await s.stop();
    }
  }, 60_000);
});
