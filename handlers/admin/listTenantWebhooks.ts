import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { invalid } from '../../src/errors';
import { listTenantSubscriptions } from '../../src/events/subscriptions';

// TENANCY: an API key lists its own tenant (`tenant`, if sent, must name it); the admin key
// must name the tenant with `tenant`.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  const named = typeof ctx.query.tenant === 'string' && ctx.query.tenant !== '' ? ctx.query.tenant : undefined;
  let tenant: string;
  if (p.kind === 'tenant') {
    if (named !== undefined && named !== p.tenantId) throw invalid('tenant must not be set with an API key (the key\'s own tenant is listed)');
    tenant = p.tenantId;
  } else {
    if (named === undefined) throw invalid('tenant query parameter is required when using admin key authentication');
    tenant = named;
    if (ctx.audit) ctx.audit.tenantId = tenant;
  }
  return { status: 200, body: await listTenantSubscriptions(ctx.deps.redis, tenant, ctx.query), audit: { resourceType: 'webhook' } };
}
