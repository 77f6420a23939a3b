// RFC 8785 (JCS) bytes for CyclesEvidence: the value-level rules of the `canonicalize`
// package (UTF-16 member order, ECMAScript number printing, minimal string escapes — the
// same text, written in one pass here), plus refusals of what that package lets through: a lone surrogate (RFC 8785 §3.2.2.2: must fail, the
// package escapes it), anything that is not plain JSON data (functions, Dates, Maps, class
// instances, cycles) and int64 values that a binary64 number would change (docs/decisions.md
// DEV1): a BigInt, or in producer mode an integer-valued double, is written only when its
// JCS text is exactly its decimal value; otherwise canonicalization fails, it never rounds.
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
  return write(value, mode, [], 0);
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

/** `$["a"][0]` — built only when an error is thrown. */
function pathOf(at: (string | number)[]): string {
  let out = '$';
  for (const k of at) out += typeof k === 'number' ? `[${k}]` : `[${JSON.stringify(k.isWellFormed() ? k : k.toWellFormed())}]`;
  return out;
}

/**
 * One pass: the RFC 8785 text, with the checks the `canonicalize` package lacks. The text is
 * exactly the package's on the values that pass (it, too, writes strings, member names and
 * numbers with JSON.stringify and orders members by Array.prototype.sort's UTF-16 order —
 * test/evidence-canonical.test.ts compares both on the RFC vectors); what it would have
 * written for a lone surrogate, a non-JSON value or an int64 that binary64 changes is refused
 * instead. `at` is the current path, kept as a stack so that it costs nothing unless thrown.
 */
function write(v: unknown, mode: CanonicalMode, at: (string | number)[], depth: number): string {
  switch (typeof v) {
    case 'string':
      if (!v.isWellFormed()) throw new CanonicalizationError('lone_surrogate', pathOf(at), 'string holds an unpaired surrogate');
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) throw new CanonicalizationError('non_finite', pathOf(at), `${v} is not a JSON number`);
      if (mode === 'producer' && Number.isInteger(v) && !Number.isSafeInteger(v) && !printsExactly(v, BigInt(v))) {
        throw new CanonicalizationError('inexact_integer', pathOf(at), `integer ${BigInt(v)} would be written as ${String(v)}`);
      }
      return JSON.stringify(v);
    case 'bigint': {
      const n = Number(v);
      if (!printsExactly(n, v)) {
        throw new CanonicalizationError('inexact_integer', pathOf(at), `int64 ${v} has no exact binary64 form (nearest prints as ${String(n)})`);
      }
      return JSON.stringify(n);
    }
    case 'object':
      break;
    default:
      throw new CanonicalizationError('not_json', pathOf(at), `${typeof v} is not JSON data`);
  }
  if (v === null) return 'null';
  if (depth >= MAX_DEPTH) throw new CanonicalizationError('too_deep', pathOf(at), `nested deeper than ${MAX_DEPTH} levels (or cyclic)`);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      at.push(i);
      const x: unknown = v[i];
      if (x === undefined) throw new CanonicalizationError('not_json', pathOf(at), 'undefined array element');
      out += (i === 0 ? '' : ',') + write(x, mode, at, depth + 1);
      at.pop();
    }
    return out + ']';
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    throw new CanonicalizationError('not_json', pathOf(at), `${(v as object).constructor?.name ?? 'object'} is not a plain JSON object`);
  }
  const names = Object.keys(v).sort();
  let out = '{';
  let first = true;
  for (const k of names) {
    at.push(k);
    if (!k.isWellFormed()) throw new CanonicalizationError('lone_surrogate', pathOf(at), 'member name holds an unpaired surrogate');
    const x = (v as Record<string, unknown>)[k];
    if (x !== undefined) {
      out += (first ? '' : ',') + JSON.stringify(k) + ':' + write(x, mode, at, depth + 1);
      first = false;
    }
    at.pop();
  }
  return out + '}';
}
