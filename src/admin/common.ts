// Shared plumbing of the admin plane domain: running admin Lua scripts (errors come back
// as {error, message} values and become ApiErrors), event context (actor, trace ids) for
// the outbox, canonical JSON for stored maps, and time rendering.
import type { Redis } from 'ioredis';
import { ApiError, type ErrorCode } from '../errors';
import { loadScript } from '../store/scripts';
import { runDeclared } from '../store/declaredKeys';
import type { HandlerContext } from '../http/types';

export type ActorType = 'admin' | 'api_key' | 'admin_on_behalf_of' | 'system';

/** What every admin script needs to write an outbox event (Event.actor, trace, request). */
export interface EventCtx {
  trace_id: string;
  request_id: string;
  actor_json: string;
  correlation_id?: string;
}

/**
 * Actor of an event. `onBehalf` marks the dual-auth tenant-scoped operations
 * (createBudget, fundBudget): under the admin key they act admin-on-behalf-of a tenant.
 */
export function eventCtx(ctx: HandlerContext, onBehalf = false): EventCtx {
  const p = ctx.principal;
  const actor = p.kind === 'tenant'
    ? { type: 'api_key', key_id: p.keyId }
    : { type: onBehalf ? 'admin_on_behalf_of' : 'admin' };
  return { trace_id: ctx.traceId, request_id: ctx.requestId, actor_json: JSON.stringify(actor) };
}

/** Error codes an admin script may return, with the HTTP status the spec pairs them with
 *  for the admin plane (a few differ from the catalogue default, see docs/decisions.md). */
const SCRIPT_ERRORS: Record<string, { code: ErrorCode; status?: number }> = {
  TENANT_NOT_FOUND: { code: 'TENANT_NOT_FOUND' },
  TENANT_CLOSED: { code: 'TENANT_CLOSED' },
  BUDGET_NOT_FOUND: { code: 'BUDGET_NOT_FOUND' },
  BUDGET_FROZEN: { code: 'BUDGET_FROZEN' },
  BUDGET_CLOSED: { code: 'BUDGET_CLOSED' },
  BUDGET_EXCEEDED: { code: 'BUDGET_EXCEEDED' },
  DUPLICATE_RESOURCE: { code: 'DUPLICATE_RESOURCE' },
  IDEMPOTENCY_MISMATCH: { code: 'IDEMPOTENCY_MISMATCH' },
  KEY_REVOKED: { code: 'KEY_REVOKED' },
  KEY_EXPIRED: { code: 'KEY_EXPIRED' },
  NOT_FOUND: { code: 'NOT_FOUND' },
  INVALID_REQUEST: { code: 'INVALID_REQUEST' },
  INVALID_TRANSITION: { code: 'INVALID_REQUEST', status: 409 },
  OVERFLOW: { code: 'INVALID_REQUEST' },
};

/** Runs src/store/lua/<name>.lua; a returned {error} becomes an ApiError. */
export async function runAdminScript<T = Record<string, any>>(
  redis: Redis, name: string, keys: string[], args: (string | number)[],
  overrides: Record<string, ApiError> = {}, declared: string[] = [],
): Promise<T> {
  // a script may answer need_keys (docs/decisions.md DK8): run again with its list
  const { raw } = await runDeclared(redis, loadScript(name), keys, declared, args);
  const res = JSON.parse(String(raw)) as Record<string, any>;
  if (typeof res.error === 'string') {
    if (overrides[res.error]) throw overrides[res.error];
    const m = SCRIPT_ERRORS[res.error];
    if (!m) throw new Error(`${name}.lua returned unknown error ${res.error}: ${res.message}`);
    throw new ApiError(m.code, String(res.message ?? res.error), res.details, m.status);
  }
  return res as T;
}

/** JSON with object keys sorted at every level: stored maps compare as strings. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object' && typeof v !== 'bigint') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  if (typeof v === 'bigint') return v.toString();
  return v;
}

/** epoch ms (number or decimal string) → ISO 8601; undefined when absent/empty/0. */
export function iso(ms: string | number | undefined | null): string | undefined {
  if (ms === undefined || ms === null || ms === '' || Number(ms) === 0) return undefined;
  const n = Number(ms);
  return Number.isFinite(n) ? new Date(n).toISOString() : undefined;
}

/** Drops undefined values so closed response schemas see only set properties. */
export function compact<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/** Trimmed search term; '' ⇒ absent (spec: empty string MUST be treated as absent). */
export function searchTerm(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const t = v.trim().toLowerCase();
  if (t.length > 128) throw new ApiError('INVALID_REQUEST', 'search must be at most 128 characters');
  return t === '' ? undefined : t;
}

/** HGETALL for many keys in one round trip (auto-pipelined); empty hashes are dropped. */
export async function hgetallMany(redis: Redis, keyList: string[]): Promise<Record<string, string>[]> {
  const BATCH = 500;
  const out: Record<string, string>[] = [];
  for (let i = 0; i < keyList.length; i += BATCH) {
    const part = await Promise.all(keyList.slice(i, i + BATCH).map((k) => redis.hgetall(k)));
    for (const h of part) if (h && Object.keys(h).length > 0) out.push(h);
  }
  return out;
}

/** Every admin list walks at most this many candidate rows (a bound, not a page size). */
export const LIST_SCAN_MAX = 100_000;
