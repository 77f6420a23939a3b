// Turns request headers into a principal for one operation, using the operation's
// security alternatives from the generated table. Rules (runtime AUTH & TENANCY, admin
// AdminKeyAuth description):
//  - `security: []` → public.
//  - An operation that accepts AdminKeyAuth and carries X-Admin-API-Key is judged on
//    the admin key alone (a wrong admin key is 401 even with a valid tenant key).
//  - Otherwise an operation that accepts ApiKeyAuth is judged on X-Cycles-API-Key.
//  - No acceptable credential → 401; a valid key lacking the permission → 403.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import type { Plane } from '../config';
import { lookupKey, keyProblem, type ApiKeyRecord } from './apiKeys';
import type { ApiKeyCache } from './keyCache';
import { REQUIRED_PERMISSION, holds, type Permission } from './permissions';

export type Principal =
  | { kind: 'public' }
  | { kind: 'admin' }
  | {
      kind: 'tenant';
      tenantId: string;
      keyId: string;
      permissions: ReadonlySet<string>;
      scopeFilter: readonly string[];
    };

export interface AuthOp {
  operationId: string;
  plane: Plane;
  security: string[][];
}

export class Authenticator {
  private readonly adminDigest: Buffer | null;

  constructor(
    private readonly redis: Redis,
    adminKey: string | undefined,
    /** revocation-safe record cache (src/auth/keyCache.ts); absent → read Redis each time */
    private readonly cache?: ApiKeyCache,
  ) {
    this.adminDigest = adminKey ? digest(adminKey) : null;
  }

  isAdminKey(candidate: string): boolean {
    // Compare fixed-length digests so timing does not leak the key's length or prefix.
    return this.adminDigest !== null && timingSafeEqual(digest(candidate), this.adminDigest);
  }

  /** `seen`, when given, receives the caller's principal as soon as the credential is
   *  known to be valid, so a later 403 (missing permission) can still be attributed. */
  async authenticate(
    op: AuthOp,
    headers: Record<string, string | string[] | undefined>,
    seen?: { principal?: Principal },
  ): Promise<Principal> {
    if (op.security.length === 0) return { kind: 'public' };
    const schemes = new Set(op.security.flat());
    const adminHeader = header(headers, 'x-admin-api-key');
    const keyHeader = header(headers, 'x-cycles-api-key');

    if (schemes.has('AdminKeyAuth') && adminHeader !== undefined) {
      if (!this.isAdminKey(adminHeader)) throw new ApiError('UNAUTHORIZED', 'Invalid admin API key');
      if (seen) seen.principal = { kind: 'admin' };
      return { kind: 'admin' };
    }
    if (schemes.has('ApiKeyAuth') && keyHeader !== undefined) {
      const record = this.cache ? await this.cache.lookup(keyHeader) : await lookupKey(this.redis, keyHeader);
      const problem = keyProblem(record, Date.now());
      if (problem || !record) throw new ApiError('UNAUTHORIZED', `Invalid API key (${problem})`);
      const principal = tenantPrincipal(record);
      if (seen) seen.principal = principal;
      requirePermission(op, principal.permissions);
      return principal;
    }
    const accepted = [...schemes].map((s) => (s === 'AdminKeyAuth' ? 'X-Admin-API-Key' : 'X-Cycles-API-Key'));
    throw new ApiError('UNAUTHORIZED', `Missing credential: this operation requires ${accepted.join(' or ')}`);
  }
}

// Cached records (src/auth/keyCache.ts) are the same object on every request; so is
// their principal, instead of a fresh permission Set per request.
type TenantPrincipal = Extract<Principal, { kind: 'tenant' }>;
const principals = new WeakMap<ApiKeyRecord, TenantPrincipal>();
function tenantPrincipal(record: ApiKeyRecord): TenantPrincipal {
  let p = principals.get(record);
  if (!p) {
    p = Object.freeze({
      kind: 'tenant' as const,
      tenantId: record.tenant_id,
      keyId: record.key_id,
      permissions: new Set(record.permissions) as ReadonlySet<string>,
      scopeFilter: record.scope_filter,
    });
    principals.set(record, p);
  }
  return p;
}

function requirePermission(op: AuthOp, granted: ReadonlySet<string>): void {
  const needed = REQUIRED_PERMISSION[`${op.plane}:${op.operationId}`];
  if (!needed) return;
  const anyOf: Permission[] = Array.isArray(needed) ? needed : [needed];
  if (anyOf.some((p) => holds(granted, p))) return;
  // INSUFFICIENT_PERMISSIONS exists only in the admin ErrorCode enum; the runtime spec
  // answers authorisation failures with FORBIDDEN.
  const code = op.plane === 'admin' ? 'INSUFFICIENT_PERMISSIONS' : 'FORBIDDEN';
  throw new ApiError(code, `API key lacks permission ${anyOf.join(' or ')}`);
}

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

const digest = (s: string) => createHash('sha256').update(s).digest();
