// Policies (admin spec createPolicy / listPolicies / updatePolicy, plus the v0.1.26
// action-quota and action-kind access-control fields folded into Policy).
//
// Storage (fixed, the runtime reads it): hash keys.policies(tenant), field = policy_id,
// value = the Policy JSON exactly as the API returns it. keys.policyNames(tenant) maps
// name → policy_id (uniqueness, same script); keys.policyOwner(policy_id) → tenant lets
// updatePolicy find a policy by id under the admin key. Writes go through
// src/store/lua/policy_write.lua (tenant guard + row + name index + policy.* event).
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError, invalid } from '../errors';
import { keys } from '../store/keys';
import { stringify } from '../json';
import type { Principal } from '../auth/authenticate';
import { scopeFilterAllows, SCOPE_LEVELS } from './scope';
import { runAdminScript, type EventCtx } from './common';
import { paginate, parseLimit } from '../list/cursor';
import { ActionKindRegistry } from '../governance/registry';

export const MAX_POLICIES_PER_TENANT = 1000;
const UPDATE_RETRIES = 5;

// ------------------------------------------------------------------ scope_pattern grammar
//   pattern := segment ('/' segment)*         at most 13 segments, ≤ 1024 chars
//   segment := kind ':' value | kind ':' '*' | '*'
// kinds are the budget scope kinds, explicit kinds strictly in canonical order; values as
// in budget scopes ([a-z0-9._-], alphanumeric at both ends, ≤ 128); no two '*' in a row.
// A pattern that starts with a tenant segment must name the owning tenant (policies live
// in that tenant's hash; a cross-tenant pattern could never match anything else).
// Unanchored patterns ("agent:*", "*/agent:x") match inside the owning tenant only.
// Matching semantics: src/policy/match.ts. Case-normalised to lowercase.
const VALUE_RE = /^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$/;

export function parseScopePattern(raw: string, tenant: string): string {
  const bad = (why: string) => invalid(`Invalid scope_pattern "${raw.slice(0, 200)}": ${why}`);
  if (typeof raw !== 'string' || raw.trim() === '') throw bad('empty');
  if (raw.length > 1024) throw bad('longer than 1024 characters');
  const pattern = raw.trim().toLowerCase();
  const segs = pattern.split('/');
  if (segs.length > 13) throw bad('more than 13 segments');
  let lastLevel = -1;
  segs.forEach((seg, i) => {
    if (seg === '*') {
      if (i > 0 && segs[i - 1] === '*') throw bad("'*/*' is redundant");
      return;
    }
    const c = seg.indexOf(':');
    if (c <= 0) throw bad(`segment "${seg}" is not kind:value, kind:* or *`);
    const kind = seg.slice(0, c);
    const value = seg.slice(c + 1);
    const level = (SCOPE_LEVELS as readonly string[]).indexOf(kind);
    if (level < 0) throw bad(`unknown scope kind "${kind}" (expected one of ${SCOPE_LEVELS.join(', ')})`);
    if (level <= lastLevel) throw bad(`kind "${kind}" is out of order (order: ${SCOPE_LEVELS.join(' → ')})`);
    lastLevel = level;
    if (kind === 'tenant') {
      if (i !== 0) throw bad('a tenant segment can only come first');
      if (value !== tenant) throw bad(`must be rooted at the owning tenant (tenant:${tenant}), not tenant:${value}`);
      return;
    }
    if (value !== '*' && !VALUE_RE.test(value)) {
      throw bad(`value "${value}" must be '*' or 1-128 characters of [a-z0-9._-], starting and ending alphanumeric`);
    }
  });
  return pattern;
}

// ------------------------------------------------------------------ action kinds
interface RegistryKind { kind: string; risk_class: string }
// The registry of a declaration list (config.customActionKinds, stable for the process).
const registries = new WeakMap<readonly RegistryKind[], ActionKindRegistry>();

/** Built-in kinds (src/generated/action-kinds.ts) plus the operator's declared custom.* kinds. */
export function knownActionKinds(custom: readonly RegistryKind[]): ActionKindRegistry {
  let r = registries.get(custom);
  if (!r) {
    r = new ActionKindRegistry(custom);
    registries.set(custom, r);
  }
  return r;
}

function checkKind(kind: string, known: ActionKindRegistry, where: string): void {
  // the same rule as for action.kind in requests (requireDeclaredKind): undeclared custom.* → 400
  const why = known.checkRequestKind(kind);
  if (why) throw invalid(`${where}: ${why}`);
  // stricter than reservations for the rest (decision DP1): a policy naming a kind the
  // registry does not know is almost certainly a typo that would never match
  if (!known.get(kind)) throw invalid(`${where}: unrecognized action kind "${kind}" (not in the action-kind registry)`);
}

