// Configuration comes only from environment variables (documented in README's table),
// validated once at start so a typo fails loudly instead of running with a default.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSignalConfig, type SignalConfig } from './events/signals/config';
import { loadEvidenceIdentity, type EvidenceIdentity } from './evidence/keys';
import { checkoutRoot } from './buildInfo';

/** The root of the running code: the checkout, or a build of it (dist/, src/buildInfo.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export type Plane = 'runtime' | 'admin';

export interface Config {
  redisUrl: string | undefined;
  /** bound on connecting to Redis and its first PING at start (ioredis reconnects on its own later) */
  redisConnectTimeoutMs: number;
  /** REDIS_CLUSTER: true = Redis Cluster, false = one server, undefined = detect (INFO cluster) */
  redisCluster: boolean | undefined;
  adminApiKey: string | undefined;
  runtimePort: number;
  adminPort: number;
  host: string;
  specsDir: string;
  features: Set<string>;
  production: boolean;
  dataDir: string;
  bodyLimitBytes: number;
  /** validate every response against the spec and fail loudly (tests, conformance) */
  validateResponses: boolean;
  logLevel: string;
  sweepIntervalMs: number;
  /** server processes sharing the ports (`cycles serve` only; src/cluster.ts) */
  httpProcesses: number;
  /** in-process API key cache kept coherent by Redis client tracking */
  authCache: boolean;
  /** audit rows of authenticated callers (incl. __admin__) are kept this many days; 0 = forever */
  auditRetentionDays: number;
  /** audit rows of the __unauth__ stream (failed pre-auth) are kept this many days; 0 = forever */
  auditUnauthRetentionDays: number;
  /** operator-declared custom.* action kinds (CYCLES_CUSTOM_ACTION_KINDS, `kind=risk_class,...`) */
  customActionKinds: { kind: string; risk_class: string }[];
  /** requests per minute per client IP on the public action-kind registry (429 above; 0 = off) */
  actionKindsRateLimitPerMinute: number;
  /** share of OBSERVE-mode ALLOWs that emit reservation.observed_allowed (0 < r <= 1; docs/decisions.md DG10) */
  observeAllowSampleRate: number;
  /** CyclesEvidence signing identity (EVIDENCE_* variables, src/evidence/keys.ts); undefined = evidence off */
  evidence?: EvidenceIdentity;
  /** requests per minute per client IP to GET /v1/evidence/{id} (429 above; 0 = off) */
  evidenceRateLimitPerMinute: number;
  /** derived signals: thresholds, windows, rate limits (CYCLES_SIGNAL_*; src/events/signals/config.ts) */
  signals: SignalConfig;
  /** events stay in the outboxes and indexes this many days (time-based trim by the relay) */
  eventRetentionDays: number;
  /** the event relay's full sweep over every tenant outbox (safety net behind the
   *  keyspace notifications that wake it on every XADD; src/events/relay.ts) */
  eventRelaySweepMs: number;
  /** AES-256-GCM key for webhook signing secrets and header values at rest
   *  (CYCLES_WEBHOOK_SECRET_KEY, base64 of 32 bytes); undefined = the key kept in the data
   *  dir (src/events/secretBox.ts; refused in production, decision DV13) */
  webhookSecretKey: Buffer | undefined;
  /** webhook delivery rows (and their per-subscription index) are kept this many days */
  webhookDeliveryRetentionDays: number;
  /** bound on one webhook delivery attempt or test probe: connect + response headers + body */
  webhookTimeoutMs: number;
  /** webhook POSTs in flight per worker process (all subscriptions together) */
  webhookConcurrency: number;
  /** webhook POSTs in flight per subscription (1 = strictly in order) */
  webhookSubscriptionConcurrency: number;
  /** dispatcher poll interval when idle (fan-out in the same process wakes it at once) */
  webhookPollMs: number;
  /** dispatcher lease on a subscription's queue; a crashed worker's work is retaken after it */
  webhookLeaseMs: number;
  /** replayEvents scans at most this many candidate events in the window (more: 400) */
  webhookReplayScanLimit: number;
  /** signed envelopes stay in Redis this many days (CYCLES_EVIDENCE_RETENTION_DAYS); 0 = forever */
  evidenceRetentionDays: number;
  /** Prometheus metrics: counted, and served at GET /metrics on the admin plane (CYCLES_METRICS, default on) */
  metrics: boolean;
  /** an evidence source entry read by a worker that has not acknowledged it within this
   *  long is taken over by another (a crashed worker's entries; src/evidence/worker.ts) */
  evidenceClaimIdleMs: number;
  /** on SIGTERM/SIGINT: in-flight requests get this long to finish before their connections
   *  are cut (CYCLES_SHUTDOWN_TIMEOUT_MS; src/server.ts, decision DB1) */
  shutdownTimeoutMs: number;
  /** finished reservations (with their commit/release replay) and their created-at index
   *  entries stay this long, counted from created_at (CYCLES_RESERVATION_RETENTION_DAYS;
   *  decision DX1) */
  reservationRetentionMs: number;
  /** createEvent records and their created-at index entries stay this long
   *  (CYCLES_CREATE_EVENT_RETENTION_DAYS) */
  createEventRetentionMs: number;
  /** cold export directory (CYCLES_EXPORT_DIR): set ⇒ the export job runs in the worker role
   *  and every writer HOLDS its records (no TTL, no index trim past the exported days) until
   *  the job has exported their day (src/export/, decision DX3); every process of a
   *  deployment needs the same setting */
  exportDir: string | undefined;
  /** how often the export job looks for closed days to export (CYCLES_EXPORT_INTERVAL_MS) */
  exportIntervalMs: number;
}

