import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { validateApiKey } from '../../src/admin/apiKeys';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await validateApiKey(ctx.deps.redis, ctx.body.key_secret, eventCtx(ctx)) };
}
