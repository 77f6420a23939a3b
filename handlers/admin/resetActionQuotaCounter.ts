// POST /v1/admin/action-quota-counters/reset — incident-response reset of ONE counter
// (v0.1.26, AdminKeyAuth only). Served on both planes (DG2; the runtime file re-exports).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { resetQuotaCounter, resetTarget, RISK_KIND } from '../../src/governance/quotaCounters';

/** Event actor_id of the admin key: the server has one admin credential and no admin user
 *  ids, so the identity is the actor type, as in the audit row (DG20). */
export const ADMIN_ACTOR_ID = 'admin';

export default async function resetActionQuotaCounter(ctx: HandlerContext): Promise<HandlerResult> {
  const b = ctx.body;
  // Audit attribution, also for the refusals below: the row lands in the target tenant's
  // index, with the actor type of the event (an admin-only operation is not on-behalf-of).
  const target = typeof b?.tenant_id === 'string' && b.tenant_id !== '' ? b.tenant_id : undefined;
  const kindPart = b?.action_kind === RISK_KIND && b?.risk_class ? `${RISK_KIND}:${b.risk_class}` : b?.action_kind;
  const metadata: Record<string, unknown> = { actor_type: 'admin' };
  for (const f of ['action_kind', 'risk_class', 'window', 'window_key', 'reason'] as const) {
    if (typeof b?.[f] === 'string') metadata[f] = b[f];
  }
  if (ctx.audit) {
    if (target) ctx.audit.tenantId = target;
    ctx.audit.resourceType = 'quota_counter';
    ctx.audit.resourceId = `${b?.scope}:${kindPart}:${b?.window}:${b?.window_key}`;
    ctx.audit.metadata = metadata;
  }
  resetTarget(b); // the 400s before any Redis call
  const r = await resetQuotaCounter(ctx.deps.redis, b, eventCtx(ctx), ADMIN_ACTOR_ID);
  metadata.previous_used = r.previousUsed;
  metadata.correlation_id = r.correlationId;
  return { status: 200, body: r.response };
}
