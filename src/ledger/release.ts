// releaseReservation: give an ACTIVE reservation's estimate back to every budgeted scope
// (src/store/lua/release.lua). Also the admin force-release (AdminKeyAuth) and the
// tenant-close cascade's per-reservation release.
import type { Redis } from 'ioredis';
import type { Principal } from '../auth/authenticate';
import { keys } from '../store/keys';
import { DEFAULT_RETAIN_ARG } from './retention';
import { loadScript } from '../store/scripts';
import { finishKeys, runDeclared } from '../store/declaredKeys';
import { amount } from './model';
import { payloadHash } from './idempotency';
import { evidenceRequestOf } from './commit';
import {
  actingTenant, budgetPrefix, eventContext, isScriptError, notFound, parseScriptJson,
  renderBalances, settleFinishKeys, toApiError, type Acting,
} from './reservationOps';

/** Idempotency key (and payload hash) the cascade records on the reservations it
 *  releases; clients cannot collide with it meaningfully (a client replay with this key
 *  would need the same payload hash, which is not a SHA-256 value). */
const CASCADE_KEY = '__tenant_close_cascade__';

export interface StoredRelease {
  status: 'RELEASED';
  reservation_id: string;
  unit: string;
  released: string;
  balances: unknown;
  /** evidence on at execution: issued_at_ms and trace_id of its envelope (DEV6) */
  ev_ms?: string;
  ev_trace?: string;
}

/** ReleaseResponse from the stored result (pure, so replays are identical). */
export function renderRelease(r: StoredRelease): Record<string, unknown> {
  return { status: 'RELEASED', released: amount(r.unit, r.released), balances: renderBalances(r.balances) };
}

export interface ReleaseInput {
  reservationId: string;
  idempotencyKey: string;
  body: { reason?: string; [k: string]: unknown };
  principal: Principal;
  traceId: string;
  requestId: string;
  /** evidence on: record the evidence source with the release (DEV6) */
  evidence?: boolean;
  /** retention argument of the finished reservation (src/ledger/retention.ts) */
  retain?: string;
}

async function runRelease(
  redis: Redis, acting: Acting, reservationId: string, idemKey: string, hash: string,
  reason: string, ctx: { traceId: string; requestId: string }, mode: 'api' | 'cascade', evidenceRequest?: string,
  retain = DEFAULT_RETAIN_ARG,
): Promise<unknown> {
  const { tenant } = acting;
  const { raw, declared } = await runDeclared(redis, loadScript('release'),
    [keys.reservation(tenant, reservationId), keys.tenant(tenant), keys.outbox(tenant), keys.expirySchedule(tenant),
      ...(evidenceRequest === undefined ? [] : [keys.evidenceSource(tenant)])],
    finishKeys.get(reservationId),
    [budgetPrefix(tenant), idemKey, hash, reason, ...eventContext(ctx, acting), mode,
      evidenceRequest === undefined ? '' : keys.evidenceSource(tenant), evidenceRequest ?? '', retain]);
  const res = parseScriptJson(raw);
  settleFinishKeys(reservationId, res, declared);
  return res;
}

export async function releaseReservation(
  redis: Redis,
  input: ReleaseInput,
): Promise<{ tenant: string; body: Record<string, unknown>; result: StoredRelease; evidenceRequest?: string }> {
  const acting = await actingTenant(redis, input.principal, input.reservationId);
  const evidenceRequest = input.evidence ? evidenceRequestOf(input.body, input.idempotencyKey) : undefined;
  const res = await runRelease(redis, acting, input.reservationId, input.idempotencyKey,
    payloadHash(input.body), input.body.reason ?? '', input, 'api', evidenceRequest, input.retain);
  if (isScriptError(res)) {
    if (res.error === 'NOT_FOUND') throw notFound(input.reservationId);
    const err = toApiError(res);
    if (evidenceRequest !== undefined && (res as { ev_ms?: string }).ev_ms !== undefined) {
      err.evidenceSource = { endpoint: 'release', tenant: acting.tenant, request: evidenceRequest, result: res, reservationId: input.reservationId };
    }
    throw err;
  }
  return { tenant: acting.tenant, body: renderRelease(res as StoredRelease), result: res as StoredRelease, evidenceRequest };
}

export type CascadeReleaseOutcome =
  | { outcome: 'released'; released: StoredRelease }
  | { outcome: 'skipped'; code: string };

/**
 * The tenant-close cascade's release of one reservation: bypasses the closed-tenant guard
 * (the cascade runs after the CLOSED flip), actor system. A reservation that is already
 * finalized, expired or missing is skipped with the script's code (NOT_FOUND,
 * RESERVATION_FINALIZED, RESERVATION_EXPIRED — the sweeper gives expired holds back).
 * Idempotent: a second call on the same reservation returns its stored release.
 */
export async function releaseForCascade(
  redis: Redis, tenant: string, reservationId: string,
  ctx: { traceId?: string; requestId?: string; retain?: string } = {},
): Promise<CascadeReleaseOutcome> {
  const acting: Acting = { tenant, actor: { type: 'system' }, onBehalf: false };
  const res = await runRelease(redis, acting, reservationId, CASCADE_KEY, CASCADE_KEY, 'tenant_closed',
    { traceId: ctx.traceId ?? '', requestId: ctx.requestId ?? '' }, 'cascade', undefined, ctx.retain);
  if (isScriptError(res)) {
    if (res.error === 'INTERNAL_ERROR' || res.error === 'BUDGET_EXCEEDED') throw toApiError(res);
    return { outcome: 'skipped', code: res.error };
  }
  return { outcome: 'released', released: res as StoredRelease };
}
