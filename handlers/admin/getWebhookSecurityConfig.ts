import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { loadWebhookSecurityConfig } from '../../src/events/urlCheck';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: await loadWebhookSecurityConfig(ctx.deps.redis), audit: { resourceType: 'config', resourceId: 'webhook-security' } };
}
