import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { getEvent } from '../../src/events/query';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const event = await getEvent(ctx.deps.redis, ctx.params.event_id);
  return { status: 200, body: event, audit: { resourceType: 'event', resourceId: event.event_id, tenantId: event.tenant_id } };
}
