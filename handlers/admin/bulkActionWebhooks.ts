import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { secretBoxFor } from '../../src/events/secretBox';
import { bulkWebhooks } from '../../src/events/webhookBulk';
import { bulkAudit } from './bulkActionBudgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const started = Date.now();
  const { envelope, replayed } = await bulkWebhooks(ctx.deps.redis, ctx.body ?? {}, {
    ev: eventCtx(ctx), box: secretBoxFor(ctx.deps.config),
  });
  return { status: 200, body: envelope, audit: bulkAudit('webhook', ctx.body, envelope, replayed, started) };
}
