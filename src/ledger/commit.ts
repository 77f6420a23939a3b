// commitReservation: charge actual spend on an ACTIVE reservation (src/store/lua/commit.lua
// does every check and write atomically; this module maps HTTP input to the script and
// the stored result to the CommitResponse).
import type { Redis } from 'ioredis';
import type { Principal } from '../auth/authenticate';
import { stringify, toBig } from '../json';
import { keys } from '../store/keys';
import { DEFAULT_RETAIN_ARG } from './retention';
import { loadScript } from '../store/scripts';
import { finishKeys, runDeclared } from '../store/declaredKeys';
import { amount } from './model';
import { payloadHash } from './idempotency';
import {
  actingTenant, budgetPrefix, eventContext, isScriptError, notFound, parseScriptJson,
  renderBalances, settleFinishKeys, toApiError,
} from './reservationOps';

export interface CommitInput {
  reservationId: string;
  idempotencyKey: string;
  body: { actual: { unit: string; amount: unknown }; metrics?: unknown; metadata?: unknown };
  principal: Principal;
  traceId: string;
  requestId: string;
  /** evidence on: record the evidence source with the commit (DEV6) */
  evidence?: boolean;
  /** retention argument of the finished reservation (src/ledger/retention.ts) */
  retain?: string;
}

export interface StoredCommit {
  status: 'COMMITTED';
  reservation_id: string;
  unit: string;
  estimate: string;
  charged: string;
  released?: string;
  balances: unknown;
  /** evidence on at execution: issued_at_ms and trace_id of its envelope (DEV6) */
  ev_ms?: string;
  ev_trace?: string;
}

/** The request as evidence attests it: the body with the effective idempotency key. */
export function evidenceRequestOf(body: object, idempotencyKey: string): string {
  return stringify({ ...body, idempotency_key: idempotencyKey });
}

/** CommitResponse from the stored result: a pure function, so replays are identical. */
export function renderCommit(r: StoredCommit): Record<string, unknown> {
  const out: Record<string, unknown> = { status: 'COMMITTED', charged: amount(r.unit, r.charged) };
  // `released` only when part of the estimate went back (decision "commit released").
  if (r.released !== undefined) out.released = amount(r.unit, r.released);
  out.balances = renderBalances(r.balances);
  return out;
}

export async function commitReservation(
  redis: Redis,
  input: CommitInput,
): Promise<{ tenant: string; body: Record<string, unknown>; result: StoredCommit; evidenceRequest?: string }> {
  const acting = await actingTenant(redis, input.principal, input.reservationId);
  const { tenant } = acting;
  const actual = toBig(input.body.actual.amount);
  const evidenceRequest = input.evidence ? evidenceRequestOf(input.body, input.idempotencyKey) : undefined;
  const { raw, declared } = await runDeclared(redis, loadScript('commit'),
    [keys.reservation(tenant, input.reservationId), keys.tenant(tenant), keys.outbox(tenant), keys.expirySchedule(tenant),
      ...(evidenceRequest === undefined ? [] : [keys.evidenceSource(tenant)])],
    finishKeys.get(input.reservationId),
    [
      budgetPrefix(tenant),
      actual.toString(),
      input.body.actual.unit,
      input.idempotencyKey,
      payloadHash(input.body),
      input.body.metrics === undefined ? '' : stringify(input.body.metrics),
      input.body.metadata === undefined ? '' : stringify(input.body.metadata),
      ...eventContext(input, acting),
      evidenceRequest === undefined ? '' : keys.evidenceSource(tenant),
      evidenceRequest ?? '',
      input.retain ?? DEFAULT_RETAIN_ARG,
    ]);
  const res = parseScriptJson(raw);
  settleFinishKeys(input.reservationId, res, declared);
  if (isScriptError(res)) {
    if (res.error === 'NOT_FOUND') throw notFound(input.reservationId);
    const err = toApiError(res);
    if (evidenceRequest !== undefined && (res as { ev_ms?: string }).ev_ms !== undefined) {
      err.evidenceSource = { endpoint: 'commit', tenant: tenant, request: evidenceRequest, result: res, reservationId: input.reservationId };
    }
    throw err;
  }
  return { tenant, body: renderCommit(res as StoredCommit), result: res as StoredCommit, evidenceRequest };
}
