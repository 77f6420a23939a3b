// Canonical scope derivation (runtime spec SCOPE DERIVATION, Subject CHARSET, AUTH &
// TENANCY). Pure: no I/O. A subject is a bag of standard levels; the server derives one
// cumulative scope per provided level, in canonical order, skipping gaps:
//   {tenant: Acme, agent: Bot} → ["tenant:acme", "tenant:acme/agent:bot"]
// Values are lower-cased for the canonical scope (scope strings are identifiers, not
// display text); the subject itself is stored and returned exactly as sent.
// Tenancy (docs/decisions.md DR1): a subject without `tenant` is bound to the caller's
// tenant by injecting it as the first level, so no request can address scopes outside
// the effective tenant.
import { ApiError } from '../errors';

export const LEVELS = ['tenant', 'workspace', 'app', 'workflow', 'agent', 'toolset'] as const;
export type Level = (typeof LEVELS)[number];

/** Subject CHARSET: ':' and '/' are structural in scope paths, so values outside this
 *  pattern have no stable canonical encoding; the spec allows rejecting them (MAY). */
export const SCOPE_VALUE_RE = /^[a-zA-Z0-9_.-]+$/;
export const SCOPE_VALUE_MAX = 128;

export interface DerivedScopes {
  /** cumulative scope paths, shallowest first (affected_scopes) */
  scopes: string[];
  /** the deepest scope (scope_path) */
  scopePath: string;
}

export function deriveScopes(subject: unknown, effectiveTenant: string): DerivedScopes {
  if (subject === null || typeof subject !== 'object' || Array.isArray(subject)) {
    throw new ApiError('INVALID_REQUEST', 'subject must be an object');
  }
  const s = subject as Record<string, unknown>;
  if (!LEVELS.some((l) => s[l] !== undefined)) {
    throw new ApiError('INVALID_REQUEST', 'subject must contain at least one of tenant, workspace, app, workflow, agent, toolset (dimensions alone are not a scope)');
  }
  for (const level of LEVELS) {
    const v = s[level];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length > SCOPE_VALUE_MAX || !SCOPE_VALUE_RE.test(v)) {
      throw new ApiError('INVALID_REQUEST', `subject.${level} must match ${SCOPE_VALUE_RE.source} and be at most ${SCOPE_VALUE_MAX} characters`, { field: `subject.${level}` });
    }
  }
  const keyTenant = effectiveTenant.toLowerCase();
  if (s.tenant !== undefined && (s.tenant as string).toLowerCase() !== keyTenant) {
    throw new ApiError('FORBIDDEN', 'subject.tenant does not match the tenant of the API key');
  }

  const scopes: string[] = [];
  let path = '';
  for (const level of LEVELS) {
    const v = level === 'tenant' ? keyTenant : (s[level] as string | undefined);
    if (v === undefined) continue;
    path = path === '' ? `${level}:${v.toLowerCase()}` : `${path}/${level}:${v.toLowerCase()}`;
    scopes.push(path);
  }
  return { scopes, scopePath: path };
}
