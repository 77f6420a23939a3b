// The reserve path: createReservation (live and dry_run) and decide. One evaluation,
// three wire shapes (runtime spec ERROR SEMANTICS, DecisionReasonCode, createReservation
// DRY-RUN RESPONSE RULES, decide):
//   live      ALLOW → 200 with a reservation; budget denial → 409; no budget → 404
//   dry_run   ALLOW/DENY → 200 (no reservation id); no budget → DENY BUDGET_NOT_FOUND
//   decide    DecisionResponse, DENY with reason_code; never 409 except IDEMPOTENCY_MISMATCH
// UNIT_MISMATCH is 400 on all three.
//
// Flow: validate + derive scopes (pure) → one pipelined read (policies, tenant config,
// Redis TIME, idempotency presence) → resolve effective TTL / overage / caps (pure) →
// live only: write the non-tenant hints (owner, expiry schedule) → reserve.lua does
// idempotency, tenant guard, checks and writes atomically → render the response (pure)
// from the script's result, so a replay renders byte-identically.
import { randomUUID } from 'node:crypto';
import { ApiError } from '../errors';
import { parseJsonBody, stringify, toBig, INT64_MAX } from '../json';
import { keys } from '../store/keys';
import { loadScript, runScript } from '../store/scripts';
import { amount, renderBalance, UNITS } from './model';
import { deriveScopes } from './scope';
import { idempotencyKeyFrom, payloadHash } from './idempotency';
import { parsePolicies, sanitizeCaps, selectPolicy, type Policy } from '../policy/match';
import type { HandlerContext } from '../http/types';

export type ReserveMode = 'live' | 'dry_run' | 'decide';

export const DEFAULT_TTL_MS = 60_000;
export const DEFAULT_GRACE_MS = 5_000;
export const DEFAULT_MAX_EXTENSIONS = 10;
/** A tenant record without max_reservation_ttl_ms gets the admin spec's default (1 h). */
export const TENANT_DEFAULT_MAX_TTL_MS = 3_600_000;
const DAY_MS = 86_400_000;
const OVERAGE_POLICIES = new Set(['REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT']);

export interface Effective {
  ttlMs: number;
  graceMs: number;
  maxExtensions: number;
  /** request > policy; '' = let the script resolve budget > tenant > default */
  overageExplicit: string;
  caps?: Record<string, unknown>;
  policyId?: string;
}

const posInt = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
const hashInt = (v: string | undefined): number | undefined => {
  if (v === undefined || !/^\d{1,15}$/.test(v)) return undefined;
  return Number(v);
};

/**
 * Effective reservation settings (docs/decisions.md DR4):
 *  ttl   = request ?? policy default_ttl_ms ?? tenant default_reservation_ttl_ms ?? 60000,
 *          capped (never rejected) at policy max_ttl_ms ?? tenant max_reservation_ttl_ms
 *          (1 h when the tenant record lacks it; uncapped without a tenant record);
 *  grace = request ?? 5000;
 *  max_extensions = policy ?? tenant max_reservation_extensions ?? 10;
 *  overage: request > policy here; budget > tenant > ALLOW_IF_AVAILABLE in the script.
 */
export function effectiveSettings(
  body: Record<string, unknown>,
  policy: Policy | undefined,
  tenant: Record<string, string> | undefined,
): Effective {
  const ovr = policy?.reservation_ttl_override ?? {};
  const hasTenant = tenant !== undefined && Object.keys(tenant).length > 0;
  let ttl = posInt(body.ttl_ms) ?? posInt(ovr.default_ttl_ms) ?? hashInt(tenant?.default_reservation_ttl_ms) ?? DEFAULT_TTL_MS;
  const max = posInt(ovr.max_ttl_ms) ?? hashInt(tenant?.max_reservation_ttl_ms) ?? (hasTenant ? TENANT_DEFAULT_MAX_TTL_MS : undefined);
  if (max !== undefined && max > 0 && ttl > max) ttl = max;
  const graceMs = posInt(body.grace_period_ms) ?? DEFAULT_GRACE_MS;
  const maxExtensions = posInt(ovr.max_extensions) ?? hashInt(tenant?.max_reservation_extensions) ?? DEFAULT_MAX_EXTENSIONS;
  const fromRequest = typeof body.overage_policy === 'string' ? body.overage_policy : undefined;
  const fromPolicy = typeof policy?.commit_overage_policy === 'string' && OVERAGE_POLICIES.has(policy.commit_overage_policy)
    ? policy.commit_overage_policy : undefined;
  const caps = policy ? sanitizeCaps(policy.caps) : undefined;
  return {
    ttlMs: ttl,
    graceMs,
    maxExtensions,
    overageExplicit: fromRequest ?? fromPolicy ?? '',
    ...(caps ? { caps: caps as Record<string, unknown> } : {}),
    ...(policy ? { policyId: policy.policy_id } : {}),
  };
}

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
}

export interface Outcome {
  result: ScriptResult;
  replay: boolean;
  nowMs: number;
  /** live replays: whether the reservation is still ACTIVE (remaining_ttl_ms → 0 if not) */
  active: boolean;
}

