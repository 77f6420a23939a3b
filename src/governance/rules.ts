// The v0.1.26 rules of one policy as they apply to one request (runtime extension
// RESERVATION EVALUATION ORDER steps 1-3, POLICY KEYS EVALUATION SEMANTICS; action-kinds
// spec ActionQuota, RiskClassQuota, SCOPE DERIVATION FOR QUOTAS). Pure: the policy, the
// request's kind / policy_keys / scope in, the part reserve.lua evaluates out. The time-
// dependent parts (which candidate policy is in effect, the calendar bucket of each window)
// are resolved in the script, on Redis TIME.
import type { Policy } from '../policy/match';
import type { ActionKindRegistry } from './registry';

export type QuotaWindow = 'per_run' | 'per_minute_tumbling' | 'per_hour_tumbling' | 'per_day_tumbling' | 'per_tenant_per_day';

/** One quota rule instance, as reserve.lua takes it (src/store/lua/quota_common.lua). */
export interface ScriptQuotaRule {
  /** the requested action kind (quota_violation.action_kind, also for risk-class rules) */
  kind: string;
  /** set on risk-class rules: the counter is `__risk__:<risk_class>` */
  risk_class?: string;
  window: QuotaWindow;
  limit: number;
  /** canonical scope of the counter: the request's scope path, or the tenant root for
   *  per_tenant_per_day (docs/decisions.md DG6) */
  scope: string;
  /** per_run only: key TTL, refreshed on each increment */
  ttl_ms?: number;
  /** threshold_pct (0.01..0.99, default 0.80) */
  pct: number;
}

export interface ScriptGovernance {
  /** step 1 outcome for this kind, when the policy's lists deny it */
  access?: 'ACTION_KIND_DENIED' | 'ACTION_KIND_NOT_ALLOWED';
  risk: ScriptQuotaRule[];
  kind: ScriptQuotaRule[];
}

export interface GovernanceRequest {
  tenant: string;
  kind: string;
  scopePath: string;
  policyKeys?: Record<string, unknown>;
}

const DEFAULT_PCT = 0.8;
const DEFAULT_RUN_TTL_MS = 86_400_000;

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

// Allowlist fields of ActionQuota and the policy_keys dimension each filters on.
const ALLOWLISTS = [
  ['host_allowlist', 'host', true],
  ['recipient_domain_allowlist', 'recipient_domain', true],
  ['resource_type_allowlist', 'resource_type', false],
] as const;

/**
 * Whether a per-kind rule applies under POLICY KEYS EVALUATION SEMANTICS: every non-empty
 * allowlist needs its policy_keys dimension present, declared by the kind's
 * policy_key_spec (an undeclared dimension is ignored, i.e. treated as absent) and listed.
 * Host names and domains compare case-insensitively (DNS), resource types exactly.
 */
function allowlistsPass(rule: Record<string, unknown>, declared: Record<string, unknown> | undefined, keys: Record<string, unknown> | undefined): boolean {
  for (const [field, dim, caseless] of ALLOWLISTS) {
    const allow = list(rule[field]).filter((x): x is string => typeof x === 'string');
    if (allow.length === 0) continue;
    const raw = declared?.[dim] === true ? str(keys?.[dim]) : undefined;
    if (raw === undefined) return false;
    const v = caseless ? raw.toLowerCase() : raw;
    if (!allow.some((a) => (caseless ? a.toLowerCase() : a) === v)) return false;
  }
  return true;
}

function ruleOf(q: Record<string, unknown>, kind: string, req: GovernanceRequest, riskClass?: string): ScriptQuotaRule | undefined {
  const window = str(q.window) as QuotaWindow | undefined;
  const limit = q.max_calls;
  if (!window || typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) return undefined;
  const r: ScriptQuotaRule = {
    kind,
    window,
    limit,
    scope: window === 'per_tenant_per_day' ? `tenant:${req.tenant}` : req.scopePath,
    pct: typeof q.threshold_pct === 'number' && q.threshold_pct > 0 && q.threshold_pct < 1 ? q.threshold_pct : DEFAULT_PCT,
  };
  if (riskClass) r.risk_class = riskClass;
  if (window === 'per_run') {
    r.ttl_ms = typeof q.per_run_counter_ttl_ms === 'number' && Number.isSafeInteger(q.per_run_counter_ttl_ms)
      ? q.per_run_counter_ttl_ms : DEFAULT_RUN_TTL_MS;
  }
  return r;
}

/** The part of `policy` that governs this request; undefined when nothing does. */
export function governanceFor(policy: Policy, req: GovernanceRequest, registry: ActionKindRegistry): ScriptGovernance | undefined {
  const out: ScriptGovernance = { risk: [], kind: [] };
  const denied = list(policy.denied_action_kinds);
  const allowed = list(policy.allowed_action_kinds);
  if (denied.length > 0 && denied.includes(req.kind)) out.access = 'ACTION_KIND_DENIED';
  else if (allowed.length > 0 && !allowed.includes(req.kind)) out.access = 'ACTION_KIND_NOT_ALLOWED';

  const riskClass = registry.riskClass(req.kind);
  if (riskClass) {
    for (const q of list(policy.risk_class_quotas) as Record<string, unknown>[]) {
      if (q && q.risk_class === riskClass) {
        const r = ruleOf(q, req.kind, req, riskClass);
        if (r) out.risk.push(r);
      }
    }
  }
  const declared = registry.get(req.kind)?.policy_key_spec as Record<string, unknown> | undefined;
  for (const q of list(policy.action_quotas) as Record<string, unknown>[]) {
    if (!q || q.action_kind !== req.kind || !allowlistsPass(q, declared, req.policyKeys)) continue;
    const r = ruleOf(q, req.kind, req);
    if (r) out.kind.push(r);
  }
  return out.access || out.risk.length > 0 || out.kind.length > 0 ? out : undefined;
}

/** Whether any rule needs subject.dimensions.run_id (a per_run window). */
export const needsRunId = (g: ScriptGovernance | undefined): boolean =>
  !!g && (g.risk.some((r) => r.window === 'per_run') || g.kind.some((r) => r.window === 'per_run'));

/** The calendar bucket of `window` at `nowMs` as quota_common.lua quota_window_key names it
 *  (UTC; per_run: the run id, undefined without one). */
export function quotaWindowKey(window: QuotaWindow, nowMs: number, runId: string): string | undefined {
  if (window === 'per_run') return runId === '' ? undefined : runId;
  const iso = new Date(nowMs).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  if (window === 'per_minute_tumbling') return iso.slice(0, 16);
  if (window === 'per_hour_tumbling') return iso.slice(0, 13);
  return iso.slice(0, 10);
}

/** The counter keys reserve.lua will read for these candidates' rules (docs/decisions.md
 *  DK8): declared with the call, on this process's clock; the script corrects a guess that
 *  missed (another window on Redis TIME, another candidate in effect) with need_keys. */
export function quotaKeyGuess(quotaPrefix: string, candidates: unknown[], runId: string, nowMs: number): string[] {
  const out = new Set<string>();
  for (const c of candidates) {
    const g = (c as { gov?: ScriptGovernance }).gov;
    if (!g) continue;
    for (const rule of [...g.risk, ...g.kind]) {
      const wk = quotaWindowKey(rule.window, nowMs, runId);
      if (wk === undefined) continue;
      const part = rule.risk_class ? `__risk__:${rule.risk_class}` : rule.kind;
      out.add(`${quotaPrefix}${rule.scope}:${part}:${rule.window}:${wk}`);
    }
  }
  return [...out];
}
