// Building an envelope and its content address. The recipe (cycles-evidence-v0.2.yaml,
// CyclesEvidence "Hash derivation" / "Signature derivation"): evidence_id = lowercase hex
// SHA-256 of the JCS bytes of the whole envelope with `evidence_id` AND `signature` both
// present as "" (not absent, not null); the signature is Ed25519 over the JCS bytes with the
// real `evidence_id` and `signature` still "". Everything else — issued_at_ms, trace_id,
// server_id, signer_did — is inside the hash, so an envelope is built once per operation.
import { createHash } from 'node:crypto';
import { canonicalBytes, type CanonicalMode } from './canonical';
import {
  CommitRequestMirror, CommitResponseMirror, DecisionRequestMirror, DecisionResponseMirror, ErrorResponseMirror,
  EvidenceBuildError, ReleaseRequestMirror, ReleaseResponseMirror, ReservationCreateRequestMirror,
  ReservationCreateResponseMirror, project, type Mirror,
} from './mirrors';
import {
  ARTIFACT_TYPES, ERROR_ENDPOINTS, MIRROR_ERROR_CODES, SCHEMA_VERSION,
  type CyclesEvidence, type ErrorEndpoint,
} from './types';

export { EvidenceBuildError };

export const EVIDENCE_ID_RE = /^[0-9a-f]{64}$/;
export const SIGNATURE_RE = /^[0-9a-f]{128}$/;
export const TRACE_ID_RE = /^[0-9a-f]{32}$/;

const sha256Hex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** The bytes evidence_id hashes: the envelope with evidence_id = signature = "". */
export function idInputOf(env: CyclesEvidence, mode: CanonicalMode = 'producer'): Uint8Array {
  return canonicalBytes({ ...env, evidence_id: '', signature: '' }, mode);
}

/** evidence_id per the spec recipe, whatever `env.evidence_id` / `env.signature` hold. */
export function evidenceIdOf(env: CyclesEvidence, mode: CanonicalMode = 'producer'): string {
  return sha256Hex(idInputOf(env, mode));
}

/** The bytes the signature covers: `evidenceId` set, signature "". */
export function signingInputOf(env: CyclesEvidence, evidenceId: string, mode: CanonicalMode = 'producer'): Uint8Array {
  return canonicalBytes({ ...env, evidence_id: evidenceId, signature: '' }, mode);
}

/** `cycles_evidence_url`: server_id already ends in /v1 and carries no trailing slash (DEV4). */
export function evidenceUrl(serverId: string, evidenceId: string): string {
  return `${serverId}/evidence/${evidenceId}`;
}

/** Where a server_id's JWK Set lives: appended after the path, only a doubled `/` collapsed. */
export function jwksUrl(serverId: string): string {
  return `${serverId.endsWith('/') ? serverId.slice(0, -1) : serverId}/.well-known/cycles-jwks.json`;
}

/** `did:cycles:<lowerhex(sha256(server_id bytes))>#<kid>` — no URL normalization. */
export function didCycles(serverId: string, kid: string): string {
  return `did:cycles:${sha256Hex(Buffer.from(serverId, 'utf8'))}#${kid}`;
}

export interface EnvelopeContext {
  serverId: string;
  signerDid: string;
  issuedAtMs: number;
  /** the request's W3C trace-id; omitted from the envelope when absent */
  traceId?: string;
}

/** The request as the server normalized it (defaults filled in) and the response body as
 *  sent; `cycles_evidence` / `remaining_ttl_ms` on it are ignored (never attested). */
export type EvidenceSource =
  | { artifact: 'decide'; request: unknown; response: unknown }
  | { artifact: 'reserve'; request: unknown; response: unknown }
  | { artifact: 'commit'; reservationId: string; request: unknown; response: unknown }
  | { artifact: 'release'; reservationId: string; request: unknown; response: unknown }
  | {
      artifact: 'error'; endpoint: ErrorEndpoint; httpStatus: number;
      /** the path argument: required for the commit/release endpoints, forbidden otherwise */
      reservationId?: string;
      /** MAY be left out (redaction); SHOULD be given */
      request?: unknown;
      response: unknown;
    };

const REQUEST_MIRROR: Record<ErrorEndpoint, Mirror> = {
  'POST /v1/decide': DecisionRequestMirror,
  'POST /v1/reservations': ReservationCreateRequestMirror,
  'POST /v1/reservations/{reservation_id}/commit': CommitRequestMirror,
  'POST /v1/reservations/{reservation_id}/release': ReleaseRequestMirror,
};

/** The unsigned envelope (evidence_id and signature ""), or EvidenceBuildError when the
 *  inputs cannot form a schema-valid envelope (the spec's cross-member rules are checked
 *  here so a protocol-impossible envelope is never built). */
export function buildEnvelope(src: EvidenceSource, ctx: EnvelopeContext): CyclesEvidence {
  checkContext(ctx);
  const artifact = src.artifact;
  if (!(ARTIFACT_TYPES as readonly string[]).includes(artifact)) throw new EvidenceBuildError('artifact_type', `unknown artifact type ${String(artifact)}`);
  const body = payloadOf(src);
  const env: Record<string, unknown> = {
    schema_version: SCHEMA_VERSION,
    artifact_type: artifact,
    server_id: ctx.serverId,
    signer_did: ctx.signerDid,
    issued_at_ms: ctx.issuedAtMs,
  };
  if (ctx.traceId !== undefined) env.trace_id = ctx.traceId;
  env.payload = { [artifact]: body };
  env.evidence_id = '';
  env.signature = '';
  return env as unknown as CyclesEvidence;
}

