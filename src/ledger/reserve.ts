// The reserve path: createReservation (live and dry_run) and decide. One evaluation,
// three wire shapes (runtime spec ERROR SEMANTICS, DecisionReasonCode, createReservation
// DRY-RUN RESPONSE RULES, decide):
//   live      ALLOW → 200 with a reservation; budget denial → 409; no budget → 404
//   dry_run   ALLOW/DENY → 200 (no reservation id); no budget → DENY BUDGET_NOT_FOUND
//   decide    DecisionResponse, DENY with reason_code; never 409 except IDEMPOTENCY_MISMATCH
// UNIT_MISMATCH is 400 on all three.
//
// Flow (one Redis command; authentication is served from memory): validate + derive
// scopes (pure) → match the request's scope against the tenant's cached policies
// (src/policy/cache.ts) → reserve.lua, which does idempotency, the policy-version check,
// the policy's effective window, the tenant guard, effective TTL / overage /
// max_extensions (DR4), checks and writes atomically (the reservation, its indexes and
// its expiry-schedule entry) → render the response (pure) from the script's result, so a
// replay renders byte-identically. Stale cached policies: the script answers STALE
// with the current ones (no writes) and the evaluation runs again.
import { ApiError } from '../errors';
import { parseJsonBody, stringify, toBig, toJsonInt, INT64_MAX } from '../json';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { amount, renderBalance, UNITS } from './model';
import { deriveScopes } from './scope';
import { requireScopeAllowed } from '../auth/scopeFilter';
import { idempotencyKeyFrom, payloadHash } from './idempotency';
import { PolicyCache, scopeCandidates, type PolicySet } from '../policy/cache';
import { budgetPrefix } from './reservationOps';
import { newReservationId } from './reservationId';
import type { HandlerContext } from '../http/types';
import { requireDeclaredKind, registryFor, type ActionKindRegistry } from '../governance/registry';
import { governanceFor, needsRunId, quotaKeyGuess, type GovernanceRequest } from '../governance/rules';
import { finishKeys, needKeysOf, NEED_KEYS_RETRIES } from '../store/declaredKeys';

export type ReserveMode = 'live' | 'dry_run' | 'decide';

// Effective reservation settings (docs/decisions.md DR4) are resolved inside reserve.lua,
// from the request, the selected policy (src/policy/cache.ts ScriptCandidate) and the
// tenant record read atomically with the checks:
//  ttl   = request ?? policy default_ttl_ms ?? tenant default_reservation_ttl_ms ?? 60000,
//          capped (never rejected) at policy max_ttl_ms ?? tenant max_reservation_ttl_ms
//          (1 h when the tenant record lacks it; uncapped without a tenant record);
//  grace = request ?? 5000 (here);
//  max_extensions = policy ?? tenant max_reservation_extensions ?? 10;
//  overage = request > policy > leaf-most budget > tenant default > ALLOW_IF_AVAILABLE.
export const DEFAULT_GRACE_MS = 5_000;

const posInt = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;

/** Process-wide policy cache (validated against keys.policyVersion by reserve.lua). */
export const policyCache = new PolicyCache();

/** Evaluations against policies that changed meanwhile before giving up (503-like). */
const MAX_POLICY_ATTEMPTS = 3;

/** The structure hashed for idempotency: the body with the defaults that carry no
 *  other meaning applied (grace_period_ms, dry_run). ttl_ms and overage_policy stay
 *  as sent, because "absent" defers to policy/tenant settings (DR3). */
export function reservePayload(body: Record<string, unknown>, mode: ReserveMode): Record<string, unknown> {
  if (mode === 'decide') return body;
  return { ...body, grace_period_ms: body.grace_period_ms ?? DEFAULT_GRACE_MS, dry_run: body.dry_run ?? false };
}

/** What reserve.lua stores and returns (int64 as decimal strings). */
export interface ScriptResult {
  decision: 'ALLOW' | 'ALLOW_WITH_CAPS' | 'DENY';
  mode: ReserveMode;
  unit: string;
  estimate: string;
  scope_path: string;
  affected_scopes: string[];
  reason_code?: string;
  caps_json?: string;
  reservation_id?: string;
  expires_at_ms?: string;
  balances?: Record<string, string>[];
  /** v0.1.26: DenyDetail of a DENY (budget_remaining as an int64 string) */
  deny_detail?: Record<string, unknown>;
  /** v0.1.26: evaluated in OBSERVE mode (nothing written) */
  observe?: boolean;
}

