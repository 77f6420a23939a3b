import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { adminBalances } from '../../src/admin/budgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await adminBalances(ctx.deps.redis, ctx.principal, ctx.query) };
}
