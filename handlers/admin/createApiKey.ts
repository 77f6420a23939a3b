import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { createApiKey } from '../../src/admin/apiKeys';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 201, body: await createApiKey(ctx.deps.redis, ctx.body, eventCtx(ctx)) };
}
