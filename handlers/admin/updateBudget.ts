import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { changeBudget, renderLedger } from '../../src/admin/budgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const h = await changeBudget(ctx.deps.redis, ctx.principal, ctx.query.scope, ctx.query.unit, 'update', ctx.body, eventCtx(ctx));
  return { status: 200, body: renderLedger(h) };
}
