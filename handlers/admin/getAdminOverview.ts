import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { adminOverview } from '../../src/admin/overview';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await adminOverview(ctx.deps.redis, ctx.deps.config) };
}
