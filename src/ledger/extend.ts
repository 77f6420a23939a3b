// extendReservation: move an ACTIVE reservation's expiry outward relative to its current
// expires_at_ms (src/store/lua/extend.lua). remaining_ttl_ms is volatile: recomputed from
// Redis TIME on every response, replays included (runtime IDEMPOTENCY).
import type { Redis } from 'ioredis';
import type { Principal } from '../auth/authenticate';
import { stringify, toBig, toJsonInt } from '../json';
import { keys } from '../store/keys';
import { loadScript } from '../store/scripts';
import { finishKeys, runDeclared } from '../store/declaredKeys';
import { payloadHash } from './idempotency';
import {
  actingTenant, budgetPrefix, isScriptError, notFound, parseScriptJson, renderBalances,
  toApiError,
} from './reservationOps';

export interface StoredExtend {
  status: 'ACTIVE';
  reservation_id: string;
  expires_at_ms: string;
  balances: unknown;
}

interface ExtendReply { result: string; now_ms: string; active: boolean }

/** ReservationExtendResponse: stored fields verbatim + remaining_ttl_ms recomputed. */
export function renderExtend(r: StoredExtend, nowMs: bigint, active: boolean): Record<string, unknown> {
  const expires = BigInt(r.expires_at_ms);
  const ttl = active && expires > nowMs ? expires - nowMs : 0n;
  return {
    status: 'ACTIVE',
    expires_at_ms: toJsonInt(expires),
    remaining_ttl_ms: toJsonInt(ttl),
    balances: renderBalances(r.balances),
  };
}

export interface ExtendInput {
  reservationId: string;
  idempotencyKey: string;
  body: { extend_by_ms: unknown; metadata?: unknown };
  principal: Principal;
}

export async function extendReservation(
  redis: Redis,
  input: ExtendInput,
): Promise<{ tenant: string; body: Record<string, unknown> }> {
  const acting = await actingTenant(redis, input.principal, input.reservationId);
  const { tenant } = acting;
  const { raw, declared, retries } = await runDeclared(redis, loadScript('extend'),
    [keys.reservation(tenant, input.reservationId), keys.tenant(tenant), keys.expirySchedule(tenant)],
    finishKeys.get(input.reservationId),
    [
      budgetPrefix(tenant),
      input.idempotencyKey,
      payloadHash(input.body),
      toBig(input.body.extend_by_ms).toString(),
      input.body.metadata === undefined ? '' : stringify(input.body.metadata),
    ]);
  const res = parseScriptJson(raw);
  // the script corrected the guess: remember its list (budgets only; a release adds the
  // per_run counters the same way)
  if (retries > 0) finishKeys.set(input.reservationId, declared);
  if (isScriptError(res)) {
    if (res.error === 'NOT_FOUND') throw notFound(input.reservationId);
    throw toApiError(res);
  }
  const reply = res as ExtendReply;
  const stored = JSON.parse(reply.result) as StoredExtend;
  return { tenant, body: renderExtend(stored, BigInt(reply.now_ms), reply.active) };
}
