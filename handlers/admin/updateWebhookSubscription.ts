import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { secretBoxFor } from '../../src/events/secretBox';
import { visibleRecord } from '../../src/events/subscriptions';
import { updateSubscription } from '../../src/events/webhookWrites';

// Owner from the stored record; the invariants are checked on the merged state.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  const h = await visibleRecord(ctx.deps.redis, ctx.principal, id);
  const sub = await updateSubscription(ctx.deps.redis, h.tenant_id, id, ctx.body ?? {}, {
    ev: eventCtx(ctx), box: secretBoxFor(ctx.deps.config),
  });
  return { status: 200, body: sub };
}
