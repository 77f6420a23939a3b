import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { listAuditLogs } from '../../src/admin/auditQuery';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  const page = await listAuditLogs(ctx.deps.redis, ctx.query);
  return { status: 200, body: page };
}
