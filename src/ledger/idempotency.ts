// Idempotency helpers shared by every idempotent runtime operation (reserve, decide,
// commit, release, extend, events). Runtime spec IDEMPOTENCY:
//  - header X-Idempotency-Key and body idempotency_key, when both present, MUST match
//    (a mismatch is a malformed request → 400 INVALID_REQUEST, docs/decisions.md DR3);
//  - payloads are compared over a canonical JSON form (RFC 8785 via `canonicalize`), so
//    key order and whitespace never cause IDEMPOTENCY_MISMATCH.
// The record itself lives in Redis under keys.idem(tenant, endpoint, key) and is
// read/written inside each operation's Lua script (see src/store/lua/reserve.lua).
import { createHash, randomBytes } from 'node:crypto';
import canonicalize from 'canonicalize';
import { ApiError } from '../errors';

/** The request's idempotency key: body `idempotency_key`, reconciled with the
 *  X-Idempotency-Key header. Either may be absent, not both; both must agree. */
export function idempotencyKeyFrom(ctx: { body?: unknown; headers: Record<string, string | string[] | undefined> }): string {
  const raw = ctx.headers['x-idempotency-key'];
  const header = Array.isArray(raw) ? raw[0] : raw;
  const body = ctx.body && typeof ctx.body === 'object' ? (ctx.body as Record<string, unknown>).idempotency_key : undefined;
  if (header !== undefined && body !== undefined && header !== body) {
    throw new ApiError('INVALID_REQUEST', 'X-Idempotency-Key header does not match body idempotency_key');
  }
  const key = body ?? header;
  if (typeof key !== 'string' || key.length < 1 || key.length > 256) {
    throw new ApiError('INVALID_REQUEST', 'idempotency_key is required (1..256 characters)');
  }
  return key;
}

// BigInt has no JSON form; it is hashed as the exact JSON integer. A per-process random
// marker carries it through canonicalize and is replaced in the output, so the hashed
// text is independent of the marker and equal to what a lossless serialiser would write.
const MARK = `__i64_${randomBytes(8).toString('hex')}__`;
const MARK_RE = new RegExp(`"${MARK}(-?\\d+)"`, 'g');

function tagBigInts(v: unknown): unknown {
  if (typeof v === 'bigint') return MARK + v.toString();
  if (Array.isArray(v)) return v.map(tagBigInts);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = tagBigInts((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** Canonical JSON text of a request payload (RFC 8785 key order, exact int64). */
export function canonicalJson(obj: unknown): string {
  const text = canonicalize(tagBigInts(obj));
  if (text === undefined) throw new Error('payload has no JSON form');
  return text.includes(MARK) ? text.replace(MARK_RE, '$1') : text;
}

/** SHA-256 hex of the canonical JSON of `obj`: the value idempotency records compare. */
export function payloadHash(obj: unknown): string {
  return createHash('sha256').update(canonicalJson(obj), 'utf8').digest('hex');
}
