// POST /v1/events — record and apply a post-hoc accounting event (201 APPLIED).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import { createEvent } from '../../src/ledger/event';
import { createEventRetainArg } from '../../src/ledger/retention';
import { idempotencyKeyFrom } from '../../src/ledger/idempotency';
import { requireDeclaredKind, kindHeaders } from '../../src/governance/registry';

export default async function createEventHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const p = ctx.principal;
  if (p.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'createEvent requires X-Cycles-API-Key');
  requireDeclaredKind(ctx.deps.config, ctx.body?.action?.kind, 'action.kind');
  const body = await createEvent(ctx.deps.redis, {
    tenant: p.tenantId,
    scopeFilter: p.scopeFilter,
    idempotencyKey: idempotencyKeyFrom(ctx),
    body: ctx.body as Record<string, any>,
    traceId: ctx.traceId,
    requestId: ctx.requestId,
    actorJson: JSON.stringify({ type: 'api_key', key_id: p.keyId }),
    retain: createEventRetainArg(ctx.deps.config),
  });
  return { status: 201, body, headers: { 'X-Cycles-Tenant': p.tenantId, ...kindHeaders(ctx.deps.config, ctx.body?.action?.kind) } };
}
