// POST /v1/decide — budget decision without reservation (src/ledger/reserve.ts).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { kindHeaders } from '../../src/governance/registry';
import { evidenceRefFor } from '../../src/evidence/source';
import { evaluateReserve, renderDecisionResponse } from '../../src/ledger/reserve';

export default async function decide(ctx: HandlerContext): Promise<HandlerResult> {
  const outcome = await evaluateReserve(ctx, 'decide');
  const headers: Record<string, string> = ctx.principal.kind === 'tenant' ? { 'X-Cycles-Tenant': ctx.principal.tenantId } : {};
  Object.assign(headers, kindHeaders(ctx.deps.config, ctx.body?.action?.kind));
  const body = renderDecisionResponse(outcome);
  const ref = evidenceRefFor(ctx.deps.config.evidence, ctx.deps.log, 'decide', outcome.evidenceRequest, outcome.result);
  if (ref) body.cycles_evidence = ref;
  return { status: 200, body, headers };
}
