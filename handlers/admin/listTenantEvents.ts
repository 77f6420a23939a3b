import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import { listTenantEvents } from '../../src/events/query';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  if (p.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'listTenantEvents needs a tenant API key (X-Cycles-API-Key)');
  const page = await listTenantEvents(ctx.deps.redis, p.tenantId, p.scopeFilter, ctx.query);
  return { status: 200, body: page, audit: { resourceType: 'event', tenantId: p.tenantId } };
}
