import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { testSubscription } from '../../src/events/deliveries';

// One signed system.webhook_test POST to the subscription's URL; 200 with success=false when
// the endpoint fails. The subscription itself does not change.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  return { status: 200, body: await testSubscription(ctx, false) };
}