export interface Outcome {
  /** with ev_ms / ev_trace when evidence was on at the original execution (DEV6) */
  result: ScriptResult & { ev_ms?: string; ev_trace?: string };
  replay: boolean;
  nowMs: number;
  /** live replays: whether the reservation is still ACTIVE (remaining_ttl_ms → 0 if not) */
  active: boolean;
  /** evidence on: the normalized request JSON the evidence attests (src/evidence/source.ts) */
  evidenceRequest?: string;
}

/** The request as the server interprets it, for evidence (docs/decisions.md DEV6): the
 *  idempotency payload (reserve: grace_period_ms and dry_run defaults applied) with the
 *  effective idempotency key, which may have come from the X-Idempotency-Key header. */
export function evidenceRequest(body: Record<string, unknown>, mode: ReserveMode, idemKey: string): string {
  return stringify({ ...reservePayload(body, mode), idempotency_key: idemKey });
}

const script = () => loadScript('reserve');

export async function evaluateReserve(ctx: HandlerContext, mode: ReserveMode): Promise<Outcome> {
  const { redis, log } = ctx.deps;
  const principal = ctx.principal;
  if (principal.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'A tenant API key is required');
  const tenant = principal.tenantId;
  const body = ctx.body as Record<string, unknown>;
  // validation, before idempotency: an undeclared custom.* kind is never evaluated
  requireDeclaredKind(ctx.deps.config, (body.action as { kind?: unknown } | undefined)?.kind, 'action.kind');
  const idemKey = idempotencyKeyFrom(ctx);
  const { scopes, scopePath } = deriveScopes(body.subject, tenant);
  requireScopeAllowed(principal.scopeFilter, scopePath);
  const est = body.estimate as { unit: string; amount: unknown };
  const estimate = toBig(est.amount);
  if (estimate < 0n || estimate > INT64_MAX) throw new ApiError('INVALID_REQUEST', 'estimate.amount must be a non-negative int64');
  const unit = est.unit;
  const hash = payloadHash(reservePayload(body, mode));
  const endpoint = mode === 'decide' ? 'decide' : 'reserve';
  const idem = keys.idem(tenant, endpoint, idemKey);

  const live = mode === 'live';
  const reservationId = live ? newReservationId(tenant) : '';
  const graceMs = posInt(body.grace_period_ms) ?? DEFAULT_GRACE_MS;
  const otherUnits = UNITS.filter((u) => u !== unit);
  const params: Record<string, unknown> = {
    mode,
    // a finished reservation's retention (a held record lives at least this long too): the
    // replay may reference the record only if the idempotency record cannot outlive it (DM2)
    retain_ms: ctx.deps.config.reservationRetentionMs,
    hash,
    tenant,
    reservation_id: reservationId,
    unit,
    estimate: estimate.toString(),
    ttl_ms: posInt(body.ttl_ms)?.toString() ?? '',
    grace_ms: String(graceMs),
    overage_request: typeof body.overage_policy === 'string' ? body.overage_policy : '',
    scope_path: scopePath,
    scopes,
    other_units: otherUnits,
    subject_json: stringify(body.subject),
    action_json: stringify(body.action),
    metadata_json: body.metadata !== undefined ? stringify(body.metadata) : '',
    idempotency_key: idemKey,
    trace_id: ctx.traceId,
    request_id: ctx.requestId,
    actor_json: JSON.stringify({ type: 'api_key', key_id: principal.keyId }),
    res_prefix: keys.reservation(tenant, ''),
    budget_prefix: budgetPrefix(tenant),
  };
  const evRequest = ctx.deps.config.evidence ? evidenceRequest(body, mode, idemKey) : undefined;
  if (evRequest !== undefined) params.ev = { key: keys.evidenceSource(tenant), request: evRequest };
  const scriptKeys = [
    idem,
    keys.tenant(tenant),
    keys.reservation(tenant, reservationId || '_'),
    keys.reservationIndex(tenant),
    keys.outbox(tenant),
    keys.policies(tenant),
    keys.policyVersion(tenant),
    keys.expirySchedule(tenant),
    keys.quotaIndex(tenant),
    ...scopes.map((s) => keys.budget(tenant, s, unit)),
    // evidence on: the source stream the script appends to (declared, DK8)
    ...(evRequest !== undefined ? [keys.evidenceSource(tenant)] : []),
  ];

  // v0.1.26 (flag on): the rules of every candidate policy for this request, the run id,
  // the requested observe mode; the script picks the candidate in effect and evaluates.
  const v126 = ctx.deps.config.features.has('v0.1.26');
  let gov: GovernanceRequest | undefined;
  if (v126) {
    const action = body.action as { kind: string; policy_keys?: Record<string, unknown> };
    const dims = (body.subject as { dimensions?: Record<string, unknown> }).dimensions;
    const runId = typeof dims?.run_id === 'string' ? dims.run_id : '';
    gov = { tenant, kind: action.kind, scopePath, policyKeys: action.policy_keys };
    const rate = ctx.deps.config.observeAllowSampleRate;
    Object.assign(params, {
      gov: true,
      kind: action.kind,
      run_id: runId,
      observe_request: mode === 'live' || mode === 'dry_run' ? (typeof body.observe_mode === 'string' ? body.observe_mode : '') : '',
      quota_prefix: keys.quotaPrefix(tenant),
      observe_allow_emit: rate >= 1 || Math.random() < rate,
      sample_rate: rate,
    });
  }
  const registry = v126 ? registryFor(ctx.deps.config) : undefined;

  type Reply = ScriptErrorReply
    & { replay?: boolean; now_ms?: string; active?: boolean; result?: ScriptResult }
    & { stale?: boolean; version?: string; policies?: string[] | Record<string, never>; fk?: string[] };
  let policies = policyCache.get(tenant);
  let out: Reply | undefined;
  // extra KEYS (DK8): the quota counters guessed from the candidates, or the script's list
  let extra: string[] | undefined;
  let needRetries = 0;
  for (let attempt = 1; ; attempt++) {
    params.policy_version = policies?.version ?? '';
    params.candidates = candidatesWithRules(policies, scopePath, gov, registry);
    extra ??= gov ? quotaKeyGuess(params.quota_prefix as string, params.candidates as unknown[], params.run_id as string, Date.now()) : [];
    const raw = await runScript(redis, script(), extra.length ? [...scriptKeys, ...extra] : scriptKeys, [JSON.stringify(params)]);
    const need = needKeysOf(raw);
    if (need) {
      if (++needRetries > NEED_KEYS_RETRIES) throw new ApiError('INTERNAL_ERROR', 'reserve: the keys the evaluation needs kept changing; retry the request');
      extra = need;
      attempt--; // not a policy change
      continue;
    }
    out = JSON.parse(raw as string) as Reply;
    if (!out.stale) break;
    extra = undefined; // new candidates: guess again
    const flat = Array.isArray(out.policies) ? out.policies : [];
    const hashObj: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) hashObj[flat[i]] = flat[i + 1];
    const fresh = policyCache.set(tenant, String(out.version), hashObj);
    if (fresh.invalid.length > 0) log.warn({ tenant, policy_ids: fresh.invalid }, 'ignoring unparseable policy records');
    policies = fresh.set;
    if (attempt >= MAX_POLICY_ATTEMPTS) {
      throw new ApiError('INTERNAL_ERROR', 'Policies changed during the evaluation; retry the request');
    }
  }
  if (out.err) {
    const err = scriptError(out, { scopePath, unit, estimate, kind: gov?.kind });
    if (evRequest !== undefined && out.ev_ms !== undefined) err.evidenceSource = { endpoint: mode === 'decide' ? 'decide' : 'reserve', tenant, request: evRequest, result: out };
    throw err;
  }

  const result = out.result!;
  if (Array.isArray(out.fk) && result.reservation_id) finishKeys.set(result.reservation_id, out.fk);
  return { result, replay: out.replay === true, nowMs: Number(out.now_ms), active: out.active !== false, evidenceRequest: evRequest };
}

