// Offline verification of one envelope, reporting exactly one of the spec's dispositions
// (cycles-evidence-v0.2.yaml, CyclesEvidenceJwks "Verification dispositions"). The
// received envelope is re-canonicalized (never trusted as bytes), its evidence_id
// recomputed, the signature checked with @noble/ed25519 against the key the signer_did
// names or the JWK Set selects. How the spec's five outcomes cover malformed input, and the
// order of the checks: docs/decisions.md DEV5.
import { defaultEvidenceSchemaCheck } from './schema';
import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { parseJsonDoubles } from '../json';
import { CanonicalizationError } from './canonical';
import { verifyBytes } from './ed25519';
import { EVIDENCE_ID_RE, SIGNATURE_RE, TRACE_ID_RE, evidenceIdOf, jwksUrl, signingInputOf } from './envelope';
import { selectKey } from './jwks';
import { ARTIFACT_TYPES, SCHEMA_VERSION, type CyclesEvidence, type Disposition } from './types';

/** Where the JWK Set comes from: given, read from a file or URL, or fetched from the
 *  envelope's own `{server_id}/.well-known/cycles-jwks.json`. */
export type JwksInput = { set: unknown } | { location: string } | { fromServerId: true };

export interface VerifyOptions {
  /** without it there is no authority resolution: raw hex → binding_only at best */
  jwks?: JwksInput;
  /** the signer_did this verifier expects (raw hex or did:cycles); reported as signer_pin_matched */
  expectedSigner?: string;
  /** the full schema check (src/evidence/schema.ts); returns a problem or null. Default: the
   *  generated CyclesEvidence schema — a verdict never skips the mirrors (DEV11). */
  schema?: (envelope: unknown) => string | null;
  /** bound on fetching a JWK Set (connect + body) */
  fetchTimeoutMs?: number;
}

export interface VerifyResult {
  disposition: Disposition;
  /** why, in words (stable enough for logs, not an API) */
  reason: string;
  /** the recomputed id, once the envelope was well-formed enough to compute it */
  evidence_id?: string;
  signer_did?: string;
  /** the JWK selected, when authority was established */
  kid?: string;
  /** present iff an expected signer was given and the signature verified */
  signer_pin_matched?: boolean;
}

const TOP_LEVEL = new Set(['schema_version', 'artifact_type', 'server_id', 'signer_did', 'issued_at_ms', 'trace_id', 'payload', 'evidence_id', 'signature']);
const REQUIRED = [...TOP_LEVEL].filter((k) => k !== 'trace_id');
const RAW_HEX_RE = /^[0-9a-f]{64}$/;
const DID_RE = /^did:cycles:([0-9a-f]{64})#(.+)$/;
/** bound on an envelope or JWK Set document read from a file or URL */
export const MAX_DOCUMENT_BYTES = 1 << 20;
const DEFAULT_FETCH_TIMEOUT_MS = 10_000;

const invalid = (reason: string, extra: Partial<VerifyResult> = {}): VerifyResult => ({ disposition: 'signature_invalid', reason, ...extra });

/** Parse envelope text or bytes (I-JSON: no duplicate names, well-formed Unicode). */
export function parseEnvelope(input: string | Uint8Array): { ok: true; value: unknown } | { ok: false; reason: string } {
  if (typeof input !== 'string' && !isUtf8(input)) return { ok: false, reason: 'not well-formed UTF-8' };
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  try {
    return { ok: true, value: parseJsonDoubles(text) };
  } catch (e) {
    return { ok: false, reason: `not a JSON envelope: ${(e as Error).message}` };
  }
}

/** What is wrong with the envelope's structure (the checks any verifier MUST make), or null. */
export function shapeProblem(v: unknown): string | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => !TOP_LEVEL.has(k));
  if (extra.length > 0) return `unknown member(s) ${extra.join(', ')}`;
  const missing = REQUIRED.filter((k) => !(k in o));
  if (missing.length > 0) return `missing member(s) ${missing.join(', ')}`;
  if (o.schema_version !== SCHEMA_VERSION) return `unsupported schema_version ${JSON.stringify(o.schema_version)}`;
  if (!(ARTIFACT_TYPES as readonly unknown[]).includes(o.artifact_type)) return `unknown artifact_type ${JSON.stringify(o.artifact_type)}`;
  const p = o.payload;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return 'payload is not an object';
  const keys = Object.keys(p);
  if (keys.length !== 1 || keys[0] !== o.artifact_type) return `payload must hold exactly "${String(o.artifact_type)}", holds ${keys.join(', ') || 'nothing'}`;
  if (typeof o.server_id !== 'string' || o.server_id === '') return 'server_id is not a string';
  if (typeof o.signer_did !== 'string' || !(RAW_HEX_RE.test(o.signer_did) || DID_RE.test(o.signer_did))) return 'signer_did is neither 64 lowercase hex nor did:cycles:<hash>#<kid>';
  if (typeof o.issued_at_ms !== 'number' || !Number.isSafeInteger(o.issued_at_ms) || o.issued_at_ms < 0) return 'issued_at_ms is not a non-negative integer';
  if (o.trace_id !== undefined && (typeof o.trace_id !== 'string' || !TRACE_ID_RE.test(o.trace_id))) return 'trace_id is not 32 lowercase hex';
  if (typeof o.evidence_id !== 'string' || !EVIDENCE_ID_RE.test(o.evidence_id)) return 'evidence_id is not 64 lowercase hex';
  if (typeof o.signature !== 'string' || !SIGNATURE_RE.test(o.signature)) return 'signature is not 128 lowercase hex';
  return null;
}