function checkContext(ctx: EnvelopeContext): void {
  if (typeof ctx.serverId !== 'string' || ctx.serverId === '') throw new EvidenceBuildError('server_id', 'required');
  if (typeof ctx.signerDid !== 'string' || ctx.signerDid === '') throw new EvidenceBuildError('signer_did', 'required');
  if (!Number.isSafeInteger(ctx.issuedAtMs) || ctx.issuedAtMs < 0) throw new EvidenceBuildError('issued_at_ms', 'must be a non-negative integer (epoch ms)');
  if (ctx.traceId !== undefined && !TRACE_ID_RE.test(ctx.traceId)) throw new EvidenceBuildError('trace_id', 'must be 32 lowercase hex characters');
}

function payloadOf(src: EvidenceSource): Record<string, unknown> {
  const at = `payload.${src.artifact}`;
  switch (src.artifact) {
    case 'decide': {
      const request = project(src.request, DecisionRequestMirror, `${at}.request`);
      const response = project(src.response, DecisionResponseMirror, `${at}.response`);
      checkCaps(response, `${at}.response`);
      return { request, response };
    }
    case 'reserve': {
      const request = project(src.request, ReservationCreateRequestMirror, `${at}.request`);
      const response = project(src.response, ReservationCreateResponseMirror, `${at}.response`);
      checkCaps(response, `${at}.response`);
      checkReserve(request, response, at);
      return { request, response };
    }
    case 'commit':
    case 'release': {
      const [reqM, resM, status] = src.artifact === 'commit'
        ? [CommitRequestMirror, CommitResponseMirror, 'COMMITTED']
        : [ReleaseRequestMirror, ReleaseResponseMirror, 'RELEASED'];
      if (typeof src.reservationId !== 'string' || src.reservationId === '') {
        throw new EvidenceBuildError(`${at}.reservation_id`, 'required (the path argument)');
      }
      const request = project(src.request, reqM, `${at}.request`);
      const response = project(src.response, resM, `${at}.response`);
      if (response.status !== status) throw new EvidenceBuildError(`${at}.response.status`, `must be ${status}`);
      return { reservation_id: src.reservationId, request, response };
    }
    case 'error':
      return errorPayload(src, at);
  }
}

function errorPayload(src: Extract<EvidenceSource, { artifact: 'error' }>, at: string): Record<string, unknown> {
  if (!(ERROR_ENDPOINTS as readonly string[]).includes(src.endpoint)) {
    throw new EvidenceBuildError(`${at}.endpoint`, `must be one of ${ERROR_ENDPOINTS.join(' | ')}`);
  }
  if (!Number.isInteger(src.httpStatus) || src.httpStatus < 400 || src.httpStatus > 599) {
    throw new EvidenceBuildError(`${at}.http_status`, 'must be 400..599');
  }
  const takesId = src.endpoint.includes('{reservation_id}');
  if (takesId && (typeof src.reservationId !== 'string' || src.reservationId === '')) {
    throw new EvidenceBuildError(`${at}.reservation_id`, `required for ${src.endpoint}`);
  }
  if (!takesId && src.reservationId !== undefined) {
    throw new EvidenceBuildError(`${at}.reservation_id`, `forbidden for ${src.endpoint}`);
  }
  const response = project(src.response, ErrorResponseMirror, `${at}.response`);
  if (!(MIRROR_ERROR_CODES as readonly unknown[]).includes(response.error)) {
    throw new EvidenceBuildError(`${at}.response.error`, `${String(response.error)} is outside the evidence ErrorCode mirror (not attestable until the spec re-cuts it)`);
  }
  const out: Record<string, unknown> = { endpoint: src.endpoint, http_status: src.httpStatus };
  if (takesId) out.reservation_id = src.reservationId;
  if (src.request !== undefined && src.request !== null) out.request = project(src.request, REQUEST_MIRROR[src.endpoint], `${at}.request`);
  out.response = response;
  return out;
}

/** caps present iff decision is ALLOW_WITH_CAPS (decide and reserve responses). */
function checkCaps(response: Record<string, unknown>, at: string): void {
  if ((response.decision === 'ALLOW_WITH_CAPS') !== (response.caps !== undefined)) {
    throw new EvidenceBuildError(`${at}.caps`, 'present exactly when decision is ALLOW_WITH_CAPS');
  }
}

/** ReservePayload's three rules: DENY only on a dry run; a dry run has no reservation_id or
 *  expires_at_ms; anything else has a reservation_id. */
function checkReserve(request: Record<string, unknown>, response: Record<string, unknown>, at: string): void {
  const dry = request.dry_run === true;
  if (response.decision === 'DENY' && !dry) {
    throw new EvidenceBuildError(`${at}.response.decision`, 'DENY on a live reserve is a 409 BUDGET_EXCEEDED (error evidence), not reserve evidence');
  }
  if (dry && (response.reservation_id !== undefined || response.expires_at_ms !== undefined)) {
    throw new EvidenceBuildError(`${at}.response`, 'a dry run has no reservation_id or expires_at_ms');
  }
  if (!dry && response.reservation_id === undefined) {
    throw new EvidenceBuildError(`${at}.response.reservation_id`, 'required when dry_run is not true');
  }
}
