import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { ApiError } from '../../src/errors';
import { secretBoxFor } from '../../src/events/secretBox';
import { createSubscription } from '../../src/events/webhookWrites';

// Tenant plane (API key only): the subscription belongs to the key's tenant.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  if (p.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'createTenantWebhook requires X-Cycles-API-Key');
  const created = await createSubscription(ctx.deps.redis, p.tenantId, ctx.body ?? {}, {
    ev: eventCtx(ctx, true), box: secretBoxFor(ctx.deps.config),
  });
  return { status: 201, body: created, audit: { resourceType: 'webhook', resourceId: created.subscription.subscription_id } };
}
