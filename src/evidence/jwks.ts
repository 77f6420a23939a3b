// Both sides of CyclesEvidenceJwks: rendering our set (active key + retired keys with their
// windows, public material only) and the spec's deterministic key selection a verifier
// runs against any set ("Key selection" / "Deterministic selection" in
// cycles-evidence-v0.2.yaml): by window, never by recency or `status`.
import type { EvidenceIdentity } from './keys';
import type { CyclesEvidenceJwk, CyclesEvidenceJwks } from './types';

const b64url = (hex: string): string => Buffer.from(hex, 'hex').toString('base64url');

function jwk(publicKeyHex: string, kid: string, nbfMs: number, expMs: number | undefined, status: 'active' | 'retired'): CyclesEvidenceJwk {
  // member order as the reference publishes it (the document is not canonicalized)
  const k: CyclesEvidenceJwk = { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', x: b64url(publicKeyHex), kid, cycles_nbf_ms: nbfMs };
  if (expMs !== undefined) k.cycles_exp_ms = expMs;
  k.status = status;
  return k;
}

/** The JWK Set to publish at `{server_id}/.well-known/cycles-jwks.json`: the active key
 *  (open-ended: no cycles_exp_ms) first, then every retired key with its closed window. */
export function jwkSet(id: Pick<EvidenceIdentity, 'publicKeyHex' | 'kid' | 'nbfMs' | 'retired'>): CyclesEvidenceJwks {
  return {
    keys: [
      jwk(id.publicKeyHex, id.kid, id.nbfMs, undefined, 'active'),
      ...id.retired.map((r) => jwk(r.publicKeyHex, r.kid, r.nbfMs, r.expMs, 'retired')),
    ],
  };
}

/** A JWK that may take part in selection: raw key bytes plus its window. */
export interface CandidateKey { kid: string; publicKey: Uint8Array; nbfMs: number; expMs: number | undefined }

const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;

/** The JWK's key and window, or undefined when the spec says it is INVALID and excluded:
 *  wrong kty/crv, a present non-EdDSA alg, x not unpadded base64url of 32 bytes, a
 *  non-string kid, a missing/non-integer cycles_nbf_ms, a non-integer cycles_exp_ms. */
export function candidateOf(k: unknown): CandidateKey | undefined {
  if (k === null || typeof k !== 'object' || Array.isArray(k)) return undefined;
  const o = k as Record<string, unknown>;
  if (o.kty !== 'OKP' || o.crv !== 'Ed25519') return undefined;
  if (o.alg !== undefined && o.alg !== 'EdDSA') return undefined;
  if (typeof o.x !== 'string' || !B64URL_32.test(o.x)) return undefined;
  const publicKey = new Uint8Array(Buffer.from(o.x, 'base64url'));
  // 43 chars carry 258 bits: the last char's 2 spare bits must be zero (canonical encoding)
  if (publicKey.length !== 32 || Buffer.from(publicKey).toString('base64url') !== o.x) return undefined;
  if (typeof o.kid !== 'string') return undefined;
  if (typeof o.cycles_nbf_ms !== 'number' || !Number.isInteger(o.cycles_nbf_ms)) return undefined;
  const exp = o.cycles_exp_ms;
  if (exp !== undefined && exp !== null && (typeof exp !== 'number' || !Number.isInteger(exp))) return undefined;
  return { kid: o.kid, publicKey, nbfMs: o.cycles_nbf_ms, expMs: exp ?? undefined };
}

/** The window gate: nbf <= issued_at and (exp absent/null or issued_at < exp). */
export const covers = (k: CandidateKey, issuedAtMs: number): boolean =>
  k.nbfMs <= issuedAtMs && (k.expMs === undefined || issuedAtMs < k.expMs);

export type Selection =
  | { ok: true; key: CandidateKey }
  | { ok: false; reason: string };

/** Select the one key authorised for an envelope. `want` is the DID's kid, or the raw key
 *  bytes of a raw-hex signer_did. Every failure here is signer_authority_failed. */
export function selectKey(keys: readonly unknown[], want: { kid: string } | { publicKey: Uint8Array }, issuedAtMs: number): Selection {
  const kids = new Map<string, number>();
  for (const k of keys) {
    const kid = (k as { kid?: unknown } | null)?.kid;
    if (typeof kid === 'string') kids.set(kid, (kids.get(kid) ?? 0) + 1);
  }
  const dup = [...kids].find(([, n]) => n > 1);
  if (dup) return { ok: false, reason: `duplicate kid "${dup[0]}" in the JWK Set` };
  const valid = keys.map(candidateOf).filter((k): k is CandidateKey => k !== undefined);
  const named = 'kid' in want
    ? valid.filter((k) => k.kid === want.kid)
    : valid.filter((k) => Buffer.from(k.publicKey).equals(Buffer.from(want.publicKey)));
  if (named.length === 0) {
    return { ok: false, reason: 'kid' in want ? `no valid JWK with kid "${want.kid}"` : 'the signing key is not in the JWK Set' };
  }
  const covering = named.filter((k) => covers(k, issuedAtMs));
  if (covering.length === 0) return { ok: false, reason: `no key window covers issued_at_ms ${issuedAtMs}` };
  if (covering.length > 1) return { ok: false, reason: `${covering.length} keys cover issued_at_ms ${issuedAtMs} (ambiguous)` };
  return { ok: true, key: covering[0] };
}
