// POST /v1/reservations/{reservation_id}/commit — charge actual spend (src/ledger/commit.ts).
import { reservationRetainArg } from '../../src/ledger/retention';
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { commitReservation } from '../../src/ledger/commit';
import { idempotencyKeyFrom } from '../../src/ledger/idempotency';
import { evidenceRefFor } from '../../src/evidence/source';

export default async function commitReservationHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const { evidence } = ctx.deps.config;
  const { tenant, body, result, evidenceRequest } = await commitReservation(ctx.deps.redis, {
    reservationId: ctx.params.reservation_id,
    idempotencyKey: idempotencyKeyFrom(ctx),
    body: ctx.body,
    principal: ctx.principal,
    traceId: ctx.traceId,
    requestId: ctx.requestId,
    evidence: evidence !== undefined,
    retain: reservationRetainArg(ctx.deps.config),
  });
  const ref = evidenceRefFor(evidence, ctx.deps.log, 'commit', evidenceRequest, result, result.reservation_id);
  if (ref) body.cycles_evidence = ref;
  return { status: 200, body, headers: { 'X-Cycles-Tenant': tenant } };
}
