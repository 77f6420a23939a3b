// POST /v1/reservations — live reserve or dry_run evaluation (src/ledger/reserve.ts).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { kindHeaders } from '../../src/governance/registry';
import { evaluateReserve, renderCreateResponse } from '../../src/ledger/reserve';

export default async function createReservation(ctx: HandlerContext): Promise<HandlerResult> {
  const mode = ctx.body?.dry_run === true ? 'dry_run' : 'live';
  const outcome = await evaluateReserve(ctx, mode);
  const headers: Record<string, string> = ctx.principal.kind === 'tenant' ? { 'X-Cycles-Tenant': ctx.principal.tenantId } : {};
  Object.assign(headers, kindHeaders(ctx.deps.config, ctx.body?.action?.kind));
  return { status: 200, body: renderCreateResponse(outcome), headers };
}
