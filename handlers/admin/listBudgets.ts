import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listBudgets } from '../../src/admin/budgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await listBudgets(ctx.deps.redis, ctx.principal, ctx.query) };
}
