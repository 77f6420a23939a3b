import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listApiKeys } from '../../src/admin/apiKeys';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await listApiKeys(ctx.deps.redis, ctx.query) };
}