/** The script candidates, each carrying its v0.1.26 rules for this request (flag on). */
function candidatesWithRules(set: PolicySet | undefined, scopePath: string, gov: GovernanceRequest | undefined,
  registry: ActionKindRegistry | undefined): unknown[] {
  const { cands, policies } = scopeCandidates(set, scopePath);
  if (!gov || !registry) return cands;
  return cands.map((c, i) => {
    const g = governanceFor(policies[i], gov, registry);
    return g ? { ...c, gov: g, needs_run_id: needsRunId(g) } : c;
  });
}

/** DenyDetail as the script builds it (budget_remaining an int64 string) → wire form. */
export function renderDenyDetail(dd: Record<string, unknown>): Record<string, unknown> {
  // members in the schema's order (the script's Lua tables have none)
  const out = ordered(dd, DENY_DETAIL_ORDER);
  if (out.quota_violation && typeof out.quota_violation === 'object') {
    out.quota_violation = ordered(out.quota_violation as Record<string, unknown>, QUOTA_VIOLATION_ORDER);
  }
  if (typeof out.budget_remaining === 'string') out.budget_remaining = toJsonInt(BigInt(out.budget_remaining));
  return out;
}

const DENY_DETAIL_ORDER = ['reason_code', 'quota_violation', 'blocked_by_scope', 'blocked_by_policy', 'suggested_fix', 'budget_remaining'];
const QUOTA_VIOLATION_ORDER = ['action_kind', 'risk_class', 'window', 'window_key', 'used', 'limit', 'scope', 'policy_id'];