type Loaded = { ok: true; keys: unknown[] } | { ok: false; reason: string };

/** A document from a file path or an http(s) URL (bounded in size and time). */
export async function loadDocument(location: string, timeoutMs = DEFAULT_FETCH_TIMEOUT_MS): Promise<Buffer> {
  if (/^https?:\/\//i.test(location)) {
    const res = await fetch(location, { signal: AbortSignal.timeout(timeoutMs), redirect: 'follow', headers: { accept: 'application/json' } });
    if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${location}`);
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > MAX_DOCUMENT_BYTES) throw new Error(`${location}: larger than ${MAX_DOCUMENT_BYTES} bytes`);
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_DOCUMENT_BYTES) throw new Error(`${location}: larger than ${MAX_DOCUMENT_BYTES} bytes`);
    return body;
  }
  const body = await readFile(location);
  if (body.length > MAX_DOCUMENT_BYTES) throw new Error(`${location}: larger than ${MAX_DOCUMENT_BYTES} bytes`);
  return body;
}

/** Obtaining the set: any failure (network, status, unparseable, no `keys` array) is
 *  signer_resolution_failed — it says nothing about the envelope's bytes. */
async function loadJwks(input: JwksInput, serverId: string, timeoutMs: number): Promise<Loaded> {
  let doc: unknown;
  if ('set' in input) {
    doc = input.set;
  } else {
    const location = 'location' in input ? input.location : jwksUrl(serverId);
    try {
      const parsed = parseEnvelope(await loadDocument(location, timeoutMs));
      if (!parsed.ok) return { ok: false, reason: `JWK Set at ${location}: ${parsed.reason}` };
      doc = parsed.value;
    } catch (e) {
      return { ok: false, reason: `JWK Set unavailable: ${(e as Error).message}` };
    }
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (doc === null || typeof doc !== 'object' || !Array.isArray(keys)) return { ok: false, reason: 'JWK Set has no "keys" array' };
  return { ok: true, keys };
}

/** Verify one envelope (its bytes, its text, or an already parsed value). */
export async function verifyEnvelope(input: string | Uint8Array | object, opts: VerifyOptions = {}): Promise<VerifyResult> {
  let value: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const parsed = parseEnvelope(input);
    if (!parsed.ok) return invalid(parsed.reason);
    value = parsed.value;
  }
  const problem = shapeProblem(value) ?? (opts.schema ?? defaultEvidenceSchemaCheck())(value) ?? null;
  if (problem) return invalid(`malformed envelope: ${problem}`);
  const env = value as CyclesEvidence;
  const signerDid = env.signer_did;

  let recomputed: string;
  let signed: Uint8Array;
  try {
    recomputed = evidenceIdOf(env, 'ijson');
    signed = signingInputOf(env, env.evidence_id, 'ijson');
  } catch (e) {
    if (e instanceof CanonicalizationError) return invalid(`not canonicalizable: ${e.message}`, { signer_did: signerDid });
    throw e;
  }
  const base = { evidence_id: recomputed, signer_did: signerDid };
  if (recomputed !== env.evidence_id) return invalid(`evidence_id mismatch: content hashes to ${recomputed}`, base);
  const signature = new Uint8Array(Buffer.from(env.signature, 'hex'));
  const pin = opts.expectedSigner === undefined ? {} : { signer_pin_matched: opts.expectedSigner === signerDid };
  const timeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;

  const did = DID_RE.exec(signerDid);
  if (did === null) {
    // raw hex: validity first (the key is named), authority only when a set was asked for
    const key = new Uint8Array(Buffer.from(signerDid, 'hex'));
    if (!verifyBytes(signature, signed, key)) return invalid('signature does not verify against signer_did', base);
    if (opts.jwks === undefined) {
      return { disposition: 'binding_only', reason: 'signature valid; no JWK Set consulted, so signer authority is not established', ...base, ...pin };
    }
    const set = await loadJwks(opts.jwks, env.server_id, timeoutMs);
    if (!set.ok) return { disposition: 'signer_resolution_failed', reason: set.reason, ...base };
    const sel = selectKey(set.keys, { publicKey: key }, env.issued_at_ms);
    if (!sel.ok) return { disposition: 'signer_authority_failed', reason: sel.reason, ...base };
    return { disposition: 'authentic', reason: 'signature valid; the key is the one window-covering key in the JWK Set', ...base, kid: sel.key.kid, ...pin };
  }

  // did:cycles: the DID must bind to this server_id, then the set names the key
  const serverHash = createHash('sha256').update(Buffer.from(env.server_id, 'utf8')).digest('hex');
  if (did[1] !== serverHash) return { disposition: 'signer_authority_failed', reason: 'the did:cycles hash is not sha256(server_id)', ...base };
  if (opts.jwks === undefined) return { disposition: 'signer_resolution_failed', reason: 'a did:cycles signer needs its JWK Set (none given)', ...base };
  const set = await loadJwks(opts.jwks, env.server_id, timeoutMs);
  if (!set.ok) return { disposition: 'signer_resolution_failed', reason: set.reason, ...base };
  const sel = selectKey(set.keys, { kid: did[2] }, env.issued_at_ms);
  if (!sel.ok) return { disposition: 'signer_authority_failed', reason: sel.reason, ...base };
  if (!verifyBytes(signature, signed, sel.key.publicKey)) return invalid(`signature does not verify against JWK "${sel.key.kid}"`, base);
  return { disposition: 'authentic', reason: `signature valid under JWK "${sel.key.kid}", whose window covers issued_at_ms`, ...base, kid: sel.key.kid, ...pin };
}
