import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { visibleRecord } from '../../src/events/subscriptions';
import { deleteSubscription } from '../../src/events/webhookWrites';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  const h = await visibleRecord(ctx.deps.redis, ctx.principal, id);
  await deleteSubscription(ctx.deps.redis, h.tenant_id, id, eventCtx(ctx));
  // null: the response validator models an empty 204 body as JSON null (nothing is sent)
  return { status: 204, body: null };
}
