import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { visibleRecord } from '../../src/events/subscriptions';
import { deleteSubscription } from '../../src/events/webhookWrites';

// API key: own tenant only (404 otherwise). Admin key: admin on behalf of the owner.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  const h = await visibleRecord(ctx.deps.redis, ctx.principal, id);
  if (ctx.principal.kind === 'admin' && ctx.audit) ctx.audit.tenantId = h.tenant_id;
  await deleteSubscription(ctx.deps.redis, h.tenant_id, id, eventCtx(ctx, true));
  // null: the response validator models an empty 204 body as JSON null (nothing is sent)
  return { status: 204, body: null };
}
