// Assembles a running server: Redis (given or embedded), both planes, workers, and a
// clean shutdown that also stops an embedded redis-server.
import { createExpressServer } from './http/expressServer';
import { installClientErrorHandler } from './http/clientError';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { readOrCreateKeyFile } from './store/keyFile';
import path from 'node:path';
import { Redis } from 'ioredis';
import { clusterFromUrl, isCluster, patchCluster } from './store/cluster';
import { loadConfig, MIN_ADMIN_KEY_CHARS, type Config, type Plane } from './config';
import { createLogger } from './log';
import { createPlaneApp } from './http/app';
import { loadHandlers } from './handlers';
import { Authenticator } from './auth/authenticate';
import { ApiKeyCache } from './auth/keyCache';
import { startRedisServer } from './store/redisProcess';
import { startWorkers, type Workers } from './workers';
import { configureSignals, createSignalObserver, watchStoreConnection } from './events/signals';
import type { Deps, ResponseInfo } from './http/types';
import { createAuditRecorder } from './admin/audit';
import { configureMetrics, createMetricsEndpoint, observeResponse } from './metrics';

/** Set by the cluster primary for its workers when it started the embedded redis-server. */
export const EMBEDDED_REDIS_ENV = 'CYCLES_EMBEDDED_REDIS';

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
  /** one-line start-up warnings (short ADMIN_API_KEY); default: announce */
  warn?: (line: string) => void;
  /** where the JSON log lines go (default stdout; tests capture them) */
  logDestination?: { write(line: string): void };
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const config = loadConfig(opts.env ?? process.env);
  configureSignals(config.signals);
  configureMetrics(config.metrics);
  const env = opts.env ?? process.env;
  const log = createLogger(config.logLevel, opts.logDestination);
  const announce = opts.announce ?? (() => {});
  const roles = new Set<Role>(opts.roles ?? ['runtime', 'admin', 'worker']);

  const adminApiKey = resolveAdminKey(config, announce, opts.warn ?? announce);
  if (config.evidence?.ephemeral) {
    (opts.warn ?? announce)(`WARNING: CyclesEvidence signs with an EPHEMERAL key (EVIDENCE_ALLOW_EPHEMERAL_SIGNING_KEY): envelopes from this process stop verifying once it exits. Development only; configure EVIDENCE_SIGNING_PRIVATE_KEY_HEX or _FILE (npx cycles evidence keygen).`);
    log.warn({ public_key: config.evidence.publicKeyHex }, 'evidence: ephemeral signing key');
  }

  const cleanups: (() => Promise<void>)[] = [];
  /** graceful close of each plane's HTTP server (stop()); cleanups hold the abrupt close */
  const drains: (() => Promise<void>)[] = [];
  try {
    let redisUrl = config.redisUrl;
    const embeddedRedis = !redisUrl || env[EMBEDDED_REDIS_ENV] === '1';
    if (!redisUrl) {
      const embedded = await startEmbeddedRedis(config, announce);
      cleanups.unshift(() => embedded.stop());
      redisUrl = embedded.url;
    }
    const redis = await connectRedis(redisUrl, config.redisConnectTimeoutMs, config.redisCluster);
    // From here on ioredis reconnects on its own; an outage shows in /readyz and as 500s,
    // not as an unhandled 'error' event.
    redis.on('error', (e) => log.warn({ err: e }, 'redis connection error'));
    cleanups.unshift(async () => { await redis.quit().catch(() => redis.disconnect()); });
    // system.store_connection_lost/restored, written once the connection is back (DV37)
    const storeWatch = watchStoreConnection(redis, log);
    cleanups.unshift(async () => storeWatch.stop());

    const deps: Deps = { redis, config, log };
    let keyCache: ApiKeyCache | undefined;
    if (config.authCache && (roles.has('runtime') || roles.has('admin'))) {
      const cache = new ApiKeyCache(redis, log);
      cleanups.unshift(() => cache.stop());
      // its two extra connections get the same bound as the first one
      await bounded(cache.start(), config.redisConnectTimeoutMs,
        `cannot start the API key cache's Redis connections at ${maskRedisUrl(redisUrl)}: timed out after ${config.redisConnectTimeoutMs} ms (CYCLES_REDIS_CONNECT_TIMEOUT_MS)`);
      keyCache = cache;
    }
    const authenticator = new Authenticator(redis, adminApiKey, keyCache);
    const isReady = async () => (await withTimeout(redis.ping(), 1000)) === 'PONG';

    const urls: Partial<Record<Plane, string>> = {};
    // auth-failure rate and p99 latency of this process's requests, flushed periodically (DV35, DV36)
    const signals = roles.has('runtime') || roles.has('admin') ? createSignalObserver(redis, config.signals, log) : undefined;
    if (signals) cleanups.unshift(() => signals.stop());
    for (const plane of ['runtime', 'admin'] as const) {
      if (!roles.has(plane)) continue;
      // Audit: every admin-plane request; on the runtime only admin-key releaseReservation.
      const audit = createAuditRecorder({ redis, config, log, adminKey: adminApiKey });
      const hooks = [audit, ...(signals ? [signals.onResponse] : []), ...(config.metrics ? [observeResponse] : [])];
      const onResponse = (info: ResponseInfo) => {
        for (const h of hooks) {
          try { h(info); } catch (e) { log.error({ err: e, request_id: info.requestId }, 'onResponse hook failed'); }
        }
      };
      // GET /metrics on the admin port only (docs/decisions.md DO3)
      const mount = plane === 'admin' && config.metrics
        ? createMetricsEndpoint(redis, config, log, { embeddedRedis }).mount
        : undefined;
      const app = await createPlaneApp({ plane, deps, handlers: await loadHandlers(plane), authenticator, isReady, onResponse, mount });
      const server = createExpressServer(app);
      installClientErrorHandler(server, log, plane);
      server.keepAliveTimeout = 65_000;
      const port = plane === 'runtime' ? config.runtimePort : config.adminPort;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(listenError(plane, port, config.host, e)));
        server.listen(port, config.host, () => resolve());
      });
      const addr = server.address();
      const actualPort = typeof addr === 'object' && addr ? addr.port : port;
      urls[plane] = `http://${config.host}:${actualPort}`;
      const drain = trackInFlight(server);
      drains.push(() => drain(config.shutdownTimeoutMs).then((cut) => {
        if (cut) log.warn({ plane, cut, timeout_ms: config.shutdownTimeoutMs }, 'shutdown: requests still in flight at the deadline; connections closed (CYCLES_SHUTDOWN_TIMEOUT_MS)');
      }));
      // a failed start after this point: close at once
      cleanups.unshift(() => drain(0).then(() => {}));
      announce(`${plane} plane listening on ${urls[plane]}`);
    }

    let workers: Workers | undefined;
    if (roles.has('worker')) workers = startWorkers(deps);

    let stopped = false;
    return {
      config, deps, urls, adminApiKey,
      async stop() {
        if (stopped) return;
        stopped = true;
        // Graceful (decision DB1): both planes stop accepting at once and their in-flight
        // requests finish (bounded by CYCLES_SHUTDOWN_TIMEOUT_MS) while the workers finish
        // their current unit of work; Redis and an embedded redis-server go last, since
        // both still serve the requests being drained.
        const step = (p: Promise<void>) => p.catch((e) => log.warn({ err: e }, 'shutdown step failed'));
        await Promise.all([...drains.map((d) => step(d())), ...(workers ? [step(workers.stop())] : [])]);
        for (const c of cleanups) await step(c());
      },
    };
  } catch (e) {
    for (const c of cleanups) await c().catch(() => {});
    throw e;
  }
}