// ------------------------------------------------------------------ validation
const PATCHABLE = ['name', 'description', 'priority', 'caps', 'commit_overage_policy', 'reservation_ttl_override',
  'rate_limits', 'effective_from', 'effective_until', 'status',
  'action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds'] as const;

/** Field order of the Policy schema, so stored JSON reads naturally. */
const ORDER = ['policy_id', 'name', 'description', 'scope_pattern', 'priority', 'caps', 'commit_overage_policy',
  'reservation_ttl_override', 'rate_limits', 'status', 'effective_from', 'effective_until', 'created_at', 'updated_at',
  'action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds'];

export type PolicyDoc = Record<string, any>;

/** The v0.1.26 fields folded into Policy (governance extension). */
export const POLICY_EXTENSION_FIELDS = ['action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds'] as const;

/** A stored policy as the API returns it: with the flag off, without the v0.1.26 fields (the
 *  v0.1.25 Policy is a closed schema; decision DG1). Storage keeps them either way. */
export function renderPolicy(doc: PolicyDoc, v126: boolean): PolicyDoc {
  if (v126) return doc;
  const out: PolicyDoc = { ...doc };
  for (const k of POLICY_EXTENSION_FIELDS) delete out[k];
  return out;
}

function checkTtlOverride(v: unknown): void {
  if (v === undefined) return;
  const o = v as Record<string, unknown>;
  for (const k of ['default_ttl_ms', 'max_ttl_ms'] as const) {
    const n = o[k];
    if (n !== undefined && (typeof n !== 'number' || n < 1000 || n > 86_400_000)) {
      throw invalid(`reservation_ttl_override.${k} must be between 1000 and 86400000`);
    }
  }
  const me = o.max_extensions;
  if (me !== undefined && !((typeof me === 'number' && me >= 0) || (typeof me === 'bigint' && me >= 0n))) {
    throw invalid('reservation_ttl_override.max_extensions must be >= 0');
  }
  if (typeof o.default_ttl_ms === 'number' && typeof o.max_ttl_ms === 'number' && o.default_ttl_ms > o.max_ttl_ms) {
    throw invalid('reservation_ttl_override.default_ttl_ms must not exceed max_ttl_ms');
  }
}

function checkRateLimits(v: unknown): void {
  if (v === undefined) return;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('rate_limits must be an object');
  for (const [k, n] of Object.entries(v as Record<string, unknown>)) {
    if (k !== 'max_reservations_per_minute' && k !== 'max_commits_per_minute') {
      throw invalid(`rate_limits.${k} is not a known rate limit (max_reservations_per_minute, max_commits_per_minute)`);
    }
    const ok = (typeof n === 'number' && Number.isInteger(n) && n >= 1) || (typeof n === 'bigint' && n >= 1n);
    if (!ok) throw invalid(`rate_limits.${k} must be an integer >= 1`);
  }
}

function checkQuotas(doc: PolicyDoc, known: ActionKindRegistry): void {
  (doc.action_quotas as Record<string, unknown>[]).forEach((q, i) => {
    checkKind(String(q.action_kind), known, `action_quotas[${i}].action_kind`);
    if (q.per_run_counter_ttl_ms !== undefined && q.window !== 'per_run') {
      throw invalid(`action_quotas[${i}].per_run_counter_ttl_ms is only allowed with window per_run (got ${q.window})`);
    }
  });
  (doc.risk_class_quotas as Record<string, unknown>[]).forEach((q, i) => {
    if (q.per_run_counter_ttl_ms !== undefined && q.window !== 'per_run') {
      throw invalid(`risk_class_quotas[${i}].per_run_counter_ttl_ms is only allowed with window per_run (got ${q.window})`);
    }
  });
  const allow = doc.allowed_action_kinds as string[];
  const deny = doc.denied_action_kinds as string[];
  if (allow.length > 0 && deny.length > 0) {
    throw invalid('allowed_action_kinds and denied_action_kinds are mutually exclusive: at most one may be non-empty');
  }
  allow.forEach((k, i) => checkKind(k, known, `allowed_action_kinds[${i}]`));
  deny.forEach((k, i) => checkKind(k, known, `denied_action_kinds[${i}]`));
}

