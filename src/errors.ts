// Protocol error catalogue: every error code the specs define, with its HTTP status.
// Expected outcomes (DENY decisions) are values, not errors; ApiError is for the
// request-level failures the spec answers with an ErrorResponse body.

export type ErrorCode =
  | 'INVALID_REQUEST' | 'UNAUTHORIZED' | 'FORBIDDEN' | 'NOT_FOUND'
  | 'BUDGET_EXCEEDED' | 'BUDGET_FROZEN' | 'BUDGET_CLOSED'
  | 'RESERVATION_EXPIRED' | 'RESERVATION_FINALIZED' | 'IDEMPOTENCY_MISMATCH'
  | 'UNIT_MISMATCH' | 'OVERDRAFT_LIMIT_EXCEEDED' | 'DEBT_OUTSTANDING'
  | 'MAX_EXTENSIONS_EXCEEDED' | 'LIMIT_EXCEEDED' | 'TENANT_CLOSED' | 'INTERNAL_ERROR'
  | 'ACTION_QUOTA_EXCEEDED' | 'ACTION_KIND_NOT_ALLOWED' | 'ACTION_KIND_DENIED'
  // governance-only codes
  | 'TENANT_NOT_FOUND' | 'TENANT_SUSPENDED' | 'BUDGET_NOT_FOUND' | 'POLICY_VIOLATION'
  | 'INSUFFICIENT_PERMISSIONS' | 'KEY_REVOKED' | 'KEY_EXPIRED' | 'DUPLICATE_RESOURCE'
  | 'WEBHOOK_NOT_FOUND' | 'WEBHOOK_URL_INVALID' | 'EVENT_NOT_FOUND' | 'REPLAY_IN_PROGRESS'
  | 'COUNT_MISMATCH'
  // transport-level (not a protocol code; mapped to INVALID_REQUEST on the wire)
  | 'NOT_IMPLEMENTED';

/** Default HTTP status per code. Some codes are used with other statuses by specific
 *  operations (e.g. LIMIT_EXCEEDED is 400 on bulk actions, 429 when throttled); callers
 *  pass an explicit status then. */
export const ERROR_STATUS: Record<ErrorCode, number> = {
  INVALID_REQUEST: 400,
  UNIT_MISMATCH: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  INSUFFICIENT_PERMISSIONS: 403,
  NOT_FOUND: 404,
  TENANT_NOT_FOUND: 404,
  BUDGET_NOT_FOUND: 404,
  WEBHOOK_NOT_FOUND: 404,
  EVENT_NOT_FOUND: 404,
  BUDGET_EXCEEDED: 409,
  BUDGET_FROZEN: 409,
  BUDGET_CLOSED: 409,
  RESERVATION_FINALIZED: 409,
  IDEMPOTENCY_MISMATCH: 409,
  OVERDRAFT_LIMIT_EXCEEDED: 409,
  DEBT_OUTSTANDING: 409,
  MAX_EXTENSIONS_EXCEEDED: 409,
  TENANT_CLOSED: 409,
  TENANT_SUSPENDED: 409,
  ACTION_QUOTA_EXCEEDED: 409,
  ACTION_KIND_NOT_ALLOWED: 409,
  ACTION_KIND_DENIED: 409,
  POLICY_VIOLATION: 409,
  KEY_REVOKED: 409,
  KEY_EXPIRED: 409,
  DUPLICATE_RESOURCE: 409,
  REPLAY_IN_PROGRESS: 409,
  COUNT_MISMATCH: 409,
  WEBHOOK_URL_INVALID: 400,
  RESERVATION_EXPIRED: 410,
  LIMIT_EXCEEDED: 429,
  INTERNAL_ERROR: 500,
  NOT_IMPLEMENTED: 501,
};

/** What a ledger script recorded for an attested error (src/evidence/source.ts renders the
 *  ErrorResponse from it again; docs/decisions.md DEV8). */
export interface ErrorEvidenceSource {
  endpoint: 'decide' | 'reserve' | 'commit' | 'release';
  tenant: string;
  /** the normalized request JSON the script was given */
  request: string;
  /** the script's error result, stamped with ev_ms / ev_trace / ev_rid */
  result: unknown;
  reservationId?: string;
}

export class ApiError extends Error {
  readonly status: number;
  /** set by the ledger when the script recorded `error` evidence for this error */
  evidenceSource?: ErrorEvidenceSource;
  /** CyclesEvidenceRef stamped on the ErrorResponse (src/http/errorBody.ts) */
  evidence?: { evidence_id: string; cycles_evidence_url: string };
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    status?: number,
    /** extra response headers, e.g. Retry-After on 429 */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.status = status ?? ERROR_STATUS[code];
  }
}

export const invalid = (message: string, details?: Record<string, unknown>) =>
  new ApiError('INVALID_REQUEST', message, details);

/** The wire `error` value. NOT_IMPLEMENTED is not in either spec's ErrorCode enum, so a
 *  501 carries INTERNAL_ERROR with a message that names the missing handler. */
export function wireCode(code: ErrorCode): string {
  return code === 'NOT_IMPLEMENTED' ? 'INTERNAL_ERROR' : code;
}
