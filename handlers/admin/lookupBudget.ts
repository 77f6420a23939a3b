import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { lookupBudget, renderLedger } from '../../src/admin/budgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: renderLedger(await lookupBudget(ctx.deps.redis, ctx.principal, ctx.query.scope, ctx.query.unit)) };
}