/**
 * Tracks the server's requests in flight and returns its graceful close: stop listening (new
 * connections are refused), close idle keep-alive connections, answer the requests in flight
 * with `Connection: close` (and any that arrive on an open connection meanwhile), and once
 * `timeoutMs` passes cut whatever is left. Resolves with how many requests were cut.
 */
export function trackInFlight(server: Server): (timeoutMs: number) => Promise<number> {
  const inFlight = new Set<ServerResponse>();
  let draining = false;
  // listeners run in order: this one was added after the app's, so it sees the request
  // after express did; only headers not yet sent can still be changed
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (draining && !res.headersSent) res.setHeader('Connection', 'close');
    if (res.writableFinished) return;
    inFlight.add(res);
    res.once('close', () => {
      inFlight.delete(res);
      // the socket is idle now; closeIdleConnections would not see it while draining otherwise
      if (draining) server.closeIdleConnections();
    });
  });
  let done: Promise<number> | undefined;
  return (timeoutMs) => (done ??= new Promise<number>((resolve) => {
    draining = true;
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    const timer = setTimeout(() => {
      const cut = inFlight.size;
      server.closeAllConnections();
      resolve(cut);
    }, timeoutMs);
    server.close(() => {
      clearTimeout(timer);
      resolve(0);
    });
    server.closeIdleConnections();
  }));
}

