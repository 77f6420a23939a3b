import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { introspect } from '../../src/admin/apiKeys';

export default async function (ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: introspect(ctx.principal) };
}
