import { ApiError, wireCode } from '../errors';

/** The spec's ErrorResponse: error, message, request_id (+ trace_id, details). */
export function errorBody(err: ApiError, requestId: string, traceId: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    error: wireCode(err.code),
    message: err.message,
    request_id: requestId,
    trace_id: traceId,
  };
  if (err.details && Object.keys(err.details).length > 0) body.details = err.details;
  // transport-only, stamped after the evidence_id was computed over the body without it
  if (err.evidence) body.cycles_evidence = err.evidence;
  return body;
}
