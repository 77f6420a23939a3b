// GET /v1/action-kinds/{kind} — exact match (built-in or declared custom.*), public, throttled.
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { admit, getKind, publicRegistry } from '../../src/governance/publicRegistry';

export default async function getActionKind(ctx: HandlerContext): Promise<HandlerResult> {
  const pr = publicRegistry(ctx.deps.config);
  admit(pr, ctx.sourceIp);
  return { status: 200, body: getKind(pr.registry, ctx.params.kind) };
}