/** Checks the whole (post-merge) policy; the spec validator already checked shapes. */
function checkPolicy(doc: PolicyDoc, known: ActionKindRegistry): void {
  if (typeof doc.name !== 'string' || doc.name.trim() === '') throw invalid('name must be a non-empty string');
  if (doc.name.length > 256) throw invalid('name must be at most 256 characters');
  if (doc.description !== undefined && String(doc.description).length > 1024) throw invalid('description must be at most 1024 characters');
  if (doc.priority !== undefined && ((typeof doc.priority === 'bigint' && doc.priority < 0n) || (typeof doc.priority === 'number' && doc.priority < 0))) {
    throw invalid('priority must be >= 0');
  }
  if (typeof doc.priority === 'bigint') throw invalid('priority is out of range');
  checkTtlOverride(doc.reservation_ttl_override);
  checkRateLimits(doc.rate_limits);
  for (const k of ['effective_from', 'effective_until'] as const) {
    if (doc[k] !== undefined && Number.isNaN(Date.parse(doc[k]))) throw invalid(`${k} must be an RFC 3339 date-time`);
  }
  if (doc.effective_from !== undefined && doc.effective_until !== undefined && Date.parse(doc.effective_from) >= Date.parse(doc.effective_until)) {
    throw invalid('effective_from must be before effective_until');
  }
  checkQuotas(doc, known);
}

function ordered(doc: PolicyDoc): PolicyDoc {
  const out: PolicyDoc = {};
  for (const k of ORDER) if (doc[k] !== undefined) out[k] = doc[k];
  return out;
}

function requireScope(p: Principal, pattern: string): void {
  if (p.kind === 'tenant' && !scopeFilterAllows(p.scopeFilter, pattern)) {
    throw new ApiError('FORBIDDEN', `The API key's scope_filter does not cover scope_pattern ${pattern}`);
  }
}

const newPolicyId = () => `pol_${randomBytes(12).toString('hex')}`;

// ------------------------------------------------------------------ operations
export interface PolicyWriteCtx {
  principal: Principal;
  ev: EventCtx;
  customKinds: readonly RegistryKind[];
}

/** The tenant a policy request acts for (tenant_id rule of createPolicy / listPolicies). */
export function policyTenant(p: Principal, explicit: unknown, where: 'body' | 'query'): string {
  if (p.kind === 'tenant') {
    if (where === 'body' && explicit !== undefined) {
      throw invalid('tenant_id must not be sent with an API key: the tenant is the key\'s own');
    }
    return p.tenantId;
  }
  if (typeof explicit !== 'string' || explicit === '') {
    throw invalid(`tenant_id is required in the ${where} with the admin key`);
  }
  return explicit;
}

export async function createPolicy(redis: Redis, body: Record<string, any>, c: PolicyWriteCtx): Promise<PolicyDoc> {
  const tenant = policyTenant(c.principal, body.tenant_id, 'body');
  const pattern = parseScopePattern(body.scope_pattern, tenant);
  requireScope(c.principal, pattern);
  const now = new Date().toISOString();
  const id = newPolicyId();
  const doc: PolicyDoc = {
    ...Object.fromEntries(PATCHABLE.filter((k) => body[k] !== undefined).map((k) => [k, body[k]])),
    policy_id: id,
    scope_pattern: pattern,
    priority: body.priority ?? 0,
    status: 'ACTIVE',
    created_at: now,
    updated_at: now,
    action_quotas: body.action_quotas ?? [],
    risk_class_quotas: body.risk_class_quotas ?? [],
    allowed_action_kinds: body.allowed_action_kinds ?? [],
    denied_action_kinds: body.denied_action_kinds ?? [],
  };
  checkPolicy(doc, knownActionKinds(c.customKinds));
  const policy = ordered(doc);
  const json = stringify(policy);
  const data = stringify({ policy_id: id, name: policy.name, scope_pattern: pattern, changed_fields: [] });
  // Owner index first (another slot); undone if the script refuses.
  await redis.set(keys.policyOwner(id), tenant);
  try {
    await runAdminScript(redis, 'policy_write', policyKeys(tenant), [
      'create', id, json, policy.name, '', '', 'policy.created', data, JSON.stringify(c.ev),
      c.principal.kind === 'admin' ? '1' : '0', MAX_POLICIES_PER_TENANT,
    ], { TENANT_NOT_FOUND: invalid(`Tenant ${tenant} does not exist`) });
  } catch (e) {
    await redis.del(keys.policyOwner(id)).catch(() => 0);
    throw e;
  }
  return policy;
}

const policyKeys = (t: string) => [keys.tenant(t), keys.policies(t), keys.policyNames(t), keys.outbox(t), keys.policyVersion(t)];

/** Resolves the owning tenant of a policy id; 404 for unknown ids and for another
 *  tenant's policy under an API key (no existence leak). */
export async function policyOwner(redis: Redis, p: Principal, policyId: string): Promise<string> {
  if (p.kind === 'tenant') {
    if (await redis.hexists(keys.policies(p.tenantId), policyId)) return p.tenantId;
    throw new ApiError('NOT_FOUND', `Policy ${policyId} not found`);
  }
  const owner = await redis.get(keys.policyOwner(policyId));
  if (!owner || !(await redis.hexists(keys.policies(owner), policyId))) {
    throw new ApiError('NOT_FOUND', `Policy ${policyId} not found`);
  }
  return owner;
}