function ordered(o: Record<string, unknown>, order: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of order) if (o[k] !== undefined) out[k] = o[k];
  for (const k of Object.keys(o)) if (!(k in out)) out[k] = o[k];
  return out;
}

/** The ApiError of a reserve script error, from the request it answered (the evidence
 *  signer renders attested 409s with it; the same derivation as evaluateReserve's). */
export function reserveErrorOf(reply: ScriptErrorReply, request: Record<string, unknown>, tenant: string): ApiError {
  const { scopePath } = deriveScopes(request.subject, tenant);
  const est = request.estimate as { unit: string; amount: unknown };
  return scriptError(reply, { scopePath, unit: est.unit, estimate: toBig(est.amount), kind: (request.action as { kind?: string } | undefined)?.kind });
}

export interface ScriptErrorReply {
  /** evidence on and the error attested (DEV8) */
  ev_ms?: string; ev_trace?: string; ev_rid?: string;
  err?: string; scope?: string; remaining?: string; expected_units?: string[];
  policy_id?: string; deny_detail?: Record<string, unknown>;
  replay?: boolean; now_ms?: string; active?: boolean; result?: ScriptResult;
  stale?: boolean; version?: string; policies?: string[] | Record<string, never>;
}

function scriptError(out: ScriptErrorReply, req: { scopePath: string; unit: string; estimate: bigint; kind?: string }): ApiError {
  const dd = out.deny_detail ? renderDenyDetail(out.deny_detail) : undefined;
  switch (out.err) {
    case 'RUN_ID_REQUIRED':
      return new ApiError('INVALID_REQUEST', `subject.dimensions.run_id is required: policy ${out.policy_id} has a per_run quota that applies to action kind ${req.kind}`);
    case 'ACTION_KIND_DENIED':
      return new ApiError('ACTION_KIND_DENIED', `Action kind ${req.kind} is denied by policy ${String(dd?.blocked_by_policy)}`, { deny_detail: dd });
    case 'ACTION_KIND_NOT_ALLOWED':
      return new ApiError('ACTION_KIND_NOT_ALLOWED', `Action kind ${req.kind} is not in the allowed_action_kinds of policy ${String(dd?.blocked_by_policy)}`, { deny_detail: dd });
    case 'ACTION_QUOTA_EXCEEDED': {
      const qv = (dd?.quota_violation ?? {}) as Record<string, unknown>;
      const msg = qv.risk_class
        ? `Risk-class quota exceeded: ${String(qv.risk_class)} ${String(qv.window)} limit ${String(qv.limit)} reached`
        : `Action quota exceeded: ${String(qv.action_kind)} ${String(qv.window)} limit ${String(qv.limit)} reached`;
      return new ApiError('ACTION_QUOTA_EXCEEDED', msg, { scope: qv.scope, deny_detail: dd });
    }
    case 'IDEMPOTENCY_MISMATCH':
      return new ApiError('IDEMPOTENCY_MISMATCH', 'idempotency_key was already used with a different request payload');
    case 'IDEMPOTENCY_GONE':
      // the key's record refers to a reservation that no longer exists (docs/decisions.md DM2)
      return new ApiError('IDEMPOTENCY_MISMATCH', 'idempotency_key was already used; the reservation it created no longer exists, so its original response cannot be replayed');
    case 'TENANT_CLOSED':
      return new ApiError('TENANT_CLOSED', 'The owning tenant is CLOSED');
    case 'TENANT_SUSPENDED':
      // The runtime ErrorCode enum has no TENANT_SUSPENDED (decision D9).
      return new ApiError('FORBIDDEN', 'The owning tenant is SUSPENDED: no new reservations', { reason: 'TENANT_SUSPENDED' });
    case 'NOT_FOUND':
      return new ApiError('NOT_FOUND', `Budget not found for provided scope: ${req.scopePath}`);
    case 'UNIT_MISMATCH':
      return new ApiError('UNIT_MISMATCH', `No budget in ${req.unit} at the derived scopes; scope ${out.scope} has budgets in ${(out.expected_units ?? []).join(', ')}`, {
        scope: out.scope, requested_unit: req.unit, expected_units: out.expected_units ?? [],
      });
    case 'BUDGET_EXCEEDED':
    case 'BUDGET_FROZEN':
    case 'BUDGET_CLOSED':
    case 'OVERDRAFT_LIMIT_EXCEEDED':
    case 'DEBT_OUTSTANDING': {
      const details: Record<string, unknown> = { scope: out.scope, unit: req.unit, requested: amount(req.unit, req.estimate) };
      if (out.remaining !== undefined) details.remaining = amount(req.unit, out.remaining);
      if (dd) details.deny_detail = dd;
      return new ApiError(out.err, DENIAL_MESSAGE[out.err].replace('%s', String(out.scope)), details);
    }
    default:
      return new ApiError('INTERNAL_ERROR', `reserve script returned an unknown outcome ${String(out.err)}`);
  }
}

