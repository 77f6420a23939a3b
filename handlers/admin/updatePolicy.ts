import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { policyOwner, renderPolicy, updatePolicy } from '../../src/admin/policies';
import { eventCtx } from '../../src/admin/common';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.policy_id;
  if (ctx.audit) { ctx.audit.resourceType = 'policy'; ctx.audit.resourceId = id; }
  const tenant = await policyOwner(ctx.deps.redis, ctx.principal, id);
  if (ctx.principal.kind === 'admin' && ctx.audit) ctx.audit.tenantId = tenant;
  const policy = await updatePolicy(ctx.deps.redis, tenant, id, ctx.body ?? {}, {
    principal: ctx.principal,
    ev: eventCtx(ctx, true),
    customKinds: ctx.deps.config.customActionKinds,
  });
  return { status: 200, body: renderPolicy(policy, ctx.deps.config.features.has('v0.1.26')) };
}
