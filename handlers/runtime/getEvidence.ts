// GET /v1/evidence/{evidence_id} — public: the signed envelope, byte for byte as stored.
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { ENVELOPE_CACHE_CONTROL, fetchEnvelope } from '../../src/evidence/serve';

export default async function getEvidence(ctx: HandlerContext): Promise<HandlerResult> {
  const raw = await fetchEnvelope(ctx.deps.redis, ctx.deps.config, ctx.params.evidence_id, ctx.sourceIp);
  return { status: 200, rawJson: raw, headers: { 'Cache-Control': ENVELOPE_CACHE_CONTROL } };
}
