// Budget scope grammar and API-key scope_filter matching (pure; unit-tested).
//
// A budget scope is canonical `kind:value` segments joined by '/', rooted at the tenant:
// `tenant:<id>` first, then optional workspace, app, workflow, agent, toolset segments in
// that order (levels may be skipped, never repeated or reordered). Values are
// `[a-z0-9._-]`, start and end alphanumeric, at most 128 characters; no wildcards. The
// whole scope is lowercased (runtime scope paths are built lowercase), so
// `tenant:acme/workspace:Eng` and `tenant:acme/workspace:eng` name the same ledger.
import { ApiError } from '../errors';

export const SCOPE_LEVELS = ['tenant', 'workspace', 'app', 'workflow', 'agent', 'toolset'] as const;
const VALUE_RE = /^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$/;
export const SCOPE_MAX_CHARS = 1024;

export interface ParsedScope { scope: string; tenant: string; segments: { kind: string; value: string }[] }

export function parseBudgetScope(raw: string): ParsedScope {
  const bad = (why: string) => new ApiError('INVALID_REQUEST', `Invalid scope "${raw.slice(0, 200)}": ${why}`);
  if (typeof raw !== 'string' || raw.length === 0) throw bad('empty');
  if (raw.length > SCOPE_MAX_CHARS) throw bad(`longer than ${SCOPE_MAX_CHARS} characters`);
  const scope = raw.trim().toLowerCase();
  const segments: { kind: string; value: string }[] = [];
  let lastLevel = -1;
  for (const seg of scope.split('/')) {
    const i = seg.indexOf(':');
    if (i <= 0) throw bad(`segment "${seg}" is not kind:value`);
    const kind = seg.slice(0, i);
    const value = seg.slice(i + 1);
    const level = (SCOPE_LEVELS as readonly string[]).indexOf(kind);
    if (level < 0) throw bad(`unknown scope kind "${kind}" (expected one of ${SCOPE_LEVELS.join(', ')})`);
    if (level <= lastLevel) throw bad(`kind "${kind}" is out of order (order: ${SCOPE_LEVELS.join(' → ')})`);
    if (segments.length === 0 && kind !== 'tenant') throw bad('must start with tenant:<id>');
    if (!VALUE_RE.test(value)) throw bad(`value "${value}" must be 1-128 characters of [a-z0-9._-], starting and ending alphanumeric`);
    lastLevel = level;
    segments.push({ kind, value });
  }
  return { scope, tenant: segments[0].value, segments };
}

export { scopeFilterAllows, requireScopeAllowed } from '../auth/scopeFilter';