const script = () => loadScript('reserve');

export async function evaluateReserve(ctx: HandlerContext, mode: ReserveMode): Promise<Outcome> {
  const { redis, log } = ctx.deps;
  const principal = ctx.principal;
  if (principal.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'A tenant API key is required');
  const tenant = principal.tenantId;
  const body = ctx.body as Record<string, unknown>;
  const idemKey = idempotencyKeyFrom(ctx);
  const { scopes, scopePath } = deriveScopes(body.subject, tenant);
  const est = body.estimate as { unit: string; amount: unknown };
  const estimate = toBig(est.amount);
  if (estimate < 0n || estimate > INT64_MAX) throw new ApiError('INVALID_REQUEST', 'estimate.amount must be a non-negative int64');
  const unit = est.unit;
  const hash = payloadHash(reservePayload(body, mode));
  const endpoint = mode === 'decide' ? 'decide' : 'reserve';
  const idem = keys.idem(tenant, endpoint, idemKey);

  const [polRes, tenRes, timeRes, idemRes] = (await redis
    .pipeline()
    .hgetall(keys.policies(tenant))
    .hgetall(keys.tenant(tenant))
    .time()
    .exists(idem)
    .exec())!;
  for (const [err] of [polRes, tenRes, timeRes, idemRes]) if (err) throw err;
  const [sec, usec] = timeRes[1] as [string, string];
  const t0 = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  const { policies, invalid } = parsePolicies(polRes[1] as Record<string, string>);
  if (invalid.length > 0) log.warn({ tenant, policy_ids: invalid }, 'ignoring unparseable policy records');
  const policy = selectPolicy(policies, scopePath, t0);
  const eff = effectiveSettings(body, policy, tenRes[1] as Record<string, string>);

  const live = mode === 'live';
  const reservationId = live ? `res_${randomUUID().replace(/-/g, '')}` : '';
  const expiresAt = t0 + eff.ttlMs;
  if (live && (idemRes[1] as number) === 0) {
    // Hints outside the tenant slot, written BEFORE the script so a crash can never
    // leave a reservation without them (a stale hint for an id that was never
    // created is harmless: owner lookups find no hash, the sweeper finds nothing).
    await redis
      .pipeline()
      .set(keys.reservationOwner(reservationId), tenant)
      .zadd(keys.expirySchedule(), expiresAt + eff.graceMs, `${tenant}\n${reservationId}`)
      .exec();
  }

  const otherUnits = UNITS.filter((u) => u !== unit);
  const params = {
    mode,
    hash,
    tenant,
    reservation_id: reservationId,
    unit,
    estimate: estimate.toString(),
    expires_at_ms: String(expiresAt),
    grace_ms: String(eff.graceMs),
    overage_explicit: eff.overageExplicit,
    max_extensions: String(eff.maxExtensions),
    caps_json: eff.caps ? stringify(eff.caps) : '',
    idem_ttl_ms: String(live ? Math.max(eff.ttlMs + eff.graceMs, DAY_MS) : DAY_MS),
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
    policy_id: eff.policyId ?? '',
  };
  const scriptKeys = [
    idem,
    keys.tenant(tenant),
    keys.reservation(tenant, reservationId || '_'),
    keys.reservationIndex(tenant),
    keys.outbox(tenant),
    ...scopes.map((s) => keys.budget(tenant, s, unit)),
    ...scopes.flatMap((s) => otherUnits.map((u) => keys.budget(tenant, s, u))),
  ];
  const raw = (await runScript(redis, script(), scriptKeys, [JSON.stringify(params)])) as string;
  const out = JSON.parse(raw) as { err?: string; scope?: string; remaining?: string; expected_units?: string[] }
    & { replay?: boolean; now_ms?: string; result?: ScriptResult };
  if (out.err) throw scriptError(out, { scopePath, unit, estimate });

  const result = out.result!;
  const nowMs = Number(out.now_ms);
  let active = true;
  if (out.replay && result.reservation_id) {
    const st = await redis.hget(keys.reservation(tenant, result.reservation_id), 'status');
    active = st === 'ACTIVE';
  }
  return { result, replay: out.replay === true, nowMs, active };
}

function scriptError(
  out: { err?: string; scope?: string; remaining?: string; expected_units?: string[] },
  req: { scopePath: string; unit: string; estimate: bigint },
): ApiError {
  switch (out.err) {
    case 'IDEMPOTENCY_MISMATCH':
      return new ApiError('IDEMPOTENCY_MISMATCH', 'idempotency_key was already used with a different request payload');
    case 'TENANT_CLOSED':
      return new ApiError('TENANT_CLOSED', 'The owning tenant is CLOSED');
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
  return body;
}

/** DecisionResponse from a stored result. */
export function renderDecisionResponse(o: Outcome): Record<string, unknown> {
  const r = o.result;
  const body: Record<string, unknown> = { decision: r.decision };
  const caps = capsOf(r);
  if (caps) body.caps = caps;
  if (r.decision === 'DENY' && r.reason_code) body.reason_code = r.reason_code;
  body.affected_scopes = r.affected_scopes;
  return body;
}
