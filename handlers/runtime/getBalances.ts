// GET /v1/balances — Balance rows of the effective tenant matching a subject filter.
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import { checkTenantParam, listBalances, subjectSegments } from '../../src/ledger/balances';
import { parseLimit } from '../../src/list/cursor';

export default async function getBalances(ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  if (p.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'getBalances requires X-Cycles-API-Key');
  const q = ctx.query;
  const segments = subjectSegments(q);
  if (segments.length === 0) {
    throw new ApiError('INVALID_REQUEST', 'At least one of tenant, workspace, app, workflow, agent, toolset is required');
  }
  checkTenantParam(q.tenant, p.tenantId);
  // include_children is accepted and ignored (decision D-balances): the whole-segment
  // filter already returns the matching scope and every descendant.
  const page = await listBalances(ctx.deps.redis, {
    tenant: p.tenantId,
    segments,
    limit: parseLimit(q.limit),
    cursor: typeof q.cursor === 'string' ? q.cursor : undefined,
    scopeFilter: p.scopeFilter,
  });
  return { status: 200, body: page, headers: { 'X-Cycles-Tenant': p.tenantId } };
}