/** File under CYCLES_DATA_DIR holding the development admin key between starts. */
export const DEV_ADMIN_KEY_FILE = 'admin-api-key';

/**
 * ADMIN_API_KEY (loadConfig refuses a short one in production; here it only warns), or in
 * development a key kept in $CYCLES_DATA_DIR/admin-api-key: generated on the first start,
 * reused on later ones (the tenants and keys it administers persist there too), announced
 * at every start.
 */
export function resolveAdminKey(config: Config, announce: (line: string) => void, warn: (line: string) => void = announce): string {
  if (config.adminApiKey) {
    const n = config.adminApiKey.length;
    if (n < MIN_ADMIN_KEY_CHARS) {
      warn(`WARNING: ADMIN_API_KEY is only ${n} characters; use at least ${MIN_ADMIN_KEY_CHARS} (NODE_ENV=production refuses shorter keys)`);
    }
    return config.adminApiKey;
  }
  if (config.production) {
    throw new Error('ADMIN_API_KEY is required when NODE_ENV=production; refusing to start');
  }
  const { key, file, created } = devAdminKey(config.dataDir, warn);
  const rotate = 'to rotate it, delete that file or set ADMIN_API_KEY';
  announce(created
    ? `DEVELOPMENT MODE: no ADMIN_API_KEY set; generated an admin key and saved it in ${file} (reused on later starts; ${rotate}):\n  ADMIN_API_KEY=${key}`
    : `DEVELOPMENT MODE: no ADMIN_API_KEY set; reusing the admin key saved in ${file} (${rotate}):\n  ADMIN_API_KEY=${key}`);
  return key;
}

function devAdminKey(dataDir: string, warn: (line: string) => void): { key: string; file: string; created: boolean } {
  const file = path.join(dataDir, DEV_ADMIN_KEY_FILE);
  const { key, created } = readOrCreateKeyFile(dataDir, {
    file,
    what: 'the development admin key',
    parse(text) {
      if (!/^[\x21-\x7e]+$/.test(text) || text.length < MIN_ADMIN_KEY_CHARS) {
        throw new Error(`${file} does not hold an admin key (one line of at least ${MIN_ADMIN_KEY_CHARS} printable characters); delete it to generate a new one, or set ADMIN_API_KEY`);
      }
      const mode = statSync(file).mode & 0o777;
      if (mode & 0o077) warn(`WARNING: ${file} is readable by other users (mode ${mode.toString(8)}); chmod 600 it`);
      return text;
    },
    generate() {
      const k = `cyc_admin_${randomBytes(24).toString('base64url')}`;
      return { key: k, text: k };
    },
  });
  return { key, file, created };
}

/** The private redis-server used when no REDIS_URL is given. */
export async function startEmbeddedRedis(config: Config, announce: (line: string) => void) {
  const dataDir = path.join(config.dataDir, 'redis');
  const embedded = await startRedisServer({ dataDir, port: 0 });
  announce(`No REDIS_URL: started an embedded redis-server on ${embedded.url} (AOF on, data in ${dataDir})`);
  return embedded;
}

/** ms elapsed without an answer (kept apart from errors the connection reported). */
class StartTimeout extends Error {}

/**
 * Connects to Redis and waits for the first PING, all within `timeoutMs`. The first error
 * ioredis reports (refused, reset, DNS, TLS, AUTH) fails the start at once instead of
 * retrying: at start a wrong URL is far likelier than a blip, and a supervisor restarts us.
 * On failure the client is disconnected so nothing keeps the process alive.
 */
