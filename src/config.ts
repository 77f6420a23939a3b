// Configuration comes only from environment variables (documented in README's table),
// validated once at start so a typo fails loudly instead of running with a default.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export type Plane = 'runtime' | 'admin';

export interface Config {
  redisUrl: string | undefined;
  /** bound on connecting to Redis and its first PING at start (ioredis reconnects on its own later) */
  redisConnectTimeoutMs: number;
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

function int(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw)) throw new Error(`${name} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new Error(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
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
    redisConnectTimeoutMs: int('CYCLES_REDIS_CONNECT_TIMEOUT_MS', env.CYCLES_REDIS_CONNECT_TIMEOUT_MS, 10_000, 100, 600_000),
    adminApiKey: adminApiKey(env),
    runtimePort: int('CYCLES_RUNTIME_PORT', env.CYCLES_RUNTIME_PORT, 7878, 0, 65535),
    adminPort: int('CYCLES_ADMIN_PORT', env.CYCLES_ADMIN_PORT, 7979, 0, 65535),
    host: env.CYCLES_HOST || '127.0.0.1',
    specsDir: env.CYCLES_SPECS_DIR || path.resolve(REPO_ROOT, '..', 'shared', 'specs', 'cycles-protocol'),
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
  };
}
