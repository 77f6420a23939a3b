import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { secretBoxFor } from '../../src/events/secretBox';
import { visibleRecord } from '../../src/events/subscriptions';
import { updateSubscription } from '../../src/events/webhookWrites';

// API key: own tenant only (404 otherwise). Admin key: admin on behalf of the owner (event
// actor admin_on_behalf_of, audit row attributed to the owner). Same invariants either way.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  const h = await visibleRecord(ctx.deps.redis, ctx.principal, id);
  if (ctx.principal.kind === 'admin' && ctx.audit) ctx.audit.tenantId = h.tenant_id;
  const sub = await updateSubscription(ctx.deps.redis, h.tenant_id, id, ctx.body ?? {}, {
    ev: eventCtx(ctx, true), box: secretBoxFor(ctx.deps.config),
  });
  return { status: 200, body: sub };
}
