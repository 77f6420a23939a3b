// POST /v1/reservations/{reservation_id}/extend — move expiry outward (src/ledger/extend.ts).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { extendReservation } from '../../src/ledger/extend';
import { idempotencyKeyFrom } from '../../src/ledger/idempotency';

export default async function extendReservationHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const { tenant, body } = await extendReservation(ctx.deps.redis, {
    reservationId: ctx.params.reservation_id,
    idempotencyKey: idempotencyKeyFrom(ctx),
    body: ctx.body,
    principal: ctx.principal,
  });
  return { status: 200, body, headers: { 'X-Cycles-Tenant': tenant } };
}
