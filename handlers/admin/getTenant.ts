import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { renderTenant, requireTenant } from '../../src/admin/tenants';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: renderTenant(await requireTenant(ctx.deps.redis, ctx.params.tenant_id), ctx.deps.config.features.has('v0.1.26')) };
}
