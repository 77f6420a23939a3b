import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listPolicies } from '../../src/admin/policies';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const page = await listPolicies(ctx.deps.redis, ctx.principal, ctx.query, ctx.deps.config.features.has('v0.1.26'));
  return { status: 200, body: page, audit: { resourceType: 'policy' } };
}
