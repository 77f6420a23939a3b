// API-key scope_filter matching, enforced on both planes: a key with a non-empty filter
// reaches only the scopes its filter admits (admin ApiKey.scope_filter; decision DA4).
import { ApiError } from '../errors';

/**
 * Does a key's scope_filter admit this scope? Empty filter = everything. An entry with
 * '/' is a scope prefix (the scope itself or anything below it); otherwise an entry
 * `kind:value` admits a scope containing exactly that segment and `kind:*` any segment of
 * that kind. A bare `*` is not a wildcard (docs/decisions.md "scope_filter").
 */
export function scopeFilterAllows(filter: readonly string[], scope: string): boolean {
  if (filter.length === 0) return true;
  const s = scope.toLowerCase();
  const segs = s.split('/');
  for (const raw of filter) {
    const e = raw.trim().toLowerCase();
    if (e === '') continue;
    if (e.includes('/')) {
      if (s === e || s.startsWith(e + '/')) return true;
      continue;
    }
    const i = e.indexOf(':');
    if (i <= 0) continue;
    const kind = e.slice(0, i);
    const value = e.slice(i + 1);
    if (segs.some((g) => (value === '*' ? g.startsWith(kind + ':') : g === e))) return true;
  }
  return false;
}

export function requireScopeAllowed(filter: readonly string[], scope: string): void {
  if (!scopeFilterAllows(filter, scope)) {
    throw new ApiError('FORBIDDEN', `The API key's scope_filter does not cover scope ${scope}`);
  }
}
