import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { createPolicy, policyTenant, renderPolicy } from '../../src/admin/policies';
import { eventCtx } from '../../src/admin/common';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  if (ctx.principal.kind === 'admin' && ctx.audit) {
    const t = ctx.body?.tenant_id;
    if (typeof t === 'string' && t !== '') ctx.audit.tenantId = t;
  }
  policyTenant(ctx.principal, ctx.body?.tenant_id, 'body');
  const policy = await createPolicy(ctx.deps.redis, ctx.body, {
    principal: ctx.principal,
    ev: eventCtx(ctx, true),
    customKinds: ctx.deps.config.customActionKinds,
  });
  return { status: 201, body: renderPolicy(policy, ctx.deps.config.features.has('v0.1.26')), audit: { resourceType: 'policy', resourceId: policy.policy_id } };
}
