import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { renderSubscription, visibleRecord } from '../../src/events/subscriptions';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  return { status: 200, body: renderSubscription(await visibleRecord(ctx.deps.redis, ctx.principal, id)) };
}
