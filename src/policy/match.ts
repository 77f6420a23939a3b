// Policy selection for the reserve path (admin spec Policy, createPolicy SCOPE PATTERNS /
// PRIORITY / EFFECTIVE DATES; runtime extension MULTI-POLICY SEMANTICS: only the single
// highest-priority matching policy applies). Pure: the caller reads the tenant's
// policies (hash keys.policies(tenant), field = policy_id, value = Policy JSON) and the
// authoritative time, and passes them in.
//
// scope_pattern grammar (docs/decisions.md DR2), matched against the reservation's
// scope_path (its deepest derived scope), case-insensitively:
//   pattern  := segment ('/' segment)*
//   segment  := kind ':' value    exact segment
//             | kind ':' '*'      any value of that kind            ("agent:*")
//             | '*'               one or more whole segments        ("tenant:a/*", "*/agent:b")
//   A pattern whose first segment is not a tenant segment and not '*' is unanchored:
//   it may start at any depth ("agent:*" = every agent scope, as the spec's "all agents
//   system-wide" example says). Trailing '*' means strict descendants only.

export interface PolicyCaps {
  max_tokens?: number;
  max_steps_remaining?: number;
  tool_allowlist?: string[];
  tool_denylist?: string[];
  cooldown_ms?: number;
}

export interface Policy {
  policy_id: string;
  scope_pattern: string;
  priority?: number;
  caps?: PolicyCaps;
  commit_overage_policy?: string;
  reservation_ttl_override?: { default_ttl_ms?: number; max_ttl_ms?: number; max_extensions?: number };
  status?: string;
  effective_from?: string;
  effective_until?: string;
  [k: string]: unknown;
}

/** Upper bound on segments so a hostile pattern cannot make matching expensive. */
const MAX_SEGMENTS = 32;

export function matchesScope(pattern: string, scopePath: string): boolean {
  const pat = pattern.trim().toLowerCase().split('/');
  const segs = scopePath.toLowerCase().split('/');
  if (pat.length === 0 || pat.length > MAX_SEGMENTS || pat.some((p) => p === '')) return false;
  const anchored = pat[0] === '*' || pat[0].startsWith('tenant:');
  const full = anchored ? pat : ['*', ...pat];
  return matchFrom(full, 0, segs, 0);
}

function segmentMatches(p: string, s: string): boolean {
  const i = p.indexOf(':');
  if (i <= 0) return false;
  const kind = p.slice(0, i);
  const value = p.slice(i + 1);
  const j = s.indexOf(':');
  if (j <= 0 || s.slice(0, j) !== kind) return false;
  return value === '*' || value === s.slice(j + 1);
}

// Backtracking over at most MAX_SEGMENTS pattern segments and 6 scope segments.
function matchFrom(pat: string[], pi: number, segs: string[], si: number): boolean {
  if (pi === pat.length) return si === segs.length;
  if (pat[pi] === '*') {
    for (let take = 1; si + take <= segs.length; take++) {
      if (matchFrom(pat, pi + 1, segs, si + take)) return true;
    }
    return false;
  }
  if (si >= segs.length || !segmentMatches(pat[pi], segs[si])) return false;
  return matchFrom(pat, pi + 1, segs, si + 1);
}

/** True when the policy is ACTIVE and `nowMs` is inside [effective_from, effective_until). */
export function isInEffect(p: Policy, nowMs: number): boolean {
  if ((p.status ?? 'ACTIVE') !== 'ACTIVE') return false;
  if (p.effective_from !== undefined) {
    const from = Date.parse(p.effective_from);
    if (Number.isNaN(from) || nowMs < from) return false;
  }
  if (p.effective_until !== undefined) {
    const until = Date.parse(p.effective_until);
    if (Number.isNaN(until) || nowMs >= until) return false;
  }
  return true;
}

/** Parses the policies hash. Entries that are not JSON objects with a string
 *  policy_id and scope_pattern are returned in `invalid` (the caller logs them). */
