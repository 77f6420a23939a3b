import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { normalizeSecurityConfig, saveWebhookSecurityConfig } from '../../src/events/urlCheck';

// PUT replaces the whole object; an omitted member takes its spec default. Existing
// subscriptions are not re-validated (every delivery re-checks its URL anyway).
export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const cfg = normalizeSecurityConfig(ctx.body ?? {});
  await saveWebhookSecurityConfig(ctx.deps.redis, cfg);
  return { status: 200, body: cfg, audit: { resourceType: 'config', resourceId: 'webhook-security' } };
}
