import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listDeliveries } from '../../src/events/deliveries';

// API key: its own tenant's subscriptions only (another tenant's id is 404, like an unknown
// one); admin key: any, the owner resolved from the subscription.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  return { status: 200, body: await listDeliveries(ctx.deps.redis, ctx.principal, id, ctx.query) };
}
