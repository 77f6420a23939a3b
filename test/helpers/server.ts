// An in-process Cycles server on a private redis-server, with response validation on:
// any response that does not match the spec becomes a 500, so every test that checks a
// status also checks the response schema.
import { startServer, type RunningServer, type Role } from '../../src/server';
import { startTestRedis, TEST_CLUSTER, type TestRedis } from './redis';
import { storeNewKey } from '../../src/auth/apiKeys';
import { DEFAULT_TENANT_PERMISSIONS } from '../../src/auth/permissions';
import { parseJsonBody } from '../../src/json';

export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface TestServer {
  redis: TestRedis;
  server: RunningServer;
  runtimeUrl: string;
  adminUrl: string;
  adminKey: string;
  stop(): Promise<void>;
  /** Creates a tenant API key directly in the store; returns its secret. */
  tenantKey(tenant: string, permissions?: string[], scopeFilter?: string[]): Promise<string>;
}

export async function startTestServer(env: Record<string, string> = {}, opts: { roles?: Role[] } = {}): Promise<TestServer> {
  const redis = await startTestRedis();
  const server = await startServer({
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
  return {
    redis,
    server,
    runtimeUrl: server.urls.runtime!,
    adminUrl: server.urls.admin!,
    adminKey: ADMIN_KEY,
    async stop() {
      await server.stop();
      await redis.stop();
    },
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
