// Shared plumbing of the reservation mutations after create (commit, release, extend)
// and the expiry sweeper: which tenant a request acts in, how a script's error result
// becomes an ApiError, and how a stored script result becomes Balance rows.
import type { Redis } from 'ioredis';
import type { Principal } from '../auth/authenticate';
import { ApiError, type ErrorCode } from '../errors';
import { keys } from '../store/keys';
import { requireScopeAllowed } from '../auth/scopeFilter';
import { renderBalance } from './model';

/** Finished reservations are kept this long (mirrors FINALIZED_RETENTION_MS in
 *  src/store/lua/ledger_common.lua). */
export const FINALIZED_RETENTION_MS = 30 * 86_400_000;

/** "{t:<tenant>}:budget:" — the scripts append "<scope>:<unit>" (keys.budget layout). */
export function budgetPrefix(tenant: string): string {
  const probe = keys.budget(tenant, '\u0000', '\u0001');
  return probe.slice(0, probe.indexOf('\u0000'));
}

/** Member of keys.expirySchedule() for a reservation. */
export const scheduleMember = (tenant: string, id: string) => `${tenant}\n${id}`;

export interface Acting {
  tenant: string;
  /** Event.actor of outbox entries written by this request */
  actor: Record<string, string>;
  /** true when an admin key acts on the owning tenant's behalf */
  onBehalf: boolean;
}

/**
 * The tenant whose slot the script runs in. Tenant keys act in their own tenant (a
 * reservation that is not there is then told apart as 403 vs 404 by `notFound`); the
 * admin key (release only) acts in the owning tenant, found via keys.reservationOwner.
 */
export async function actingTenant(redis: Redis, principal: Principal, reservationId: string): Promise<Acting> {
  if (principal.kind === 'tenant') {
    if (principal.scopeFilter.length > 0) {
      // Only keys restricted by scope_filter pay this extra read.
      const scope = await redis.hget(keys.reservation(principal.tenantId, reservationId), 'scope_path');
      if (scope !== null) requireScopeAllowed(principal.scopeFilter, scope);
    }
    return { tenant: principal.tenantId, actor: { type: 'api_key', key_id: principal.keyId }, onBehalf: false };
  }
  if (principal.kind === 'admin') {
    const owner = await redis.get(keys.reservationOwner(reservationId));
    if (!owner) throw new ApiError('NOT_FOUND', `Reservation ${reservationId} not found`);
    return { tenant: owner, actor: { type: 'admin_on_behalf_of' }, onBehalf: true };
  }
  throw new ApiError('UNAUTHORIZED', 'This operation requires an API key');
}

/** A script said NOT_FOUND in `tenant`: 403 when another tenant owns the id, else 404
 *  (runtime AUTH & TENANCY: cross-tenant access is FORBIDDEN, not hidden). */
export async function notFound(redis: Redis, tenant: string, reservationId: string): Promise<ApiError> {
  const owner = await redis.get(keys.reservationOwner(reservationId));
  if (owner !== null && owner !== tenant) {
    return new ApiError('FORBIDDEN', 'Reservation belongs to a different tenant');
  }
  return new ApiError('NOT_FOUND', `Reservation ${reservationId} not found`);
}

const SCRIPT_CODES = new Set<ErrorCode>([
  'NOT_FOUND', 'IDEMPOTENCY_MISMATCH', 'TENANT_CLOSED', 'INTERNAL_ERROR', 'RESERVATION_EXPIRED',
  'RESERVATION_FINALIZED', 'UNIT_MISMATCH', 'BUDGET_EXCEEDED', 'OVERDRAFT_LIMIT_EXCEEDED',
  'MAX_EXTENSIONS_EXCEEDED', 'INVALID_REQUEST',
]);

export interface ScriptError { error: string; message?: string; details?: Record<string, unknown> }

export function isScriptError(v: unknown): v is ScriptError {
  return typeof v === 'object' && v !== null && typeof (v as ScriptError).error === 'string';
}

/** Error JSON from a script → ApiError (NOT_FOUND is resolved by the caller first). */
export function toApiError(e: ScriptError): ApiError {
  const code = SCRIPT_CODES.has(e.error as ErrorCode) ? (e.error as ErrorCode) : 'INTERNAL_ERROR';
  // cjson writes an empty Lua table as {}; details are always objects here.
  const details = e.details && typeof e.details === 'object' && Object.keys(e.details).length ? e.details : undefined;
  return new ApiError(code, e.message ?? code, details);
}

/** Parses a script's JSON text (errors included). */
export function parseScriptJson(raw: unknown): unknown {
  if (typeof raw !== 'string') throw new Error(`script returned ${typeof raw}, expected JSON text`);
  return JSON.parse(raw);
}

/** Balance rows from the snapshots in a stored result (cjson encodes [] as {}). */
export function renderBalances(snaps: unknown): Record<string, unknown>[] {
  if (!Array.isArray(snaps)) return [];
  return snaps.map((s) => renderBalance(s as Record<string, string>));
}

/** The trace/request/actor arguments every mutation script takes. */
export function eventContext(ctx: { traceId: string; requestId: string }, acting: Acting): string[] {
  return [ctx.traceId, ctx.requestId, JSON.stringify(acting.actor)];
}

/** Best-effort schedule maintenance outside the script (the sweeper tolerates stale
 *  entries: it re-checks each candidate atomically). */
export async function unschedule(redis: Redis, tenant: string, id: string, log?: { warn: (o: object, m: string) => void }): Promise<void> {
  try {
    // The reservation is finished: drop it from the sweeper's schedule and let its owner
    // hint expire with the reservation hash (FINALIZED_RETENTION_MS in ledger_common.lua).
    await Promise.all([
      redis.zrem(keys.expirySchedule(), scheduleMember(tenant, id)),
      redis.pexpire(keys.reservationOwner(id), FINALIZED_RETENTION_MS),
    ]);
  } catch (err) {
    log?.warn({ err, reservation_id: id }, 'expiry schedule cleanup failed');
  }
}
