import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { invalid } from '../../src/errors';
import { SYSTEM_TENANT } from '../../src/events/model';
import { secretBoxFor } from '../../src/events/secretBox';
import { createSubscription, requireTenant } from '../../src/events/webhookWrites';

// Admin plane: tenant_id omitted (or __system__) → a system-wide subscription; a concrete
// tenant must exist. A blank tenant_id is not "omitted" (INVARIANT 2 exempts only __system__).
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const raw = ctx.query.tenant_id;
  if (typeof raw === 'string' && raw.trim() === '') throw invalid('tenant_id must not be blank: omit it (or use __system__) for a system-wide subscription');
  const owner = typeof raw === 'string' ? raw : SYSTEM_TENANT;
  if (owner !== SYSTEM_TENANT) await requireTenant(ctx.deps.redis, owner);
  const created = await createSubscription(ctx.deps.redis, owner, ctx.body ?? {}, {
    ev: eventCtx(ctx), box: secretBoxFor(ctx.deps.config),
  });
  return {
    status: 201,
    body: created,
    audit: { resourceType: 'webhook', resourceId: created.subscription.subscription_id, metadata: { owner_tenant_id: owner } },
  };
}
