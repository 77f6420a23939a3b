// GET /v1/reservations/{reservation_id} — one reservation (403 other tenant, 404, 410 EXPIRED).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import { getReservation } from '../../src/ledger/reservationRead';

export default async function getReservationHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  if (p.kind !== 'tenant' && p.kind !== 'admin') throw new ApiError('UNAUTHORIZED', 'getReservation requires an API key');
  const id = ctx.params.reservation_id;
  const detail = await getReservation(ctx.deps.redis, id, p.kind === 'tenant' ? { tenant: p.tenantId, scopeFilter: p.scopeFilter } : {},
    { serverId: ctx.deps.config.evidence?.serverId });
  const headers: Record<string, string> = p.kind === 'tenant' ? { 'X-Cycles-Tenant': p.tenantId } : {};
  return { status: 200, body: detail, headers };
}
