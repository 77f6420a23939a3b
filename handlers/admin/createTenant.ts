import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { createTenant, renderTenant } from '../../src/admin/tenants';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const { created, tenant } = await createTenant(ctx.deps.redis, ctx.body, eventCtx(ctx));
  return { status: created ? 201 : 200, body: renderTenant(tenant, ctx.deps.config.features.has('v0.1.26')) };
}
