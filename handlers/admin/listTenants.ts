import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listTenants } from '../../src/admin/tenants';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await listTenants(ctx.deps.redis, ctx.query, ctx.deps.config.features.has('v0.1.26')) };
}
