// An in-process Cycles server on a private redis-server, with response validation on:
// any response that does not match the spec becomes a 500, so every test that checks a
// status also checks the response schema.
//
// Two instances (CYCLES_TEST_INSTANCES=2, set by npm run test:cluster, or opts.instances):
// two servers on the same Redis, behind one round-robin proxy per plane in the test process,
// so every suite's requests alternate between them — request by request, not connection by
// connection — whatever client it uses (call(), raw fetch, the CLI). `server` stays instance
// A for the tests that reach into internals.
import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startServer, type RunningServer, type Role } from '../../src/server';
import { startTestRedis, TEST_CLUSTER, type TestRedis } from './redis';
import { storeNewKey } from '../../src/auth/apiKeys';
import { DEFAULT_TENANT_PERMISSIONS } from '../../src/auth/permissions';
import { parseJsonBody } from '../../src/json';

export const ADMIN_KEY = 'test-admin-key-0123456789';

/** Server instances per startTestServer() unless the caller says: CYCLES_TEST_INSTANCES (1 or 2). */
export const TEST_INSTANCES = Number(process.env.CYCLES_TEST_INSTANCES || '1');
if (TEST_INSTANCES !== 1 && TEST_INSTANCES !== 2) throw new Error(`CYCLES_TEST_INSTANCES must be 1 or 2, got ${process.env.CYCLES_TEST_INSTANCES}`);

type Plane = 'runtime' | 'admin';

export interface TestServer {
  redis: TestRedis;
  /** instance A (the only one, or the first of two) */
  server: RunningServer;
  /** every instance, A first */
  servers: RunningServer[];
  /** the runtime plane: instance A's own URL, or with two instances the proxy alternating between them */
  runtimeUrl: string;
  adminUrl: string;
  adminKey: string;
  /** requests each instance has been sent through the proxy, per plane (A first); empty with one instance */
  forwarded: Record<Plane, number[]>;
  stop(): Promise<void>;
  /** Creates a tenant API key directly in the store; returns its secret. */
  tenantKey(tenant: string, permissions?: string[], scopeFilter?: string[]): Promise<string>;
}

// hop-by-hop headers (RFC 9110 7.6.1): each leg of the proxy has its own connection. The
// framing (Transfer-Encoding / Content-Length) is kept, so a body goes on as it came.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k)) out[k] = v;
  return out;
}

/** A reverse proxy sending each request to the next of `targets` (round robin): method, path,
 *  headers and body forwarded as they came; status, headers and body back as they came. */
async function roundRobinProxy(targets: string[], counts: number[]): Promise<{ url: string; close(): Promise<void> }> {
  const upstream = targets.map((t) => new URL(t));
  // bounded keep-alive pool per instance, as a load balancer keeps
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let next = 0;
  const server: Server = createServer((req, res) => {
    const i = next++ % upstream.length;
    counts[i]!++;
    const u = upstream[i]!;
    const fwd = httpRequest({
      host: u.hostname, port: u.port, method: req.method, path: req.url, agent,
      headers: endToEnd(req.headers),
    }, (up) => {
      const raw: string[] = [];
      for (let h = 0; h < up.rawHeaders.length; h += 2) {
        if (!HOP.has(up.rawHeaders[h]!.toLowerCase())) raw.push(up.rawHeaders[h]!, up.rawHeaders[h + 1]!);
      }
      res.writeHead(up.statusCode!, up.statusMessage, raw);
      up.pipe(res);
      up.on('error', () => res.destroy());
    });
    fwd.on('error', (e) => {
      if (res.headersSent) { res.destroy(); return; }
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`test proxy: instance ${i} unreachable: ${e.message}`);
    });
    req.pipe(fwd);
    res.on('close', () => { if (!res.writableFinished) fwd.destroy(); });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

export async function startTestServer(
  env: Record<string, string> = {},
  opts: { roles?: Role[]; instances?: 1 | 2 } = {},
): Promise<TestServer> {
  const redis = await startTestRedis();
  const start = () => startServer({
    roles: opts.roles,
    env: {
      REDIS_URL: redis.url,
      ...(TEST_CLUSTER ? { REDIS_CLUSTER: '1' } : {}),
      ADMIN_API_KEY: ADMIN_KEY,
      CYCLES_RUNTIME_PORT: '0',
      CYCLES_ADMIN_PORT: '0',
      CYCLES_VALIDATE_RESPONSES: '1',
      CYCLES_LOG_LEVEL: process.env.CYCLES_LOG_LEVEL ?? 'silent',
      CYCLES_SPECS_DIR: process.env.CYCLES_SPECS_DIR ?? '',
      ...env,
    },
  });
  const n = opts.instances ?? TEST_INSTANCES;
  const servers: RunningServer[] = [];
  const proxies: { close(): Promise<void> }[] = [];
  const forwarded: Record<Plane, number[]> = { runtime: [], admin: [] };
  const urls: Partial<Record<Plane, string>> = {};
  const stopAll = async () => {
    // instances first (their graceful drain answers what is in flight through the proxy)
    await Promise.all(servers.map((s) => s.stop()));
    for (const p of proxies) await p.close();
    await redis.stop();
  };
  try {
    for (let i = 0; i < n; i++) servers.push(await start());
    for (const plane of ['runtime', 'admin'] as const) {
      if (!servers[0]!.urls[plane]) continue;
      if (n === 1) { urls[plane] = servers[0]!.urls[plane]; continue; }
      forwarded[plane] = servers.map(() => 0);
      const p = await roundRobinProxy(servers.map((s) => s.urls[plane]!), forwarded[plane]);
      proxies.push(p);
      urls[plane] = p.url;
    }
  } catch (e) {
    await stopAll().catch(() => {});
    throw e;
  }
  return {
    redis,
    server: servers[0]!,
    servers,
    runtimeUrl: urls.runtime!,
    adminUrl: urls.admin!,
    adminKey: ADMIN_KEY,
    forwarded,
    stop: stopAll,
    async tenantKey(tenant, permissions = DEFAULT_TENANT_PERMISSIONS, scopeFilter = []) {
      const { secret } = await storeNewKey(redis.client, {
        tenant_id: tenant, permissions, scope_filter: scopeFilter, expires_at_ms: 0, name: 'test',
      });
      return secret;
    },
  };
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  /** body parsed losslessly (int64 beyond 2^53 as BigInt) */
  body: any;
  text: string;
}

/** Small fetch wrapper: JSON in, lossless JSON out. */
export async function call(
  baseUrl: string,
  method: string,
  path: string,
  opts: { body?: unknown; rawBody?: string; headers?: Record<string, string>; key?: string; adminKey?: string } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.key) headers['X-Cycles-API-Key'] = opts.key;
  if (opts.adminKey) headers['X-Admin-API-Key'] = opts.adminKey;
  let payload: string | undefined = opts.rawBody;
  if (opts.body !== undefined) {
    payload = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body, (_k, v) => (typeof v === 'bigint' ? `__BIG__${v}` : v)).replace(/"__BIG__(-?\d+)"/g, '$1');
  }
  if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
    headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(baseUrl + path, { method, headers, body: payload });
  const text = await res.text();
  let body: any;
  if (text) {
    try { body = parseJsonBody(text).value; } catch { body = text; }
  }
  return { status: res.status, headers: res.headers, body, text };
}
