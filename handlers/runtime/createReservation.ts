// POST /v1/reservations — live reserve or dry_run evaluation (src/ledger/reserve.ts).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { kindHeaders } from '../../src/governance/registry';
import { evidenceRefFor } from '../../src/evidence/source';
import { evaluateReserve, renderCreateResponse } from '../../src/ledger/reserve';

export default async function createReservation(ctx: HandlerContext): Promise<HandlerResult> {
  const mode = ctx.body?.dry_run === true ? 'dry_run' : 'live';
  const outcome = await evaluateReserve(ctx, mode);
  const headers: Record<string, string> = ctx.principal.kind === 'tenant' ? { 'X-Cycles-Tenant': ctx.principal.tenantId } : {};
  Object.assign(headers, kindHeaders(ctx.deps.config, ctx.body?.action?.kind));
  const body = renderCreateResponse(outcome);
  // computed from the stored result before the ref is stamped (never attested itself)
  const ref = evidenceRefFor(ctx.deps.config.evidence, ctx.deps.log, 'reserve', outcome.evidenceRequest, outcome.result);
  if (ref) body.cycles_evidence = ref;
  return { status: 200, body, headers };
}
