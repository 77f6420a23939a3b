import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { changeApiKey, renderApiKey } from '../../src/admin/apiKeys';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const r = await changeApiKey(ctx.deps.redis, ctx.params.key_id, 'update', ctx.body, undefined, eventCtx(ctx));
  return { status: 200, body: renderApiKey(r) };
}
