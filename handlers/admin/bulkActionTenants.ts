import { reservationRetainArg } from '../../src/ledger/retention';
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { eventCtx } from '../../src/admin/common';
import { bulkTenants } from '../../src/admin/bulk';
import { bulkAudit } from './bulkActionBudgets';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const started = Date.now();
  const { envelope, replayed } = await bulkTenants(ctx.deps.redis, ctx.body, eventCtx(ctx, true), ctx.deps.config.features.has('v0.1.26'), reservationRetainArg(ctx.deps.config));
  return { status: 200, body: envelope, audit: bulkAudit('tenant', ctx.body, envelope, replayed, started) };
}