const RISK_CLASSES = ['read_only', 'local_mutation', 'side_effect', 'external_side_effect', 'high_risk'];
const CUSTOM_KIND_RE = /^custom\.[a-z0-9_-]+\.[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;

/** `custom.acme.erp.post=external_side_effect, custom.acme.sap.query=read_only` */
function customKinds(raw: string | undefined): { kind: string; risk_class: string }[] {
  const out: { kind: string; risk_class: string }[] = [];
  for (const part of (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const [kind, risk] = part.split('=').map((s) => s.trim());
    if (!CUSTOM_KIND_RE.test(kind ?? '') || kind.length > 64) {
      throw new Error(`CYCLES_CUSTOM_ACTION_KINDS: "${kind}" must look like custom.<org>.<operation>[.<qualifier>] (≤ 64 chars)`);
    }
    if (!RISK_CLASSES.includes(risk ?? '')) {
      throw new Error(`CYCLES_CUSTOM_ACTION_KINDS: ${kind} needs =<risk_class> (one of ${RISK_CLASSES.join(', ')})`);
    }
    out.push({ kind, risk_class: risk });
  }
  return out;
}

function sampleRate(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return 1;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0 || v > 1) throw new Error(`CYCLES_OBSERVE_ALLOW_SAMPLE_RATE must be a number in (0, 1], got "${raw}"`);
  return v;
}

function int(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new Error(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function onOff(name: string, raw: string | undefined, def: boolean): boolean {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === '') return def;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new Error(`${name} must be 1 or 0 (true or false), got "${raw}"`);
}

/** CYCLES_WEBHOOK_SECRET_KEY: base64 (or base64url) of exactly 32 bytes. Production needs
 *  it (checked only once ADMIN_API_KEY is set, so the admin key's message comes first). */
function webhookSecretKey(env: NodeJS.ProcessEnv): Buffer | undefined {
  const raw = (env.CYCLES_WEBHOOK_SECRET_KEY ?? '').trim();
  if (raw === '') {
    if (env.NODE_ENV === 'production' && env.ADMIN_API_KEY) {
      throw new Error('CYCLES_WEBHOOK_SECRET_KEY is required when NODE_ENV=production (base64 of 32 random bytes, e.g. `openssl rand -base64 32`); refusing to start');
    }
    return undefined;
  }
  const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(raw) ? Buffer.from(raw, raw.includes('-') || raw.includes('_') ? 'base64url' : 'base64') : Buffer.alloc(0);
  if (key.length !== 32) {
    throw new Error(`CYCLES_WEBHOOK_SECRET_KEY must be base64 of exactly 32 bytes (got ${key.length === 0 ? 'no valid base64' : `${key.length} bytes`}); e.g. \`openssl rand -base64 32\``);
  }
  return key;
}

/** Shorter admin keys are refused in production and warned about in development (src/server.ts). */
export const MIN_ADMIN_KEY_CHARS = 32;

/** ADMIN_API_KEY; in production at least MIN_ADMIN_KEY_CHARS (its absence is refused by resolveAdminKey). */
function adminApiKey(env: NodeJS.ProcessEnv): string | undefined {
  const key = env.ADMIN_API_KEY || undefined;
  if (key && key.length < MIN_ADMIN_KEY_CHARS && env.NODE_ENV === 'production') {
    throw new Error(`ADMIN_API_KEY is ${key.length} characters; NODE_ENV=production requires at least ${MIN_ADMIN_KEY_CHARS} (e.g. \`openssl rand -base64 32\`); refusing to start`);
  }
  return key;
}

/** CYCLES_SPECS_DIR, default ../shared/specs/cycles-protocol beside the repository (beside
 *  the checkout a build was made from, when running a build). */
export function specsDirFrom(env: NodeJS.ProcessEnv): string {
  return env.CYCLES_SPECS_DIR || path.resolve(checkoutRoot(REPO_ROOT), '..', 'shared', 'specs', 'cycles-protocol');
}

const DAY_MS = 86_400_000;

/** CYCLES_TEST_RETENTION_MS: test-only override of the reservation and createEvent
 *  retention in milliseconds (retention tests cannot wait 90 days); refused in production. */
function testRetentionMs(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.CYCLES_TEST_RETENTION_MS;
  if (raw === undefined || raw === '') return undefined;
  if (env.NODE_ENV === 'production') throw new Error('CYCLES_TEST_RETENTION_MS is for tests only; refusing to start with NODE_ENV=production');
  return int('CYCLES_TEST_RETENTION_MS', raw, 0, 1, 365 * DAY_MS);
}

/** '1'/'true' → true, '0'/'false' → false, unset or '' → undefined. */
function bool01(name: string, v: string | undefined): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new Error(`${name} must be 1 or 0, got ${JSON.stringify(v)}`);
}

const KNOWN_FEATURES = new Set(['v0.1.26']);

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const features = new Set(
    (env.CYCLES_FEATURES ?? '').split(',').map((s) => s.trim()).filter(Boolean),
  );
  for (const f of features) {
    if (!KNOWN_FEATURES.has(f)) throw new Error(`CYCLES_FEATURES: unknown feature "${f}" (known: ${[...KNOWN_FEATURES].join(', ')})`);
  }
  return {
    redisUrl: env.REDIS_URL || undefined,
    redisCluster: bool01('REDIS_CLUSTER', env.REDIS_CLUSTER),
    redisConnectTimeoutMs: int('CYCLES_REDIS_CONNECT_TIMEOUT_MS', env.CYCLES_REDIS_CONNECT_TIMEOUT_MS, 10_000, 100, 600_000),
    adminApiKey: adminApiKey(env),
    runtimePort: int('CYCLES_RUNTIME_PORT', env.CYCLES_RUNTIME_PORT, 7878, 0, 65535),
    adminPort: int('CYCLES_ADMIN_PORT', env.CYCLES_ADMIN_PORT, 7979, 0, 65535),
    host: env.CYCLES_HOST || '127.0.0.1',
    specsDir: specsDirFrom(env),
    features,
    production: env.NODE_ENV === 'production',
    dataDir: path.resolve(env.CYCLES_DATA_DIR || path.join(process.cwd(), 'data')),
    bodyLimitBytes: int('CYCLES_BODY_LIMIT_BYTES', env.CYCLES_BODY_LIMIT_BYTES, 1024 * 1024, 1024, 64 * 1024 * 1024),
    validateResponses: env.CYCLES_VALIDATE_RESPONSES === '1' || env.CYCLES_VALIDATE_RESPONSES === 'true',
    logLevel: env.CYCLES_LOG_LEVEL || (env.NODE_ENV === 'test' ? 'silent' : 'info'),
    authCache: env.CYCLES_AUTH_CACHE !== '0' && env.CYCLES_AUTH_CACHE !== 'false',
    sweepIntervalMs: int('CYCLES_SWEEP_INTERVAL_MS', env.CYCLES_SWEEP_INTERVAL_MS, 1000, 50, 600000),
    httpProcesses: int('CYCLES_HTTP_PROCESSES', env.CYCLES_HTTP_PROCESSES, 1, 1, 64),
    auditRetentionDays: int('CYCLES_AUDIT_RETENTION_DAYS', env.CYCLES_AUDIT_RETENTION_DAYS, 400, 0, 36500),
    auditUnauthRetentionDays: int('CYCLES_AUDIT_UNAUTH_RETENTION_DAYS', env.CYCLES_AUDIT_UNAUTH_RETENTION_DAYS, 30, 0, 36500),
    customActionKinds: customKinds(env.CYCLES_CUSTOM_ACTION_KINDS),
    observeAllowSampleRate: sampleRate(env.CYCLES_OBSERVE_ALLOW_SAMPLE_RATE),
    evidence: loadEvidenceIdentity(env, { production: env.NODE_ENV === 'production' }),
    evidenceRateLimitPerMinute: int('CYCLES_EVIDENCE_RATE_LIMIT_PER_MINUTE', env.CYCLES_EVIDENCE_RATE_LIMIT_PER_MINUTE, 300, 0, 1_000_000),
    actionKindsRateLimitPerMinute: int('CYCLES_ACTION_KINDS_RATE_LIMIT_PER_MINUTE', env.CYCLES_ACTION_KINDS_RATE_LIMIT_PER_MINUTE, 60, 0, 1_000_000),
    signals: loadSignalConfig(env),
    eventRetentionDays: int('CYCLES_EVENT_RETENTION_DAYS', env.CYCLES_EVENT_RETENTION_DAYS, 90, 1, 36500),
    eventRelaySweepMs: int('CYCLES_EVENT_RELAY_SWEEP_MS', env.CYCLES_EVENT_RELAY_SWEEP_MS, 2000, 50, 600_000),
    webhookSecretKey: webhookSecretKey(env),
    webhookDeliveryRetentionDays: int('CYCLES_WEBHOOK_DELIVERY_RETENTION_DAYS', env.CYCLES_WEBHOOK_DELIVERY_RETENTION_DAYS, 14, 1, 3650),
    webhookTimeoutMs: int('CYCLES_WEBHOOK_TIMEOUT_MS', env.CYCLES_WEBHOOK_TIMEOUT_MS, 10_000, 100, 120_000),
    webhookConcurrency: int('CYCLES_WEBHOOK_CONCURRENCY', env.CYCLES_WEBHOOK_CONCURRENCY, 64, 1, 4096),
    webhookSubscriptionConcurrency: int('CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY', env.CYCLES_WEBHOOK_SUBSCRIPTION_CONCURRENCY, 4, 1, 64),
    webhookPollMs: int('CYCLES_WEBHOOK_POLL_MS', env.CYCLES_WEBHOOK_POLL_MS, 100, 5, 60_000),
    webhookLeaseMs: int('CYCLES_WEBHOOK_LEASE_MS', env.CYCLES_WEBHOOK_LEASE_MS, 30_000, 500, 600_000),
    webhookReplayScanLimit: int('CYCLES_WEBHOOK_REPLAY_SCAN_LIMIT', env.CYCLES_WEBHOOK_REPLAY_SCAN_LIMIT, 20_000, 10, 1_000_000),
    evidenceRetentionDays: int('CYCLES_EVIDENCE_RETENTION_DAYS', env.CYCLES_EVIDENCE_RETENTION_DAYS, 90, 0, 36500),
    metrics: onOff('CYCLES_METRICS', env.CYCLES_METRICS, true),
    evidenceClaimIdleMs: int('CYCLES_EVIDENCE_CLAIM_IDLE_MS', env.CYCLES_EVIDENCE_CLAIM_IDLE_MS, 30_000, 100, 3_600_000),
    shutdownTimeoutMs: int('CYCLES_SHUTDOWN_TIMEOUT_MS', env.CYCLES_SHUTDOWN_TIMEOUT_MS, 10_000, 0, 600_000),
    reservationRetentionMs: testRetentionMs(env) ?? int('CYCLES_RESERVATION_RETENTION_DAYS', env.CYCLES_RESERVATION_RETENTION_DAYS, 90, 1, 36500) * DAY_MS,
    createEventRetentionMs: testRetentionMs(env) ?? int('CYCLES_CREATE_EVENT_RETENTION_DAYS', env.CYCLES_CREATE_EVENT_RETENTION_DAYS, 90, 1, 36500) * DAY_MS,
    exportDir: env.CYCLES_EXPORT_DIR ? path.resolve(env.CYCLES_EXPORT_DIR) : undefined,
    exportIntervalMs: int('CYCLES_EXPORT_INTERVAL_MS', env.CYCLES_EXPORT_INTERVAL_MS, 600_000, 50, 86_400_000),
  };
}
