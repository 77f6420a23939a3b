// Shared plumbing of the reservation mutations after create (commit, release, extend)
// and the expiry sweeper: which tenant a request acts in (the id pins it,
// src/ledger/reservationId.ts), how a script's error result
// becomes an ApiError, and how a stored script result becomes Balance rows.
import type { Redis } from 'ioredis';
import type { Principal } from '../auth/authenticate';
import { ApiError, type ErrorCode } from '../errors';
import { keys } from '../store/keys';
import { requireScopeAllowed } from '../auth/scopeFilter';
import { renderBalance } from './model';
import { ownerOf } from './reservationId';
import { decodeReservationHash } from './reservationRecord';
import { finishKeys } from '../store/declaredKeys';

/** "{t:<tenant>}:budget:" — the scripts append "<scope>:<unit>" (keys.budget layout). */
export function budgetPrefix(tenant: string): string {
  const probe = keys.budget(tenant, '\u0000', '\u0001');
  return probe.slice(0, probe.indexOf('\u0000'));
}

export interface Acting {
  tenant: string;
  /** Event.actor of outbox entries written by this request */
  actor: Record<string, string>;
  /** true when an admin key acts on the owning tenant's behalf */
  onBehalf: boolean;
}

/**
 * The tenant whose slot the script runs in. Tenant keys act in their own tenant; an id
 * issued for another tenant is answered here, before any script: 403 when that tenant
 * holds the reservation, else 404 (runtime AUTH & TENANCY: cross-tenant access is
 * FORBIDDEN, not hidden). The admin key (release only) acts in the tenant the id pins.
 */
export async function actingTenant(redis: Redis, principal: Principal, reservationId: string): Promise<Acting> {
  if (principal.kind === 'tenant') {
    const owner = ownerOf(reservationId);
    if (owner !== undefined && owner !== principal.tenantId) throw await foreignOrMissing(redis, owner, reservationId);
    if (principal.scopeFilter.length > 0) {
      // Only keys restricted by scope_filter pay this extra read.
      // scope_path may be stored in pieces (reservationRecord.ts): one read of the hash
      const h = decodeReservationHash(await redis.hgetall(keys.reservation(principal.tenantId, reservationId)));
      if (h.scope_path !== undefined) requireScopeAllowed(principal.scopeFilter, h.scope_path);
    }
    return { tenant: principal.tenantId, actor: { type: 'api_key', key_id: principal.keyId }, onBehalf: false };
  }
  if (principal.kind === 'admin') {
    const owner = ownerOf(reservationId);
    if (owner === undefined) throw notFound(reservationId);
    return { tenant: owner, actor: { type: 'admin_on_behalf_of' }, onBehalf: true };
  }
  throw new ApiError('UNAUTHORIZED', 'This operation requires an API key');
}

/** A tenant key presented an id issued for `owner`: 403 if it exists there, else 404. */
export async function foreignOrMissing(redis: Redis, owner: string, reservationId: string): Promise<ApiError> {
  return (await redis.exists(keys.reservation(owner, reservationId))) === 1
    ? new ApiError('FORBIDDEN', 'Reservation belongs to a different tenant')
    : notFound(reservationId);
}

export const notFound = (reservationId: string) => new ApiError('NOT_FOUND', `Reservation ${reservationId} not found`);

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

/** After a commit or release: a finished (or missing) reservation leaves the key cache; one
 *  still ACTIVE after an error keeps the list its script accepted (DK8). */
export function settleFinishKeys(reservationId: string, res: unknown, declared: string[]): void {
  if (!isScriptError(res) || res.error === 'NOT_FOUND' || res.error === 'RESERVATION_FINALIZED'
    || res.error === 'RESERVATION_EXPIRED') {
    finishKeys.delete(reservationId);
  } else if (declared.length > 0) {
    finishKeys.set(reservationId, declared);
  }
}

/** The trace/request/actor arguments every mutation script takes. */
export function eventContext(ctx: { traceId: string; requestId: string }, acting: Acting): string[] {
  return [ctx.traceId, ctx.requestId, JSON.stringify(acting.actor)];
}
