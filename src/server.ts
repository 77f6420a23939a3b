// Assembles a running server: Redis (given or embedded), both planes, workers, and a
// clean shutdown that also stops an embedded redis-server.
import { createExpressServer } from './http/expressServer';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig, type Config, type Plane } from './config';
import { createLogger } from './log';
import { createPlaneApp } from './http/app';
import { loadHandlers } from './handlers';
import { Authenticator } from './auth/authenticate';
import { ApiKeyCache } from './auth/keyCache';
import { startRedisServer } from './store/redisProcess';
import { startWorkers, type Workers } from './workers';
import type { Deps } from './http/types';
import { createAuditRecorder } from './admin/audit';

export type Role = Plane | 'worker';

export interface RunningServer {
  config: Config;
  deps: Deps;
  urls: Partial<Record<Plane, string>>;
  adminApiKey: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  roles?: Role[];
  /** print the generated development admin key (CLI only) */
  announce?: (line: string) => void;
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const config = loadConfig(opts.env ?? process.env);
  const log = createLogger(config.logLevel);
  const announce = opts.announce ?? (() => {});
  const roles = new Set<Role>(opts.roles ?? ['runtime', 'admin', 'worker']);

  const adminApiKey = resolveAdminKey(config, announce);

  const cleanups: (() => Promise<void>)[] = [];
  try {
    let redisUrl = config.redisUrl;
    if (!redisUrl) {
      const embedded = await startEmbeddedRedis(config, announce);
      cleanups.unshift(() => embedded.stop());
      redisUrl = embedded.url;
    }
    const redis = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2, lazyConnect: true });
    // ioredis reconnects on its own; an outage shows in /readyz and as 500s, not as an
    // unhandled 'error' event.
    redis.on('error', (e) => log.warn({ err: e }, 'redis connection error'));
    await redis.connect();
    cleanups.unshift(async () => { await redis.quit().catch(() => redis.disconnect()); });

    const deps: Deps = { redis, config, log };
    let keyCache: ApiKeyCache | undefined;
    if (config.authCache && (roles.has('runtime') || roles.has('admin'))) {
      keyCache = new ApiKeyCache(redis, log);
      await keyCache.start();
      const started = keyCache;
      cleanups.unshift(() => started.stop());
    }
    const authenticator = new Authenticator(redis, adminApiKey, keyCache);
    const isReady = async () => (await withTimeout(redis.ping(), 1000)) === 'PONG';

    const urls: Partial<Record<Plane, string>> = {};
    for (const plane of ['runtime', 'admin'] as const) {
      if (!roles.has(plane)) continue;
      // Audit: every admin-plane request; on the runtime only admin-key releaseReservation.
      const onResponse = createAuditRecorder({ redis, config, log, adminKey: adminApiKey });
      const app = await createPlaneApp({ plane, deps, handlers: await loadHandlers(plane), authenticator, isReady, onResponse });
      const server = createExpressServer(app);
      server.keepAliveTimeout = 65_000;
      const port = plane === 'runtime' ? config.runtimePort : config.adminPort;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, config.host, () => resolve());
      });
      const addr = server.address();
      const actualPort = typeof addr === 'object' && addr ? addr.port : port;
      urls[plane] = `http://${config.host}:${actualPort}`;
      cleanups.unshift(() => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }));
      announce(`${plane} plane listening on ${urls[plane]}`);
    }

    if (roles.has('worker')) {
      const workers: Workers = startWorkers(deps);
      cleanups.unshift(() => workers.stop());
    }

    let stopped = false;
    return {
      config, deps, urls, adminApiKey,
      async stop() {
        if (stopped) return;
        stopped = true;
        for (const c of cleanups) await c().catch((e) => log.warn({ err: e }, 'shutdown step failed'));
      },
    };
  } catch (e) {
    for (const c of cleanups) await c().catch(() => {});
    throw e;
  }
}

/** ADMIN_API_KEY, or (development only) a generated key announced once. */
export function resolveAdminKey(config: Config, announce: (line: string) => void): string {
  if (config.adminApiKey) return config.adminApiKey;
  if (config.production) {
    throw new Error('ADMIN_API_KEY is required when NODE_ENV=production; refusing to start');
  }
  const key = `cyc_admin_${randomBytes(24).toString('base64url')}`;
  announce(`DEVELOPMENT MODE: no ADMIN_API_KEY set; generated one for this run (shown once):\n  ADMIN_API_KEY=${key}`);
  return key;
}

/** The private redis-server used when no REDIS_URL is given. */
export async function startEmbeddedRedis(config: Config, announce: (line: string) => void) {
  const dataDir = path.join(config.dataDir, 'redis');
  const embedded = await startRedisServer({ dataDir, port: 0 });
  announce(`No REDIS_URL: started an embedded redis-server on ${embedded.url} (AOF on, data in ${dataDir})`);
  return embedded;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);
}
