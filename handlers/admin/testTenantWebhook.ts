import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { testSubscription } from '../../src/events/deliveries';

// As testWebhookSubscription; an API key reaches only its own tenant's subscriptions (404
// otherwise), the admin key any (acting on behalf of the owner).
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  return { status: 200, body: await testSubscription(ctx, true) };
}
