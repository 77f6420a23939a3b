// RFC 8785 (JCS) bytes for CyclesEvidence. The `canonicalize` package does the value-level
// rules (UTF-16 member order, ECMAScript number printing, minimal string escapes); this
// module adds what it lets through: a lone surrogate (RFC 8785 §3.2.2.2: must fail, the
// package escapes it), anything that is not plain JSON data (functions, Dates, Maps, class
// instances, cycles) and int64 values that a binary64 number would change (docs/decisions.md
// DEV1): a BigInt, or in producer mode an integer-valued double, is written only when its
// JCS text is exactly its decimal value; otherwise canonicalization fails, it never rounds.
import canonicalize from 'canonicalize';
import { MAX_JSON_DEPTH } from '../json';

export type CanonicalMode =
  /** what we sign: every integer must print as its exact decimal value (DEV1) */
  | 'producer'
  /** what a verifier re-canonicalizes: numbers are the doubles of the I-JSON data model
   *  (a third-party envelope may carry e.g. `1e+21` in metadata) */
  | 'ijson';

export type CanonicalProblem = 'lone_surrogate' | 'non_finite' | 'inexact_integer' | 'not_json' | 'too_deep';

export class CanonicalizationError extends Error {
  constructor(readonly problem: CanonicalProblem, readonly path: string, detail: string) {
    super(`cannot canonicalize ${path}: ${detail}`);
    this.name = 'CanonicalizationError';
  }
}

// An envelope nests the attested request a few levels below the root; request bodies are
// bounded at MAX_JSON_DEPTH by the parser, so this bound only trips on a bug (or a cycle).
const MAX_DEPTH = MAX_JSON_DEPTH + 8;
const encoder = new TextEncoder();

/** The JCS text of `value` (a JSON value; object members whose value is `undefined` are
 *  absent, as in JSON.stringify). Throws CanonicalizationError, never returns rounded text. */
export function canonicalJson(value: unknown, mode: CanonicalMode = 'producer'): string {
  const text = canonicalize(checked(value, mode, '$', 0));
  if (text === undefined) throw new CanonicalizationError('not_json', '$', 'no JSON value');
  return text;
}

/** UTF-8 bytes of canonicalJson (what is hashed and signed). */
export function canonicalBytes(value: unknown, mode: CanonicalMode = 'producer'): Uint8Array {
  return encoder.encode(canonicalJson(value, mode));
}

/** True when the double `n` prints (ECMAScript Number::toString, which JCS uses) as the
 *  exact decimal of `exact`. 2^53 = "9007199254740992" passes; 2^53+1 has no double; 2^60
 *  is a double but prints "1152921504606847000", a different integer, so it fails too. */
function printsExactly(n: number, exact: bigint): boolean {
  return Number.isFinite(n) && String(n) === exact.toString();
}

/** A copy holding only JSON data (BigInt turned into the double that prints it exactly),
 *  so the package sees nothing it would render differently from RFC 8785. */
function checked(v: unknown, mode: CanonicalMode, path: string, depth: number): unknown {
  switch (typeof v) {
    case 'string':
      if (!v.isWellFormed()) throw new CanonicalizationError('lone_surrogate', path, 'string holds an unpaired surrogate');
      return v;
    case 'boolean':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw new CanonicalizationError('non_finite', path, `${v} is not a JSON number`);
      if (mode === 'producer' && Number.isInteger(v) && !Number.isSafeInteger(v) && !printsExactly(v, BigInt(v))) {
        throw new CanonicalizationError('inexact_integer', path, `integer ${BigInt(v)} would be written as ${String(v)}`);
      }
      return v;
    case 'bigint': {
      const n = Number(v);
      if (!printsExactly(n, v)) {
        throw new CanonicalizationError('inexact_integer', path, `int64 ${v} has no exact binary64 form (nearest prints as ${String(n)})`);
      }
      return n;
    }
    case 'object':
      break;
    default:
      throw new CanonicalizationError('not_json', path, `${typeof v} is not JSON data`);
  }
  if (v === null) return null;
  if (depth >= MAX_DEPTH) throw new CanonicalizationError('too_deep', path, `nested deeper than ${MAX_DEPTH} levels (or cyclic)`);
  if (Array.isArray(v)) {
    return v.map((x, i) => {
      if (x === undefined) throw new CanonicalizationError('not_json', `${path}[${i}]`, 'undefined array element');
      return checked(x, mode, `${path}[${i}]`, depth + 1);
    });
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    throw new CanonicalizationError('not_json', path, `${(v as object).constructor?.name ?? 'object'} is not a plain JSON object`);
  }
  // null prototype: a member named "__proto__" (legal JSON) stays an ordinary member
  const out: Record<string, unknown> = Object.create(null);
  for (const k of Object.keys(v)) {
    const at = `${path}[${JSON.stringify(k.isWellFormed() ? k : k.toWellFormed())}]`;
    if (!k.isWellFormed()) throw new CanonicalizationError('lone_surrogate', at, 'member name holds an unpaired surrogate');
    const x = (v as Record<string, unknown>)[k];
    if (x !== undefined) out[k] = checked(x, mode, at, depth + 1);
  }
  return out;
}
