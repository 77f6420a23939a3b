// Idempotency helpers shared by every idempotent runtime operation (reserve, decide,
// commit, release, extend, events). Runtime spec IDEMPOTENCY:
//  - header X-Idempotency-Key and body idempotency_key, when both present, MUST match
//    (a mismatch is a malformed request → 400 INVALID_REQUEST, docs/decisions.md DR3);
//  - payloads are compared over a canonical JSON form (RFC 8785: canonicalJson below), so
//    key order and whitespace never cause IDEMPOTENCY_MISMATCH.
// The record itself lives in Redis under keys.idem(tenant, endpoint, key) and is
// read/written inside each operation's Lua script (see src/store/lua/reserve.lua).
import { ApiError } from '../errors';
import { sha256Hex } from '../auth/apiKeys';

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

/** Canonical JSON text of a request payload: RFC 8785 key order (UTF-16 code units),
 *  exact int64 (a BigInt is written as its JSON integer). Byte-identical to the
 *  `canonicalize` package on BigInt-free input (test/idempotency-canonical.test.ts), in
 *  one pass without copying the payload. */
export function canonicalJson(obj: unknown): string {
  const text = canon(obj);
  if (text === undefined) throw new Error('payload has no JSON form');
  return text;
}

function canon(v: unknown): string | undefined {
  switch (typeof v) {
    case 'bigint':
      return v.toString();
    case 'number':
      if (!Number.isFinite(v)) throw new Error(Number.isNaN(v) ? 'NaN is not allowed' : 'Infinity is not allowed');
      return JSON.stringify(v);
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'object':
      break;
    default:
      return undefined; // undefined, function, symbol: no JSON form
  }
  if (v === null) return 'null';
  const o = v as { toJSON?: unknown };
  if (typeof o.toJSON === 'function') return canon((o.toJSON as () => unknown)());
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      const x: unknown = v[i];
      out += (x === undefined || typeof x === 'symbol') ? 'null' : (canon(x) ?? 'null');
    }
    return out + ']';
  }
  const rec = v as Record<string, unknown>;
  const names = sortKeys(Object.keys(rec));
  let out = '{';
  let first = true;
  for (const k of names) {
    const x = rec[k];
    if (x === undefined || typeof x === 'symbol') continue;
    out += (first ? '' : ',') + JSON.stringify(k) + ':' + canon(x);
    first = false;
  }
  return out + '}';
}

/** Keys in UTF-16 code-unit order (as Array.prototype.sort's default compare). Request
 *  objects have a handful of keys: an in-place insertion sort avoids the temporary
 *  storage the built-in sort allocates on every call. */
function sortKeys(a: string[]): string[] {
  if (a.length > 16) return a.sort();
  for (let i = 1; i < a.length; i++) {
    const x = a[i];
    let j = i - 1;
    while (j >= 0 && a[j] > x) { a[j + 1] = a[j]; j--; }
    a[j + 1] = x;
  }
  return a;
}

/** SHA-256 hex of the canonical JSON of `obj`: the value idempotency records compare. */
export function payloadHash(obj: unknown): string {
  return sha256Hex(canonicalJson(obj));
}
