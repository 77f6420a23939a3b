// One recipe from an evidence SOURCE (what the ledger script recorded atomically with the
// operation, evidence_common.lua) to the unsigned envelope, used by BOTH sides: the
// request path computes the evidence_id it returns in-band from it, and the signer
// (src/evidence/worker.ts) rebuilds the envelope from the stream entry with it. The
// response is rendered from the stored result with the very functions the handlers render
// the wire body with, so the two ids agree by construction (docs/decisions.md DEV6, DEV7).
import type { Logger } from 'pino';
import { parseJsonBody } from '../json';
import { renderCreateResponse, renderDecisionResponse, type ScriptResult } from '../ledger/reserve';
import { renderCommit, type StoredCommit } from '../ledger/commit';
import { renderRelease, type StoredRelease } from '../ledger/release';
import { buildEnvelope, evidenceIdOf, evidenceUrl, type EvidenceSource } from './envelope';
import type { EvidenceIdentity } from './keys';
import type { ArtifactType, CyclesEvidence } from './types';

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
  /** commit / release: the path argument */
  reservationId?: string;
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
      throw new Error('error evidence is not produced yet');
  }
}

/** The unsigned envelope of a source (throws EvidenceBuildError / CanonicalizationError
 *  when the exchange cannot be attested; deterministic, so both sides refuse alike). */
export function envelopeOfSource(src: SourceRecord, id: Pick<EvidenceIdentity, 'serverId' | 'signerDid'>): CyclesEvidence {
  const request = parseJsonBody(src.request).value;
  const response = responseOf(src.artifact, src.result);
  let source: EvidenceSource;
  if (src.artifact === 'commit' || src.artifact === 'release') {
    source = { artifact: src.artifact, reservationId: src.reservationId ?? '', request, response };
  } else if (src.artifact === 'decide' || src.artifact === 'reserve') {
    source = { artifact: src.artifact, request, response };
  } else {
    throw new Error(`no evidence recipe for artifact ${src.artifact}`);
  }
  return buildEnvelope(source, { serverId: id.serverId, signerDid: id.signerDid, issuedAtMs: src.issuedMs, traceId: src.traceId });
}

/** The in-band reference for a source, computed before anything is stamped on the response. */
export function refOfSource(src: SourceRecord, id: Pick<EvidenceIdentity, 'serverId' | 'signerDid'>): EvidenceRef {
  const evidenceId = evidenceIdOf(envelopeOfSource(src, id));
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
  };
}
