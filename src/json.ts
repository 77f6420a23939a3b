// Lossless JSON for int64 money. JSON.parse rounds integers above 2^53; every amount in
// the spec is int64, so request bodies that could carry such integers are parsed with
// lossless-json, and responses serialise BigInt exactly. See docs/decisions.md (int64).
import { parse as losslessParse, isInteger } from 'lossless-json';
import { randomBytes } from 'node:crypto';
import { ApiError } from './errors';

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const MAX_JSON_DEPTH = 64;

/** Result of parsing a request body: `value` is exact (unsafe integers are BigInt);
 *  `view` is the same document with BigInt turned into Number, for ajv (which only
 *  understands numbers); the int64 range is checked here, not by ajv. */
export interface ParsedBody { value: unknown; view: unknown }

// A run of 16+ digits is the only way an integer literal can exceed 2^53 (~9.007e15)
// without an exponent; exponents are caught by the unsafe-number walk below.
const LONG_DIGITS = /\d{16,}/;

export function parseJsonBody(text: string): ParsedBody {
  checkDepth(text);
  if (!LONG_DIGITS.test(text)) {
    let value: unknown;
    try { value = JSON.parse(text); } catch (e) { throw malformed(e); }
    rejectUnsafeNumbers(value);
    return { value, view: value };
  }
  let value: unknown;
  try {
    value = losslessParse(text, null, parseNumberExact);
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw malformed(e);
  }
  return { value, view: toView(value) };
}

function malformed(e: unknown): ApiError {
  const why = e instanceof Error ? e.message : String(e);
  return new ApiError('INVALID_REQUEST', `Malformed JSON request body: ${why}`);
}

function parseNumberExact(text: string): number | bigint {
  if (isInteger(text)) {
    const n = Number(text);
    if (Number.isSafeInteger(n)) return n;
    const big = BigInt(text);
    if (big < INT64_MIN || big > INT64_MAX) {
      throw new ApiError('INVALID_REQUEST', `Integer ${text} is outside the int64 range`);
    }
    return big;
  }
  const n = Number(text);
  if (!Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n))) {
    throw new ApiError('INVALID_REQUEST', `Number ${text} cannot be represented exactly`);
  }
  return n;
}

function rejectUnsafeNumbers(v: unknown): void {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || (Number.isInteger(v) && !Number.isSafeInteger(v))) {
      throw new ApiError('INVALID_REQUEST', `Number ${v} cannot be represented exactly (int64 values above 2^53 must be written as plain integers)`);
    }
  } else if (Array.isArray(v)) {
    for (const x of v) rejectUnsafeNumbers(x);
  } else if (v !== null && typeof v === 'object') {
    for (const k in v as Record<string, unknown>) rejectUnsafeNumbers((v as Record<string, unknown>)[k]);
  }
}

/** The document with BigInt turned into Number (and undefined members dropped), for
 *  ajv, which only understands numbers; exactness is the serializer's job. */
export function toView(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(toView);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = toView(x);
    }
    return out;
  }
  return v;
}

/** Counts bracket depth outside strings; recursion in any parser is bounded by this. */
function checkDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new ApiError('INVALID_REQUEST', `JSON nesting deeper than ${MAX_JSON_DEPTH} levels`);
      }
    } else if (c === 125 || c === 93) depth--;
  }
}

// Random per process so no user string can collide with the placeholder.
const MARK = `\u0001i64${randomBytes(6).toString('hex')}:`;
const MARK_RE = new RegExp(`"${JSON.stringify(MARK).slice(1, -1).replace(/\\/g, '\\\\')}(-?\\d+)"`, 'g');

function bigReplacer(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') {
    return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : MARK + v.toString();
  }
  return v;
}

/** JSON.stringify that writes BigInt as exact JSON integers. Responses hold BigInt only
 *  for values beyond 2^53 (toJsonInt), so the plain, replacer-free stringify is tried
 *  first; it throws on a BigInt, and only then is the (slower) replacer pass taken. */
export function stringify(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
  }
  const s = JSON.stringify(value, bigReplacer);
  return s.includes('i64') ? s.replace(MARK_RE, '$1') : s;
}

/** Exact int64 from a parsed JSON number or decimal string. */
export function toBig(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  throw new ApiError('INVALID_REQUEST', `Expected an integer, got ${String(v)}`);
}

/** BigInt → number when exactly representable, else stays BigInt (serialised exactly). */
export function toJsonInt(v: bigint): number | bigint {
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}
