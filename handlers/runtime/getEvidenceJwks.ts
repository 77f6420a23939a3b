// GET /v1/.well-known/cycles-jwks.json — public: the evidence signing keys (never private material).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { JWKS_CACHE_CONTROL, publishedJwks } from '../../src/evidence/serve';

export default async function getEvidenceJwks(ctx: HandlerContext): Promise<HandlerResult> {
  return { status: 200, body: publishedJwks(ctx.deps.config), headers: { 'Cache-Control': JWKS_CACHE_CONTROL } };
}
