import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listDeliveries } from '../../src/events/deliveries';

// Admin key: any subscription's delivery history (unknown id → 404 WEBHOOK_NOT_FOUND).
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  return { status: 200, body: await listDeliveries(ctx.deps.redis, ctx.principal, id, ctx.query) };
}
