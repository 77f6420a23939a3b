// One recipe from an evidence SOURCE (what the ledger script recorded atomically with the
// operation, evidence_common.lua) to the unsigned envelope, used by BOTH sides: the
// request path computes the evidence_id it returns in-band from it, and the signer
// (src/evidence/worker.ts) rebuilds the envelope from the stream entry with it. The
// response is rendered from the stored result with the very functions the handlers render
// the wire body with, so the two ids agree by construction (docs/decisions.md DEV6, DEV7).
import type { Logger } from 'pino';
import { parseOwnJson } from '../json';
import { ApiError } from '../errors';
import { errorBody } from '../http/errorBody';
import { renderCreateResponse, renderDecisionResponse, reserveErrorOf, type ScriptErrorReply, type ScriptResult } from '../ledger/reserve';
import { toApiError, type ScriptError } from '../ledger/reservationOps';
import { renderCommit, type StoredCommit } from '../ledger/commit';
import { renderRelease, type StoredRelease } from '../ledger/release';
import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical';
import { buildEnvelope, evidenceUrl, type EvidenceSource } from './envelope';
import { presealKey, presealWanted, putPresealed } from './preseal';
import type { EvidenceIdentity } from './keys';
import type { ArtifactType, CyclesEvidence, ErrorEndpoint } from './types';

/** The layout version the ledger scripts write (`v` field); the worker refuses others. */
export const SOURCE_VERSION = '1';

export interface SourceRecord {
  artifact: ArtifactType;
  /** Redis TIME of the original execution (the script's now) */
  issuedMs: number;
  /** trace id of the original request */
  traceId: string;
  /** the normalized request as JSON text, exactly as passed to the script */
  request: string;
  /** the stored result (parsed), exactly what the response is rendered from */
  result: unknown;
  /** commit / release (and their errors): the path argument */
  reservationId?: string;
  /** the tenant whose stream holds the source (reserve errors render with it) */
  tenant?: string;
  /** error sources: the route the error answered */
  endpoint?: 'decide' | 'reserve' | 'commit' | 'release';
}

const ERROR_ENDPOINT: Record<NonNullable<SourceRecord['endpoint']>, ErrorEndpoint> = {
  decide: 'POST /v1/decide',
  reserve: 'POST /v1/reservations',
  commit: 'POST /v1/reservations/{reservation_id}/commit',
  release: 'POST /v1/reservations/{reservation_id}/release',
};

/** The ApiError an attested error source answered with (the ledger's own mapping). */
function errorOf(src: SourceRecord, request: unknown): ApiError {
  switch (src.endpoint) {
    case 'decide':
    case 'reserve':
      return reserveErrorOf(src.result as ScriptErrorReply, request as Record<string, unknown>, src.tenant ?? '');
    case 'commit':
    case 'release':
      return toApiError(src.result as ScriptError);
    default:
      throw new Error(`error evidence source without a known endpoint (${String(src.endpoint)})`);
  }
}

/** CyclesEvidenceRef (runtime spec): stamped on the response after the id was computed. */
export interface EvidenceRef { evidence_id: string; cycles_evidence_url: string }

/** Stored results carry these when evidence was on at execution time (the scripts add them). */
export interface EvidenceStamp { ev_ms?: string; ev_trace?: string }

/** The response as the handler renders it from the stored result. */
function responseOf(artifact: ArtifactType, result: unknown): unknown {
  switch (artifact) {
    case 'decide':
      return renderDecisionResponse({ result: result as ScriptResult, replay: false, nowMs: 0, active: true });
    case 'reserve':
      // remaining_ttl_ms depends on the rendering time; the builder never attests it
      return renderCreateResponse({ result: result as ScriptResult, replay: false, nowMs: 0, active: true });
    case 'commit':
      return renderCommit(result as StoredCommit);
    case 'release':
      return renderRelease(result as StoredRelease);
    case 'error':
      throw new Error('error sources are rendered by errorSourceOf');
  }
}

/** An error source as the builder takes it: the ErrorResponse exactly as app.ts renders it
 *  (errorBody with the original request_id and trace_id), and its HTTP status. */
function errorSourceOf(src: SourceRecord, request: unknown): EvidenceSource {
  const err = errorOf(src, request);
  const stamp = src.result as { ev_rid?: string; ev_trace?: string };
  const response = errorBody(err, String(stamp.ev_rid), String(stamp.ev_trace));
  const endpoint = ERROR_ENDPOINT[src.endpoint!];
  return {
    artifact: 'error', endpoint, httpStatus: err.status, request, response,
    ...(src.endpoint === 'reserve' || src.endpoint === 'decide' ? {} : { reservationId: src.reservationId ?? '' }),
  };
}

/** The unsigned envelope of a source (throws EvidenceBuildError / CanonicalizationError
 *  when the exchange cannot be attested; deterministic, so both sides refuse alike). */
