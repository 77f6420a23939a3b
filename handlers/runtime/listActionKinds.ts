// GET /v1/action-kinds — the public built-in registry, paged, with ETag / If-None-Match.
// A 304 does not count against the per-client throttle (the spec's SHOULD).
import type { HandlerContext, HandlerResult } from '../../src/http/types';
import { admit, ifNoneMatchHits, listKinds, publicRegistry } from '../../src/governance/publicRegistry';

export default async function listActionKinds(ctx: HandlerContext): Promise<HandlerResult> {
  const pr = publicRegistry(ctx.deps.config);
  const page = listKinds(pr.registry, ctx.query); // a bad cursor is a 400 before any 304
  const etag = pr.registry.etag;
  if (ifNoneMatchHits(ctx.headers['if-none-match'], etag)) return { status: 304, headers: { ETag: etag } };
  admit(pr, ctx.sourceIp);
  return { status: 200, body: page, headers: { ETag: etag, 'Cache-Control': 'public, max-age=3600' } };
}
