// Lossless JSON for int64 money. JSON.parse rounds integers above 2^53; every amount in
// the spec is int64, so request bodies that could carry such integers are parsed with
// lossless-json, and responses serialise BigInt exactly. See docs/decisions.md (int64).
import { parse as losslessParse, isInteger } from 'lossless-json';
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { ApiError } from './errors';

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const MAX_JSON_DEPTH = 64;
/** An evidence envelope wraps an attested request body (itself up to MAX_JSON_DEPTH deep)
 *  3 levels down (root → payload → <artifact> → request): documents someone else produced
 *  (parseJsonDoubles) get this bound, the same as src/evidence/canonical.ts allows. */
export const MAX_ENVELOPE_DEPTH = MAX_JSON_DEPTH + 8;

/** Result of parsing a request body: `value` is exact (unsafe integers are BigInt);
 *  `view` is the same document with BigInt turned into Number, for ajv (which only
 *  understands numbers); the int64 range is checked here, not by ajv. */
export interface ParsedBody { value: unknown; view: unknown }

// A run of 16+ digits is the only way an integer literal can exceed 2^53 (~9.007e15)
// without an exponent; exponents are caught by the number check of the walk below.
const LONG_DIGITS = /\d{16,}/;

/** A request body as bytes: must be well-formed UTF-8 (no silent U+FFFD replacement, which
 *  would make two different idempotency keys one), then parsed as below. */
export function parseJsonBytes(raw: Buffer): ParsedBody {
  if (!isUtf8(raw)) throw new ApiError('INVALID_REQUEST', 'Request body is not well-formed UTF-8');
  return parseJsonBody(raw.toString('utf8'));
}

/** One rule for every JSON document the server accepts (docs/decisions.md D16): nesting
 *  bounded, no duplicate member names, every string (names too) well-formed Unicode, every
 *  number exact (int64 beyond 2^53 becomes BigInt, never a rounded double). */
export function parseJsonBody(text: string): ParsedBody {
  const scan = scanText(text);
  let value: unknown;
  const lossless = LONG_DIGITS.test(text);
  try {
    value = lossless ? losslessParse(text, null, parseNumberExact) : JSON.parse(text);
  } catch (e) {
    if (e instanceof ApiError) throw e;
    // lossless-json refuses a repeated name itself (when the values differ)
    if (lossless && e instanceof Error && e.message.startsWith('Duplicate key')) throw duplicateKey(text);
    throw malformed(e);
  }
  const walk: Walk = { members: 0, strings: scan.escapes, path: [] };
  checkTree(value, walk);
  // In valid JSON every member has exactly one ':' outside strings; fewer members in the
  // parsed value than colons in the text means a name occurred twice in one object.
  if (walk.members !== scan.colons) throw duplicateKey(text);
  return lossless ? { value, view: toView(value) } : { value, view: value };
}

/** JSON text this server wrote itself (e.g. the normalized request an evidence source
 *  holds): the same values as parseJsonBody — integers past 2^53 exact — without the checks
 *  that only untrusted input needs. */
export function parseOwnJson(text: string): unknown {
  return LONG_DIGITS.test(text) ? losslessParse(text, null, parseNumberExact) : JSON.parse(text);
}

/** The same checks as parseJsonBody (depth, duplicate names, well-formed Unicode) but with
 *  numbers as the doubles of the I-JSON data model, as JCS re-canonicalization wants them:
 *  for verifying documents someone else produced (src/evidence/verify.ts), never for requests. */
export function parseJsonDoubles(text: string): unknown {
  const scan = scanText(text, MAX_ENVELOPE_DEPTH);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw malformed(e);
  }
  const walk: Walk = { members: 0, strings: scan.escapes, path: [], doubles: true };
  checkTree(value, walk);
  if (walk.members !== scan.colons) throw duplicateKey(text);
  return value;
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

interface Walk {
  members: number;
  /** the text has \u escapes, the only way a decoded string can hold a lone surrogate */
  strings: boolean;
  /** member names / indexes from the root to the value being checked (for messages) */
  path: (string | number)[];
  /** numbers are plain doubles (parseJsonDoubles): only non-finite ones are refused */
  doubles?: boolean;
}

function checkTree(v: unknown, w: Walk): void {
  if (typeof v === 'string') {
    if (w.strings && !v.isWellFormed()) throw notUnicode(w.path, false);
  } else if (typeof v === 'number') {
    if (w.doubles ? !Number.isFinite(v) : !Number.isFinite(v) || (Number.isInteger(v) && !Number.isSafeInteger(v))) {
      throw new ApiError('INVALID_REQUEST', `Number ${v} at ${fieldName(w.path)} cannot be represented exactly (int64 values above 2^53 must be written as plain integers)`);
    }
  } else if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      w.path.push(i);
      checkTree(v[i], w);
      w.path.pop();
    }
  } else if (v !== null && typeof v === 'object') {
    const names = Object.keys(v);
    w.members += names.length;
    for (const k of names) {
      w.path.push(k);
      if (w.strings && !k.isWellFormed()) throw notUnicode(w.path, true);
      checkTree((v as Record<string, unknown>)[k], w);
      w.path.pop();
    }
  }
}

function notUnicode(path: (string | number)[], name: boolean): ApiError {
  const field = fieldName(name ? path.slice(0, -1) : path);
  const what = name ? `A member name in ${field}` : field;
  return new ApiError('INVALID_REQUEST', `${what} is not well-formed Unicode (it holds an unpaired surrogate escape)`, { field });
}

/** `body.subject.tenant`, `body.tags[0]`; names that are not identifiers are quoted. */
export function fieldName(path: (string | number)[]): string {
  let out = 'body';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) out += `.${p}`;
    else out += `[${JSON.stringify(p.isWellFormed() ? p : p.toWellFormed())}]`;
  }
  return out;
}

/** Names the first repeated member (only called once the cheap count saw one). The text
 *  already parsed, so it is valid JSON and a plain scan of it is enough. */
function duplicateKey(text: string): ApiError {
  type Frame = { names: Set<string>; name?: string } | { index: number };
  const stack: Frame[] = [];
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (expectName && top && 'names' in top) {
        const name = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.names.has(name)) {
          const path = stack.slice(0, -1).map((f) => ('names' in f ? f.name! : f.index));
          const field = fieldName(path);
          return new ApiError('INVALID_REQUEST', `Duplicate member name "${name}" in ${field} (each name may occur once per object)`, { field });
        }
        top.names.add(name);
        top.name = name;
        expectName = false;
      }
      i = j;
    } else if (c === '{') { stack.push({ names: new Set() }); expectName = true; }
    else if (c === '[') stack.push({ index: 0 });
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',' && top) {
      if ('names' in top) expectName = true;
      else top.index++;
    }
  }
  return new ApiError('INVALID_REQUEST', 'Duplicate member name in the request body (each name may occur once per object)');
}

/** One pass over the text outside strings: bounds bracket depth (recursion in any parser
 *  is bounded by this), counts ':' (one per object member) and notes \u escapes. */
function scanText(text: string, maxDepth = MAX_JSON_DEPTH): { colons: number; escapes: boolean } {
  let depth = 0;
  let colons = 0;
  let escapes = false;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) {
        if (text.charCodeAt(i + 1) === 117 /* u */) escapes = true;
        i++;
      } else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 58 /* : */) colons++;
    else if (c === 123 || c === 91) {
      if (++depth > maxDepth) {
        throw new ApiError('INVALID_REQUEST', `JSON nesting deeper than ${maxDepth} levels`);
      }
    } else if (c === 125 || c === 93) depth--;
  }
  return { colons, escapes };
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