export function parsePolicies(hash: Record<string, string>): { policies: Policy[]; invalid: string[] } {
  const policies: Policy[] = [];
  const invalid: string[] = [];
  for (const [field, raw] of Object.entries(hash)) {
    let v: unknown;
    try { v = JSON.parse(raw); } catch { invalid.push(field); continue; }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) { invalid.push(field); continue; }
    const p = v as Policy;
    if (typeof p.scope_pattern !== 'string') { invalid.push(field); continue; }
    if (typeof p.policy_id !== 'string') p.policy_id = field;
    policies.push(p);
  }
  return { policies, invalid };
}

/** The single policy that governs `scopePath` at `nowMs`: highest priority among the
 *  ACTIVE, in-effect, matching policies; ties broken by policy_id (ascending) so every
 *  instance picks the same one. */
export function selectPolicy(policies: readonly Policy[], scopePath: string, nowMs: number): Policy | undefined {
  let best: Policy | undefined;
  for (const p of policies) {
    if (!isInEffect(p, nowMs) || !matchesScope(p.scope_pattern, scopePath)) continue;
    if (best === undefined) { best = p; continue; }
    const a = prio(p);
    const b = prio(best);
    if (a > b || (a === b && p.policy_id < best.policy_id)) best = p;
  }
  return best;
}

const prio = (p: Policy) => (typeof p.priority === 'number' && Number.isFinite(p.priority) ? p.priority : 0);

/** Caps restricted to the spec's Caps schema (additionalProperties: false). Returns
 *  undefined when nothing usable is left, so an empty caps object means plain ALLOW. */
export function sanitizeCaps(caps: unknown): PolicyCaps | undefined {
  if (caps === null || typeof caps !== 'object' || Array.isArray(caps)) return undefined;
  const c = caps as Record<string, unknown>;
  const out: PolicyCaps = {};
  const nonNegInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const strList = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length <= 256);
  if (nonNegInt(c.max_tokens)) out.max_tokens = c.max_tokens as number;
  if (nonNegInt(c.max_steps_remaining)) out.max_steps_remaining = c.max_steps_remaining as number;
  if (nonNegInt(c.cooldown_ms)) out.cooldown_ms = c.cooldown_ms as number;
  if (strList(c.tool_allowlist)) out.tool_allowlist = [...(c.tool_allowlist as string[])];
  if (strList(c.tool_denylist)) out.tool_denylist = [...(c.tool_denylist as string[])];
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A matching policy with its effective window resolved to ms (absent = unbounded). */
export interface PolicyCandidate { policy: Policy; fromMs?: number; untilMs?: number }

/**
 * The time-independent half of selectPolicy: the ACTIVE policies whose scope_pattern
 * matches `scopePath` and whose effective dates parse, in selection order (priority
 * descending, policy_id ascending), cut after the first one without an effective window
 * (it is always in effect, so nothing after it can win). The first candidate whose window
 * contains "now" is exactly selectPolicy(policies, scopePath, now) — so the time check can
 * run where the authoritative clock is (reserve.lua, Redis TIME).
 */
export function policyCandidates(policies: readonly Policy[], scopePath: string): PolicyCandidate[] {
  const out: PolicyCandidate[] = [];
  for (const p of policies) {
    if ((p.status ?? 'ACTIVE') !== 'ACTIVE' || !matchesScope(p.scope_pattern, scopePath)) continue;
    const c: PolicyCandidate = { policy: p };
    if (p.effective_from !== undefined) {
      c.fromMs = Date.parse(p.effective_from);
      if (Number.isNaN(c.fromMs)) continue;
    }
    if (p.effective_until !== undefined) {
      c.untilMs = Date.parse(p.effective_until);
      if (Number.isNaN(c.untilMs)) continue;
    }
    out.push(c);
  }
  out.sort((x, y) => prio(y.policy) - prio(x.policy) || (x.policy.policy_id < y.policy.policy_id ? -1 : x.policy.policy_id > y.policy.policy_id ? 1 : 0));
  const always = out.findIndex((c) => c.fromMs === undefined && c.untilMs === undefined);
  return always < 0 ? out : out.slice(0, always + 1);
}

/** The candidate in effect at `nowMs` (mirrors the selection loop in reserve.lua). */
export function pickCandidate(cands: readonly PolicyCandidate[], nowMs: number): Policy | undefined {
  return cands.find((c) => (c.fromMs === undefined || nowMs >= c.fromMs) && (c.untilMs === undefined || nowMs < c.untilMs))?.policy;
}
