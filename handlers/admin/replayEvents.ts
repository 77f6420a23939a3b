import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { replayEvents } from '../../src/events/deliveries';

// 202: every deliverable event of the window is selected and queued oldest first, or 400
// (more than max_events, or past the scan limit) with nothing queued; 409 while a replay to
// the same subscription is still being delivered.
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const id = ctx.params.subscription_id;
  if (ctx.audit) { ctx.audit.resourceType = 'webhook'; ctx.audit.resourceId = id; }
  return { status: 202, body: await replayEvents(ctx) };
}
