import type { AuditInfo, HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { bulkBudgets, type BulkEnvelope } from '../../src/admin/bulk';

/** The single audit row of a bulk invocation embeds the per-row outcome. */
export function bulkAudit(resourceType: string, body: any, env: BulkEnvelope, replayed: boolean, started: number): AuditInfo {
  return {
    resourceType,
    metadata: {
      actor_type: 'admin_on_behalf_of',
      action: env.action,
      idempotency_key: env.idempotency_key,
      replayed,
      filter: body.filter,
      total_matched: env.total_matched,
      succeeded_ids: env.succeeded.map((r) => r.id),
      failed_rows: env.failed,
      skipped_rows: env.skipped,
      bulk_duration_ms: Date.now() - started,
    },
  };
}

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const started = Date.now();
  if (ctx.audit && typeof ctx.body?.filter?.tenant_id === 'string') ctx.audit.tenantId = ctx.body.filter.tenant_id;
  const { envelope, replayed } = await bulkBudgets(ctx.deps.redis, ctx.body, eventCtx(ctx, true));
  return { status: 200, body: envelope, audit: bulkAudit('budget', ctx.body, envelope, replayed, started) };
}