export function envelopeOfSource(src: SourceRecord, id: Pick<EvidenceIdentity, 'serverId' | 'signerDid'>): CyclesEvidence {
  const request = parseOwnJson(src.request);
  let source: EvidenceSource;
  if (src.artifact === 'error') {
    source = errorSourceOf(src, request);
  } else if (src.artifact === 'commit' || src.artifact === 'release') {
    const response = responseOf(src.artifact, src.result);
    source = { artifact: src.artifact, reservationId: src.reservationId ?? '', request, response };
  } else if (src.artifact === 'decide' || src.artifact === 'reserve') {
    source = { artifact: src.artifact, request, response: responseOf(src.artifact, src.result) };
  } else {
    throw new Error(`no evidence recipe for artifact ${src.artifact}`);
  }
  return buildEnvelope(source, { serverId: id.serverId, signerDid: id.signerDid, issuedAtMs: src.issuedMs, traceId: src.traceId });
}

/** The in-band reference for a source, computed before anything is stamped on the response.
 *  The id input's canonical text is handed to this process's signer when it runs one. */
export function refOfSource(src: SourceRecord, id: Pick<EvidenceIdentity, 'serverId' | 'signerDid'>): EvidenceRef {
  const env = envelopeOfSource(src, id);
  const t0 = canonicalJson({ ...env, evidence_id: '', signature: '' });
  const evidenceId = createHash('sha256').update(t0, 'utf8').digest('hex');
  if (presealWanted()) {
    const rid = src.artifact === 'error' ? (src.result as { ev_rid?: unknown })?.ev_rid : undefined;
    putPresealed(presealKey(src.artifact, src.issuedMs, src.traceId, src.reservationId, typeof rid === 'string' ? rid : undefined, src.request),
      { t0, head: { artifact_type: env.artifact_type, signer_did: env.signer_did, ...(env.trace_id === undefined ? {} : { trace_id: env.trace_id }) } });
  }
  return { evidence_id: evidenceId, cycles_evidence_url: evidenceUrl(id.serverId, evidenceId) };
}

/**
 * The reference for a stored result, or undefined: evidence off, a result stored while
 * evidence was off (no ev_ms — a replay never mints a new envelope), or an exchange that
 * cannot be attested (logged once per request; the signer skips the same source, DEV7).
 */
export function evidenceRefFor(
  identity: EvidenceIdentity | undefined, log: Logger,
  artifact: ArtifactType, request: string | undefined, result: unknown, reservationId?: string,
): EvidenceRef | undefined {
  if (!identity || request === undefined) return undefined;
  const stamp = result as EvidenceStamp;
  if (typeof stamp?.ev_ms !== 'string' || typeof stamp.ev_trace !== 'string') return undefined;
  try {
    return refOfSource({
      artifact, issuedMs: Number(stamp.ev_ms), traceId: stamp.ev_trace, request, result, reservationId,
    }, identity);
  } catch (err) {
    log.warn({ err, artifact, reservation_id: reservationId }, 'evidence: this response cannot be attested; answering without cycles_evidence');
    return undefined;
  }
}

/** Stamps cycles_evidence on an ApiError whose ledger script recorded `error` evidence
 *  (called by the pipeline before the ErrorResponse is rendered, src/http/app.ts). */
export function attachErrorEvidence(err: ApiError, identity: EvidenceIdentity | undefined, log: Logger): void {
  const es = err.evidenceSource;
  if (!identity || !es || err.evidence) return;
  const stamp = es.result as EvidenceStamp;
  if (typeof stamp?.ev_ms !== 'string' || typeof stamp.ev_trace !== 'string') return;
  try {
    err.evidence = refOfSource({
      artifact: 'error', issuedMs: Number(stamp.ev_ms), traceId: stamp.ev_trace, request: es.request, result: es.result,
      tenant: es.tenant, endpoint: es.endpoint, ...(es.reservationId !== undefined ? { reservationId: es.reservationId } : {}),
    }, identity);
  } catch (e) {
    log.warn({ err: e, code: err.code, endpoint: es.endpoint }, 'evidence: this error cannot be attested; answering without cycles_evidence');
  }
}

/** A stream entry's fields → SourceRecord (throws on a malformed entry). */
export function sourceOfFields(f: Record<string, string>): SourceRecord {
  if (f.v !== SOURCE_VERSION) throw new Error(`evidence source layout ${String(f.v)} is not ${SOURCE_VERSION}`);
  const issuedMs = Number(f.issued_ms);
  if (!Number.isSafeInteger(issuedMs)) throw new Error(`evidence source issued_ms ${String(f.issued_ms)} is not an integer`);
  if (typeof f.request !== 'string' || typeof f.result !== 'string' || typeof f.trace_id !== 'string') {
    throw new Error('evidence source lacks request, result or trace_id');
  }
  return {
    artifact: f.artifact as ArtifactType,
    issuedMs,
    traceId: f.trace_id,
    request: f.request,
    result: JSON.parse(f.result),
    ...(f.reservation_id !== undefined ? { reservationId: f.reservation_id } : {}),
    ...(f.tenant !== undefined ? { tenant: f.tenant } : {}),
    ...(f.endpoint !== undefined ? { endpoint: f.endpoint as SourceRecord['endpoint'] } : {}),
  };
}
