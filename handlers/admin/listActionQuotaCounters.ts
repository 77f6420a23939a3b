// GET /v1/admin/action-quota-counters — live action-quota counters of one tenant (v0.1.26).
// Admin key: tenant_id REQUIRED; tenant key: its own tenant (tenant_id ignored), rows outside
// its scope_filter omitted. Served on both planes (decision DG2; the runtime file re-exports).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { invalid } from '../../src/errors';
import { holds } from '../../src/auth/permissions';
import { parseLimit } from '../../src/list/cursor';
import { listQuotaCounters } from '../../src/governance/quotaCounters';

/** Sent when a tenant key is let in only by the deprecated balances:read (DG20). */
export const PERMISSION_DEPRECATED = 'balances:read; use action_quotas:read';

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

export default async function listActionQuotaCounters(ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  const q = ctx.query;
  const headers: Record<string, string> = {};
  let tenant: string;
  if (p.kind === 'tenant') {
    tenant = p.tenantId;
    if (!holds(p.permissions, 'action_quotas:read')) headers['X-Cycles-Permission-Deprecated'] = PERMISSION_DEPRECATED;
  } else {
    const t = str(q.tenant_id);
    if (!t) throw invalid('missing_required_field: tenant_id (required with X-Admin-API-Key)');
    tenant = t;
  }
  headers['X-Cycles-Tenant'] = tenant;
  const body = await listQuotaCounters(ctx.deps.redis, {
    tenant,
    scope: str(q.scope),
    actionKind: str(q.action_kind),
    window: str(q.window),
    runId: str(q.run_id),
    includeZero: q.include_zero === true || q.include_zero === 'true',
    limit: parseLimit(q.limit),
    cursor: str(q.cursor),
    scopeFilter: p.kind === 'tenant' ? p.scopeFilter : [],
  });
  return { status: 200, body, headers };
}
