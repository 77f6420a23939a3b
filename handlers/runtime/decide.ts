// POST /v1/decide — budget decision without reservation (src/ledger/reserve.ts).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { evaluateReserve, renderDecisionResponse } from '../../src/ledger/reserve';

export default async function decide(ctx: HandlerContext): Promise<HandlerResult> {
  const outcome = await evaluateReserve(ctx, 'decide');
  const headers: Record<string, string> = ctx.principal.kind === 'tenant' ? { 'X-Cycles-Tenant': ctx.principal.tenantId } : {};
  return { status: 200, body: renderDecisionResponse(outcome), headers };
}