export async function updatePolicy(
  redis: Redis, tenant: string, policyId: string, body: Record<string, any>, c: PolicyWriteCtx,
): Promise<PolicyDoc> {
  if (body.scope_pattern !== undefined) throw invalid('scope_pattern cannot be changed; create a new policy instead');
  const known = knownActionKinds(c.customKinds);
  const conflict = new ApiError('INTERNAL_ERROR', 'conflict');
  for (let attempt = 0; attempt < UPDATE_RETRIES; attempt++) {
    const curJson = await redis.hget(keys.policies(tenant), policyId);
    if (curJson === null) throw new ApiError('NOT_FOUND', `Policy ${policyId} not found`);
    const cur = JSON.parse(curJson) as PolicyDoc;
    requireScope(c.principal, String(cur.scope_pattern));
    const next: PolicyDoc = { ...cur };
    for (const k of ['action_quotas', 'risk_class_quotas', 'allowed_action_kinds', 'denied_action_kinds']) next[k] ??= [];
    const changed: string[] = [];
    for (const k of PATCHABLE) {
      if (body[k] === undefined) continue;
      if (cur[k] === undefined || stringify(body[k]) !== stringify(cur[k])) changed.push(k);
      next[k] = body[k];
    }
    checkPolicy(next, known);
    if (changed.length > 0) next.updated_at = new Date().toISOString();
    const policy = ordered(next);
    const json = changed.length > 0 ? stringify(policy) : curJson;
    const data = stringify({ policy_id: policyId, name: policy.name, scope_pattern: policy.scope_pattern, changed_fields: changed });
    try {
      await runAdminScript(redis, 'policy_write', policyKeys(tenant), [
        'update', policyId, json, policy.name, curJson, String(cur.name ?? ''),
        changed.length > 0 ? 'policy.updated' : '', data, JSON.stringify(c.ev), '0', MAX_POLICIES_PER_TENANT,
      ], { CONFLICT: conflict });
      return changed.length > 0 ? policy : (JSON.parse(curJson) as PolicyDoc);
    } catch (e) {
      if (e !== conflict) throw e;
    }
  }
  throw new ApiError('INTERNAL_ERROR', 'Policy is being updated concurrently; retry');
}

/** `v126` off: has_action_quotas and references_action_kind are accepted and ignored (the base
 *  spec's additive-parameter guarantee) and the rows are rendered without the v0.1.26 fields. */
export async function listPolicies(redis: Redis, p: Principal, q: Record<string, any>, v126: boolean) {
  const tenant = policyTenant(p, q.tenant_id, 'query');
  const limit = parseLimit(q.limit);
  const raw = await redis.hvals(keys.policies(tenant));
  const pattern = typeof q.scope_pattern === 'string' && q.scope_pattern !== '' ? q.scope_pattern.trim().toLowerCase() : undefined;
  const kind = v126 && typeof q.references_action_kind === 'string' && q.references_action_kind !== '' ? q.references_action_kind : undefined;
  const hasQuotas = v126 ? q.has_action_quotas as boolean | undefined : undefined;
  const rows: PolicyDoc[] = [];
  for (const r of raw) {
    let d: PolicyDoc;
    try { d = JSON.parse(r); } catch { continue; }
    if (pattern !== undefined && d.scope_pattern !== pattern) continue;
    if (q.status !== undefined && d.status !== q.status) continue;
    if (p.kind === 'tenant' && !scopeFilterAllows(p.scopeFilter, String(d.scope_pattern))) continue;
    const aq = (d.action_quotas ?? []) as Record<string, unknown>[];
    const rq = (d.risk_class_quotas ?? []) as unknown[];
    if (hasQuotas !== undefined && (aq.length > 0 || rq.length > 0) !== hasQuotas) continue;
    if (kind !== undefined) {
      const refs = aq.some((x) => x.action_kind === kind)
        || ((d.allowed_action_kinds ?? []) as string[]).includes(kind)
        || ((d.denied_action_kinds ?? []) as string[]).includes(kind);
      if (!refs) continue;
    }
    rows.push(d);
  }
  const page = paginate(rows, {
    sort: { name: 'created_at', value: (d) => String(d.created_at) },
    dir: 'desc',
    id: (d) => String(d.policy_id),
    limit,
    filters: { tenant, scope_pattern: pattern, status: q.status, has_action_quotas: hasQuotas, references_action_kind: kind },
    cursor: q.cursor,
  });
  return { policies: page.rows.map((d) => renderPolicy(d, v126)), has_more: page.hasMore, ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}) };
}
