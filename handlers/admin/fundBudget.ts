import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { fundBudget } from '../../src/admin/budgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const q = { scope: ctx.query.scope, unit: ctx.query.unit, tenant_id: ctx.query.tenant_id || undefined };
  return { status: 200, body: await fundBudget(ctx.deps.redis, ctx.principal, q, ctx.body, eventCtx(ctx, true)) };
}