export async function connectRedis(url: string, timeoutMs: number, cluster?: boolean): Promise<Redis> {
  const started = Date.now();
  const redis = cluster
    ? patchCluster(clusterFromUrl(url))
    : new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 2, lazyConnect: true });
  let firstError: Error | undefined;
  let failNow: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => { failNow = reject; });
  const onError = (e: Error) => {
    firstError ??= e;
    failNow(e);
  };
  redis.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StartTimeout()), timeoutMs);
  });
  try {
    const pong = await Promise.race([redis.connect().then(() => redis.ping()), failed, timedOut]);
    if (pong !== 'PONG') throw new Error(`unexpected reply to PING: ${String(pong)}`);
    if (cluster === undefined && !isCluster(redis)) {
      // REDIS_CLUSTER unset: a cluster node says cluster_enabled:1 (docs/decisions.md DK2)
      // a server that refuses INFO (renamed on some managed services) is taken as a single one
      const info = await Promise.race([redis.info('cluster').catch(() => ''), failed, timedOut]);
      if (/cluster_enabled:1/.test(String(info))) {
        redis.off('error', onError);
        redis.disconnect();
        return await connectRedis(url, Math.max(100, timeoutMs - (Date.now() - started)), true);
      }
    }
    redis.off('error', onError);
    return redis;
  } catch (e) {
    redis.on('error', () => {}); // late errors of the abandoned connection
    redis.disconnect();
    // a peer that never answers may never close either; do not wait for its FIN
    (redis.stream as { destroy?: () => void } | undefined)?.destroy?.();
    const cause = e instanceof StartTimeout ? e : (firstError ?? e);
    throw new Error(`cannot connect to Redis at ${maskRedisUrl(url)}: ${describeRedisFailure(cause, url, timeoutMs)}`);
  } finally {
    clearTimeout(timer);
  }
}

function describeRedisFailure(e: unknown, url: string, timeoutMs: number): string {
  if (e instanceof StartTimeout) {
    return `timed out: no answer within ${timeoutMs} ms (is it a Redis server, and does it expect TLS, ` +
      'i.e. rediss://, or not? CYCLES_REDIS_CONNECT_TIMEOUT_MS sets this bound)';
  }
  const err = e as NodeJS.ErrnoException;
  const message = err?.message ?? String(e);
  const code = typeof err?.code === 'string' ? err.code : undefined;
  const text = !code ? message : message.includes(code) ? code : `${code}: ${message}`;
  const plain = !/^rediss:/i.test(url);
  if (code === 'ECONNREFUSED') return `${text} (nothing accepts connections there)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `${text} (unknown host name)`;
  if (plain && (code === 'ECONNRESET' || code === 'EPIPE' || message === 'Connection is closed.')) {
    return `${text} (the server closed the connection; if it only accepts TLS, use rediss://)`;
  }
  if (code && /CERT|SELF_SIGNED|ERR_TLS|UNABLE_TO/.test(code)) {
    return `${text} (the server's TLS certificate is not trusted for this host; NODE_EXTRA_CA_CERTS=<ca.pem> adds a CA)`;
  }
  if (/^(WRONGPASS|NOAUTH)/.test(message)) return `${message} (check the user and password in REDIS_URL)`;
  return text;
}

/** REDIS_URL for messages: the password (or a lone user part, often a password typed without ':') as ****. */
export function maskRedisUrl(raw: string): string {
  // read it as ioredis does: `host:port` and `//host` mean redis://, `/path` is a socket
  const prefix = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? '' : raw.startsWith('//') ? 'redis:' : raw.startsWith('/') ? undefined : 'redis://';
  if (prefix === undefined) return raw.replace(/([?&]password=)[^&]*/i, '$1****');
  let u: URL;
  try {
    u = new URL(prefix + raw);
  } catch {
    return raw.replace(/^([^@]*\/\/)?[^/@]*@/, '$1****@');
  }
  if (u.password) u.password = '****';
  else if (u.username) u.username = '****';
  if (u.searchParams.has('password')) u.searchParams.set('password', '****');
  return u.toString().slice(prefix.length);
}

/** A plane's listen error, naming the variable that sets the port or address. */
function listenError(plane: Plane, port: number, host: string, e: NodeJS.ErrnoException): Error {
  const portVar = plane === 'runtime' ? 'CYCLES_RUNTIME_PORT' : 'CYCLES_ADMIN_PORT';
  switch (e.code) {
    case 'EADDRINUSE': return new Error(`${plane} plane: port ${port} is in use (set ${portVar})`);
    case 'EACCES': return new Error(`${plane} plane: no permission to listen on port ${port} (ports below 1024 need privileges; set ${portVar})`);
    case 'EADDRNOTAVAIL': return new Error(`${plane} plane: ${host} is not an address of this machine (set CYCLES_HOST)`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN': return new Error(`${plane} plane: cannot resolve host ${host} (set CYCLES_HOST)`);
    default: return new Error(`${plane} plane: cannot listen on ${host}:${port}: ${e.message}`);
  }
}

/** `p`, or a rejection with `message` after `ms` (the timer never outlives the race). */
async function bounded<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);
}
