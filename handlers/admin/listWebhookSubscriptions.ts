import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listSubscriptions } from '../../src/events/subscriptions';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await listSubscriptions(ctx.deps.redis, ctx.query), audit: { resourceType: 'webhook' } };
}