const DENIAL_MESSAGE: Record<string, string> = {
  BUDGET_EXCEEDED: 'Insufficient remaining budget at scope %s',
  BUDGET_FROZEN: 'Budget at scope %s is FROZEN',
  BUDGET_CLOSED: 'Budget at scope %s is CLOSED',
  OVERDRAFT_LIMIT_EXCEEDED: 'Scope %s is over its overdraft limit; new reservations are blocked until reconciled',
  DEBT_OUTSTANDING: 'Scope %s has outstanding debt; new reservations are blocked until it is repaid',
};

// ---- rendering (pure) ---------------------------------------------------------------

function capsOf(r: ScriptResult): Record<string, unknown> | undefined {
  if (r.decision !== 'ALLOW_WITH_CAPS' || !r.caps_json) return undefined;
  return parseJsonBody(r.caps_json).value as Record<string, unknown>;
}

const balancesOf = (r: ScriptResult) => (Array.isArray(r.balances) ? r.balances.map(renderBalance) : []);

/** ReservationCreateResponse from a stored result. Only remaining_ttl_ms depends on
 *  the time of rendering (a volatile observation; IDEMPOTENCY). */
export function renderCreateResponse(o: Outcome): Record<string, unknown> {
  const r = o.result;
  const body: Record<string, unknown> = { decision: r.decision };
  if (r.decision !== 'DENY') {
    if (r.reservation_id) body.reservation_id = r.reservation_id;
    body.reserved = amount(r.unit, r.estimate);
    if (r.expires_at_ms !== undefined) {
      const exp = Number(r.expires_at_ms);
      body.expires_at_ms = exp;
      body.remaining_ttl_ms = o.active ? Math.max(0, exp - o.nowMs) : 0;
    }
  }
  body.scope_path = r.scope_path;
  body.affected_scopes = r.affected_scopes;
  const caps = capsOf(r);
  if (caps) body.caps = caps;
  const balances = balancesOf(r);
  if (balances.length > 0) body.balances = balances;
  if (r.decision === 'DENY' && r.reason_code) body.reason_code = r.reason_code;
  if (r.decision === 'DENY' && r.deny_detail) body.deny_detail = renderDenyDetail(r.deny_detail);
  return body;
}

/** DecisionResponse from a stored result. */
export function renderDecisionResponse(o: Outcome): Record<string, unknown> {
  const r = o.result;
  const body: Record<string, unknown> = { decision: r.decision };
  const caps = capsOf(r);
  if (caps) body.caps = caps;
  if (r.decision === 'DENY' && r.reason_code) body.reason_code = r.reason_code;
  if (r.decision === 'DENY' && r.deny_detail) body.deny_detail = renderDenyDetail(r.deny_detail);
  body.affected_scopes = r.affected_scopes;
  return body;
}
