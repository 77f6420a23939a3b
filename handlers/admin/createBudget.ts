import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { createBudget, renderLedger } from '../../src/admin/budgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const h = await createBudget(ctx.deps.redis, ctx.principal, ctx.body, eventCtx(ctx, true));
  return { status: 201, body: renderLedger(h) };
}
