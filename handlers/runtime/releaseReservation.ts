// POST /v1/reservations/{reservation_id}/release — give the estimate back (tenant key, or
// admin key acting on the owning tenant's behalf; src/ledger/release.ts).
import { reservationRetainArg } from '../../src/ledger/retention';
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { releaseReservation } from '../../src/ledger/release';
import { idempotencyKeyFrom } from '../../src/ledger/idempotency';
import { evidenceRefFor } from '../../src/evidence/source';

export default async function releaseReservationHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const { evidence } = ctx.deps.config;
  const { tenant, body, result, evidenceRequest } = await releaseReservation(ctx.deps.redis, {
    reservationId: ctx.params.reservation_id,
    idempotencyKey: idempotencyKeyFrom(ctx),
    body: ctx.body,
    principal: ctx.principal,
    traceId: ctx.traceId,
    requestId: ctx.requestId,
    evidence: evidence !== undefined,
    retain: reservationRetainArg(ctx.deps.config),
  });
  const ref = evidenceRefFor(evidence, ctx.deps.log, 'release', evidenceRequest, result, result.reservation_id);
  if (ref) body.cycles_evidence = ref;
  // An admin-key release is audited (onResponse hook) as admin_on_behalf_of this tenant.
  const audit = { tenantId: tenant, resourceType: 'reservation', resourceId: ctx.params.reservation_id,
    ...(ctx.body?.reason ? { metadata: { reason: String(ctx.body.reason) } } : {}) };
  return { status: 200, body, headers: { 'X-Cycles-Tenant': tenant }, audit };
}
