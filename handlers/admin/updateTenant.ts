import { reservationRetainArg } from '../../src/ledger/retention';
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ApiError } from '../../src/errors';
import { keys } from '../../src/store/keys';
import { eventCtx } from '../../src/admin/common';
import { renderTenant, updateTenant } from '../../src/admin/tenants';
import { markClosePending, runCloseCascade } from '../../src/admin/cascade';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const { redis } = ctx.deps;
  const tenant = ctx.params.tenant_id;
  const ev = eventCtx(ctx);
  const closing = ctx.body?.status === 'CLOSED';
  // The pending mark goes first, so a crash right after the flip is still resumable.
  if (closing) await markClosePending(redis, tenant);
  let result;
  try {
    result = await updateTenant(redis, tenant, ctx.body ?? {}, ev);
  } catch (e) {
    if (closing && (await redis.hget(keys.tenant(tenant), 'status')) !== 'CLOSED') await redis.srem(keys.closePending(), tenant);
    throw e;
  }
  if (closing) {
    // Runs on the first close and on every re-close (completes an interrupted cascade).
    const report = await runCloseCascade(redis, tenant, ev, reservationRetainArg(ctx.deps.config));
    if (report.failed_resources.length > 0) {
      throw new ApiError('INTERNAL_ERROR', 'Tenant is CLOSED but the close cascade is incomplete; re-issue the close to resume',
        { failed_resources: report.failed_resources });
    }
    result.tenant = (await redis.hgetall(keys.tenant(tenant))) as Record<string, string>;
  }
  return { status: 200, body: renderTenant(result.tenant, ctx.deps.config.features.has('v0.1.26')) };
}
