import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listEvents } from '../../src/events/query';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const page = await listEvents(ctx.deps.redis, ctx.query);
  return { status: 200, body: page, audit: { resourceType: 'event' } };
}
