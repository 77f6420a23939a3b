// The CyclesEvidence wire shape (cycles-evidence-v0.2.yaml, envelope `schema_version`
// cycles-evidence/v0.1), as TypeScript. Every mirror is a closed object with no nullable
// member: an unset optional is absent. int64 members are `Int`: a number, or a BigInt only
// beyond 2^53 (src/json.ts) — canonicalization writes those exactly or refuses (DEV1).

export const SCHEMA_VERSION = 'cycles-evidence/v0.1';

export const ARTIFACT_TYPES = ['decide', 'reserve', 'commit', 'release', 'error'] as const;
export type ArtifactType = (typeof ARTIFACT_TYPES)[number];

/** ErrorPayload.endpoint: literal route templates (`{reservation_id}` is literal text). */
export const ERROR_ENDPOINTS = [
  'POST /v1/decide',
  'POST /v1/reservations',
  'POST /v1/reservations/{reservation_id}/commit',
  'POST /v1/reservations/{reservation_id}/release',
] as const;
export type ErrorEndpoint = (typeof ERROR_ENDPOINTS)[number];

/** ErrorResponseMirror.error — the v0.1.25 ErrorCode enum (re-cut 0.1.25.13). The v0.1.26
 *  codes (ACTION_QUOTA_EXCEEDED, ACTION_KIND_*) are not in it, so they are not attestable
 *  until the mirror is re-cut (docs/decisions.md DEV2). */
export const MIRROR_ERROR_CODES = [
  'INVALID_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND',
  'BUDGET_EXCEEDED', 'BUDGET_FROZEN', 'BUDGET_CLOSED',
  'RESERVATION_EXPIRED', 'RESERVATION_FINALIZED', 'IDEMPOTENCY_MISMATCH',
  'UNIT_MISMATCH', 'OVERDRAFT_LIMIT_EXCEEDED', 'DEBT_OUTSTANDING',
  'MAX_EXTENSIONS_EXCEEDED', 'LIMIT_EXCEEDED', 'TENANT_CLOSED', 'INTERNAL_ERROR',
] as const;
export type MirrorErrorCode = (typeof MIRROR_ERROR_CODES)[number];

export type Int = number | bigint;
export type Unit = 'USD_MICROCENTS' | 'TOKENS' | 'CREDITS' | 'RISK_POINTS';
export type Decision = 'ALLOW' | 'ALLOW_WITH_CAPS' | 'DENY';
export type JsonObject = Record<string, unknown>;

export interface Amount { unit: Unit; amount: Int }
/** SignedAmount: same shape, amount may be negative. */
export type SignedAmount = Amount;

export interface Subject {
  tenant?: string; workspace?: string; app?: string; workflow?: string; agent?: string; toolset?: string;
  dimensions?: Record<string, string>;
}
export interface Action { kind: string; name: string; tags?: string[] }
export interface Caps {
  max_tokens?: number; max_steps_remaining?: number;
  tool_allowlist?: string[]; tool_denylist?: string[]; cooldown_ms?: number;
}
export interface Balance {
  scope: string; scope_path: string; remaining: SignedAmount;
  reserved?: Amount; spent?: Amount; allocated?: Amount; debt?: Amount; overdraft_limit?: Amount;
  is_over_limit?: boolean;
}
export interface StandardMetrics {
  tokens_input?: number; tokens_output?: number; latency_ms?: number; model_version?: string;
  custom?: JsonObject;
}

export interface DecisionRequestMirror {
  idempotency_key: string; subject: Subject; action: Action; estimate: Amount; metadata?: JsonObject;
}
export interface DecisionResponseMirror {
  decision: Decision; caps?: Caps; reason_code?: string; retry_after_ms?: Int; affected_scopes?: string[];
}
export interface ReservationCreateRequestMirror extends DecisionRequestMirror {
  ttl_ms?: Int; grace_period_ms?: Int;
  overage_policy?: 'REJECT' | 'ALLOW_IF_AVAILABLE' | 'ALLOW_WITH_OVERDRAFT';
  dry_run?: boolean;
}
export interface ReservationCreateResponseMirror {
  decision: Decision; affected_scopes: string[];
  reservation_id?: string; reserved?: Amount; caps?: Caps; reason_code?: string; retry_after_ms?: Int;
  expires_at_ms?: Int; scope_path?: string; balances?: Balance[];
}
export interface CommitRequestMirror {
  idempotency_key: string; actual: Amount; metrics?: StandardMetrics; metadata?: JsonObject;
}
export interface CommitResponseMirror { status: 'COMMITTED'; charged: Amount; released?: Amount; balances?: Balance[] }
export interface ReleaseRequestMirror { idempotency_key: string; reason?: string }
export interface ReleaseResponseMirror { status: 'RELEASED'; released: Amount; balances?: Balance[] }
export interface ErrorResponseMirror {
  error: MirrorErrorCode; message: string; request_id: string; trace_id?: string; details?: JsonObject;
}

export interface DecidePayload { request: DecisionRequestMirror; response: DecisionResponseMirror }
export interface ReservePayload { request: ReservationCreateRequestMirror; response: ReservationCreateResponseMirror }
export interface CommitPayload { reservation_id: string; request: CommitRequestMirror; response: CommitResponseMirror }
export interface ReleasePayload { reservation_id: string; request: ReleaseRequestMirror; response: ReleaseResponseMirror }
export interface ErrorPayload {
  endpoint: ErrorEndpoint; http_status: number; reservation_id?: string;
  request?: DecisionRequestMirror | ReservationCreateRequestMirror | CommitRequestMirror | ReleaseRequestMirror;
  response: ErrorResponseMirror;
}

export interface PayloadOf {
  decide: DecidePayload; reserve: ReservePayload; commit: CommitPayload; release: ReleasePayload; error: ErrorPayload;
}

interface EnvelopeBase {
  schema_version: typeof SCHEMA_VERSION;
  server_id: string;
  signer_did: string;
  issued_at_ms: number;
  /** absent (never "" or null) when the request had no trace id */
  trace_id?: string;
  evidence_id: string;
  signature: string;
}

/** One envelope; `payload` has exactly the member named by `artifact_type`. */
export type CyclesEvidence<T extends ArtifactType = ArtifactType> = {
  [K in T]: EnvelopeBase & { artifact_type: K; payload: { [P in K]: PayloadOf[K] } };
}[T];

/** CyclesEvidenceJwk (RFC 8037 OKP/Ed25519 plus the cycles_* validity window). */
export interface CyclesEvidenceJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  alg?: 'EdDSA';
  x: string;
  kid: string;
  cycles_nbf_ms: number;
  cycles_exp_ms?: number | null;
  status?: 'active' | 'retired';
}
export interface CyclesEvidenceJwks { keys: CyclesEvidenceJwk[] }

/** The dispositions of cycles-evidence-v0.2 (CyclesEvidenceJwks): a verifier reports exactly one. */
export const DISPOSITIONS = [
  'authentic', 'binding_only', 'signer_authority_failed', 'signer_resolution_failed', 'signature_invalid',
] as const;
export type Disposition = (typeof DISPOSITIONS)[number];
