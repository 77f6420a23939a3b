// In-process cache of each tenant's parsed policies, keyed by the tenant's policy
// version (keys.policyVersion(tenant), INCRed by policy_write.lua on every change).
// The cache is never trusted on its own: reserve.lua compares the version the request
// was evaluated with against the stored counter atomically and answers STALE (no writes,
// with the current policies) when they differ, so a change made through any instance is
// seen by the next reserve everywhere. Per entry, the reserve-ready candidate list of each
// scope path is memoised (policy matching is pure given the policies).
import { policyCandidates, parsePolicies, sanitizeCaps, type Policy } from './match';
import { stringify } from '../json';

/** A candidate as reserve.lua takes it (see src/store/lua/reserve.lua, "policy"). */
export interface ScriptCandidate {
  policy_id: string;
  from_ms?: number;
  until_ms?: number;
  default_ttl_ms?: number;
  max_ttl_ms?: number;
  max_extensions?: number;
  overage?: string;
  caps_json?: string;
}

/** The candidates of one scope path: script form and the policy each came from (same order). */
export interface ScopeCandidates {
  cands: ScriptCandidate[];
  policies: Policy[];
}

export interface PolicySet {
  version: string;
  policies: Policy[];
  /** scope path → candidates in selection order, with their policies (bounded memo) */
  byScope: Map<string, ScopeCandidates>;
}

const OVERAGE_POLICIES = new Set(['REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT']);
const MAX_TENANTS = 10_000;
const MAX_SCOPES_PER_TENANT = 1_000;

const posInt = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;

/** The settings of one policy that a reservation can take (DR4), JSON-safe for Lua. */
export function toScriptCandidate(p: Policy, fromMs?: number, untilMs?: number): ScriptCandidate {
  const ovr = p.reservation_ttl_override ?? {};
  const c: ScriptCandidate = { policy_id: p.policy_id };
  if (fromMs !== undefined) c.from_ms = fromMs;
  if (untilMs !== undefined) c.until_ms = untilMs;
  const dt = posInt(ovr.default_ttl_ms);
  if (dt !== undefined) c.default_ttl_ms = dt;
  const mt = posInt(ovr.max_ttl_ms);
  if (mt !== undefined) c.max_ttl_ms = mt;
  const me = posInt(ovr.max_extensions);
  if (me !== undefined) c.max_extensions = me;
  if (typeof p.commit_overage_policy === 'string' && OVERAGE_POLICIES.has(p.commit_overage_policy)) c.overage = p.commit_overage_policy;
  const caps = sanitizeCaps(p.caps);
  if (caps) c.caps_json = stringify(caps);
  return c;
}

export class PolicyCache {
  private readonly tenants = new Map<string, PolicySet>();

  get(tenant: string): PolicySet | undefined {
    return this.tenants.get(tenant);
  }

  /** Stores the policies read at `version` (hash as field → JSON); returns the entry and
   *  the ids of unparseable records (the caller logs them once per version). */
  set(tenant: string, version: string, hash: Record<string, string>): { set: PolicySet; invalid: string[] } {
    const { policies, invalid } = parsePolicies(hash);
    const set: PolicySet = { version, policies, byScope: new Map() };
    this.tenants.delete(tenant);
    if (this.tenants.size >= MAX_TENANTS) this.tenants.delete(this.tenants.keys().next().value as string);
    this.tenants.set(tenant, set);
    return { set, invalid };
  }

  clear(): void {
    this.tenants.clear();
  }
}

/** Candidates of `scopePath` in selection order, memoised on the entry. */
export function candidatesFor(set: PolicySet | undefined, scopePath: string): ScriptCandidate[] {
  return scopeCandidates(set, scopePath).cands;
}

const NONE: ScopeCandidates = { cands: [], policies: [] };

/** Candidates of `scopePath` with their policies (the v0.1.26 rules are per request). */
export function scopeCandidates(set: PolicySet | undefined, scopePath: string): ScopeCandidates {
  if (!set || set.policies.length === 0) return NONE;
  const hit = set.byScope.get(scopePath);
  if (hit) return hit;
  const matched = policyCandidates(set.policies, scopePath);
  const entry: ScopeCandidates = {
    cands: matched.map((c) => toScriptCandidate(c.policy, c.fromMs, c.untilMs)),
    policies: matched.map((c) => c.policy),
  };
  if (set.byScope.size >= MAX_SCOPES_PER_TENANT) set.byScope.clear();
  set.byScope.set(scopePath, entry);
  return entry;
}
