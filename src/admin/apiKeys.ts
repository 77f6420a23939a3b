// API key administration: create (secret shown once), list, update, revoke, validate,
// introspect. Records use src/auth/apiKeys.ts (keyed by the secret's SHA-256; the
// authenticator re-reads the record on every request, so a revocation bites on the
// very next request in every server instance).
import type { Redis } from 'ioredis';
import { ApiError } from '../errors';
import { keys } from '../store/keys';
import {
  decodeRecord, encodeRecord, keyProblem, lookupKey, newKeyId, newKeySecret, sha256Hex,
  KEY_PREFIX_LENGTH, KEY_SECRET_PREFIX, type ApiKeyRecord,
} from '../auth/apiKeys';
import { DEFAULT_TENANT_PERMISSIONS, PERMISSIONS } from '../auth/permissions';
import type { Principal } from '../auth/authenticate';
import { paginate, parseLimit } from '../list/cursor';
import { appendEvent, appendPendingEvent, type PendingEvent } from '../events/outbox';
import { isCluster } from '../store/cluster';
import { canonicalJson, compact, hgetallMany, iso, runAdminScript, searchTerm, LIST_SCAN_MAX, type EventCtx } from './common';

/** Default lifetime of a key created without expires_at (the spec recommends 90 days). */
export const DEFAULT_KEY_TTL_MS = 90 * 24 * 60 * 60 * 1000;

export function renderApiKey(r: ApiKeyRecord, nowMs = Date.now()): Record<string, unknown> {
  // A key past expires_at reads as EXPIRED even before anything rewrites its record.
  const status = r.status === 'ACTIVE' && r.expires_at_ms > 0 && r.expires_at_ms <= nowMs ? 'EXPIRED' : r.status;
  return compact({
    key_id: r.key_id,
    tenant_id: r.tenant_id,
    key_prefix: r.key_prefix,
    name: r.name,
    description: r.description,
    permissions: r.permissions,
    scope_filter: r.scope_filter,
    status,
    created_at: iso(r.created_at_ms) ?? new Date(0).toISOString(),
    // expires_at is required on ApiKey; a legacy never-expiring record reads as the far future.
    expires_at: iso(r.expires_at_ms) ?? '9999-12-31T23:59:59.999Z',
    revoked_at: iso(r.revoked_at_ms),
    revoked_reason: r.revoked_reason,
    metadata: r.metadata,
  });
}

export function checkPermissions(perms: unknown): string[] | undefined {
  if (perms === undefined) return undefined;
  const known = new Set<string>(PERMISSIONS);
  for (const p of perms as string[]) {
    if (!known.has(p)) throw new ApiError('INVALID_REQUEST', `Unknown permission "${String(p)}"`, { permission: p });
  }
  return [...new Set(perms as string[])];
}

export async function createApiKey(redis: Redis, body: Record<string, any>, ev: EventCtx) {
  const permissions = checkPermissions(body.permissions) ?? [...DEFAULT_TENANT_PERMISSIONS];
  if (typeof body.name === 'string' && body.name.length > 256) throw new ApiError('INVALID_REQUEST', 'name must be at most 256 characters');
  let expires = Date.now() + DEFAULT_KEY_TTL_MS;
  if (body.expires_at !== undefined) {
    expires = Date.parse(body.expires_at);
    if (!Number.isFinite(expires)) throw new ApiError('INVALID_REQUEST', 'expires_at is not a valid date-time');
    if (expires <= Date.now()) throw new ApiError('INVALID_REQUEST', 'expires_at must be in the future');
  }
  const secret = newKeySecret();
  const sha = sha256Hex(secret);
  const record: ApiKeyRecord = {
    key_id: newKeyId(),
    tenant_id: body.tenant_id,
    key_prefix: secret.slice(0, KEY_PREFIX_LENGTH),
    status: 'ACTIVE',
    permissions,
    scope_filter: body.scope_filter ?? [],
    expires_at_ms: expires,
    name: body.name,
    description: body.description,
    created_at_ms: 0,
    metadata: body.metadata,
  };
  const fields = encodeRecord(record);
  delete fields.created_at_ms;
  const data = JSON.stringify({ key_id: record.key_id, key_name: record.name, new_status: 'ACTIVE', permissions });
  const tenantNotFound = { TENANT_NOT_FOUND: new ApiError('INVALID_REQUEST', `Tenant ${record.tenant_id} does not exist`, { reason: 'TENANT_NOT_FOUND' }) };
  let res: Record<string, any>;
  if (!isCluster(redis)) {
    res = await runAdminScript(redis, 'apikey_create',
      [keys.apiKeyBySecret(sha), keys.apiKeyId(record.key_id), keys.tenant(record.tenant_id),
        keys.apiKeyIndex(record.tenant_id), keys.outbox(record.tenant_id)],
      [JSON.stringify(fields), sha, JSON.stringify(ev), data], tenantNotFound);
  } else {
    // Redis Cluster: the record's slot and the tenant's differ (docs/decisions.md DK5):
    // admit (tenant ACTIVE, id in the tenant's index) → record → id mapping → event, unless
    // the tenant closed meanwhile: then the record is revoked as the cascade would have.
    const tenantKeys = [keys.tenant(record.tenant_id), keys.apiKeyIndex(record.tenant_id), keys.outbox(record.tenant_id)];
    await runAdminScript(redis, 'apikey_tenant', tenantKeys, ['admit', record.key_id, '{}', ''], tenantNotFound);
    res = await runAdminScript(redis, 'apikey_create', [keys.apiKeyBySecret(sha)], [JSON.stringify(fields), sha, '{}', '']);
    await redis.set(keys.apiKeyId(record.key_id), sha);
    try {
      await runAdminScript(redis, 'apikey_tenant', tenantKeys, ['created', record.key_id, JSON.stringify(ev), data]);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'TENANT_CLOSED') await cascadeRevokeKey(redis, record.tenant_id, record.key_id, ev);
      throw e;
    }
  }
  const stored = decodeRecord(res.record)!;
  return {
    key_id: stored.key_id,
    key_secret: secret,
    key_prefix: stored.key_prefix,
    tenant_id: stored.tenant_id,
    permissions: stored.permissions,
    created_at: iso(stored.created_at_ms)!,
    expires_at: iso(stored.expires_at_ms)!,
  };
}

async function keyShaById(redis: Redis, keyId: string): Promise<string> {
  const sha = await redis.get(keys.apiKeyId(keyId));
  if (!sha) throw new ApiError('NOT_FOUND', `API key ${keyId} not found`);
  return sha;
}

export async function changeApiKey(
  redis: Redis, keyId: string, mode: 'update' | 'revoke', body: Record<string, any> | undefined, reason: string | undefined, ev: EventCtx,
) {
  const sha = await keyShaById(redis, keyId);
  const current = decodeRecord(await redis.hgetall(keys.apiKeyBySecret(sha)));
  if (!current) throw new ApiError('NOT_FOUND', `API key ${keyId} not found`);
  const patch: Record<string, string> = {};
  if (mode === 'update' && body) {
    const perms = checkPermissions(body.permissions);
    if (perms) patch.permissions = JSON.stringify(perms);
    if (body.scope_filter !== undefined) patch.scope_filter = JSON.stringify(body.scope_filter);
    if (body.name !== undefined) patch.name = body.name;
    if (body.description !== undefined) patch.description = body.description;
    if (body.metadata !== undefined) patch.metadata = JSON.stringify(JSON.parse(canonicalJson(body.metadata)));
  }
  const res = await runKeyChange(redis, sha, current.tenant_id, [mode, JSON.stringify(patch), reason ?? '', JSON.stringify(ev)], ev);
  return decodeRecord(res.record)!;
}

/** Close cascade: revoke one key if still ACTIVE (no event otherwise). */
export async function cascadeRevokeKey(redis: Redis, tenant: string, keyId: string, ev: EventCtx): Promise<boolean> {
  const sha = await redis.get(keys.apiKeyId(keyId));
  if (!sha) return false;
  const res = await runKeyChange(redis, sha, tenant, ['cascade', '{}', '', JSON.stringify(ev)], ev);
  return res.changed === true;
}

/** apikey_update.lua in one step on a single Redis; on a Redis Cluster (DK5) the tenant check
 *  first, then the record's slot alone, then the event into the tenant's outbox. */
async function runKeyChange(redis: Redis, sha: string, tenant: string, args: string[], ev: EventCtx): Promise<Record<string, any>> {
  if (!isCluster(redis)) {
    return runAdminScript(redis, 'apikey_update', [keys.apiKeyBySecret(sha), keys.tenant(tenant), keys.outbox(tenant)], args);
  }
  if (args[0] !== 'cascade' && (await redis.hget(keys.tenant(tenant), 'status')) === 'CLOSED') {
    throw new ApiError('TENANT_CLOSED', 'The owning tenant is CLOSED');
  }
  const res = await runAdminScript(redis, 'apikey_update', [keys.apiKeyBySecret(sha)], args);
  if (res.event) await appendPendingEvent(redis, tenant, res.event as PendingEvent, ev);
  return res;
}

const KEY_SORTS: Record<string, (r: ApiKeyRecord) => string | bigint> = {
  key_id: (r) => r.key_id,
  name: (r) => r.name ?? '',
  tenant_id: (r) => r.tenant_id,
  status: (r) => String(renderApiKey(r).status),
  created_at: (r) => BigInt(r.created_at_ms),
  expires_at: (r) => BigInt(r.expires_at_ms),
};

export async function listApiKeys(redis: Redis, q: Record<string, any>) {
  const search = searchTerm(q.search);
  const sortBy = String(q.sort_by ?? 'created_at');
  if (!KEY_SORTS[sortBy]) throw new ApiError('INVALID_REQUEST', `sort_by ${sortBy} is not supported`);
  const tenants = q.tenant_id ? [String(q.tenant_id)] : (await redis.smembers(keys.tenants())).sort();
  const ids: string[] = [];
  for (const t of tenants) {
    ids.push(...await redis.zrange(keys.apiKeyIndex(t), 0, LIST_SCAN_MAX - 1));
    if (ids.length > LIST_SCAN_MAX) throw new ApiError('INVALID_REQUEST', `More than ${LIST_SCAN_MAX} keys match; narrow the query with tenant_id`);
  }
  const shas = ids.length ? await redis.mget(ids.map((id) => keys.apiKeyId(id))) : [];
  const records = (await hgetallMany(redis, shas.filter((s): s is string => !!s).map((s) => keys.apiKeyBySecret(s))))
    .map(decodeRecord).filter((r): r is ApiKeyRecord => r !== null);
  const now = Date.now();
  const rows = records.filter((r) =>
    (!q.status || renderApiKey(r, now).status === q.status)
    && (!search || r.key_id.toLowerCase().includes(search) || (r.name ?? '').toLowerCase().includes(search)));
  const page = paginate(rows, {
    sort: { name: sortBy, value: KEY_SORTS[sortBy] },
    dir: q.sort_dir ?? 'desc',
    id: (r) => r.key_id,
    limit: parseLimit(q.limit),
    filters: { tenant_id: q.tenant_id, status: q.status, search },
    cursor: q.cursor,
  });
  return compact({ keys: page.rows.map((r) => renderApiKey(r, now)), has_more: page.hasMore, next_cursor: page.nextCursor });
}

/** validateApiKey: always 200; reasons KEY_NOT_FOUND, INVALID_KEY, KEY_REVOKED,
 *  KEY_EXPIRED, TENANT_NOT_FOUND, TENANT_SUSPENDED, TENANT_CLOSED. A failure is recorded
 *  as api_key.auth_failed in the owning tenant's outbox when the tenant is known. */
export async function validateApiKey(redis: Redis, secret: string, ev: EventCtx) {
  if (typeof secret !== 'string' || !secret.startsWith(KEY_SECRET_PREFIX) || secret.length > 256) {
    return { valid: false, tenant_id: '', reason: 'INVALID_KEY' };
  }
  const r = await lookupKey(redis, secret);
  const now = Date.now();
  let reason: string | null = keyProblem(r, now);
  let tstatus: string | null = null;
  if (!reason && r) {
    tstatus = await redis.hget(keys.tenant(r.tenant_id), 'status');
    if (tstatus === 'SUSPENDED') reason = 'TENANT_SUSPENDED';
    else if (tstatus === 'CLOSED') reason = 'TENANT_CLOSED';
    else if (tstatus === null && !(await redis.sismember(keys.tenants(), r.tenant_id))) reason = 'TENANT_NOT_FOUND';
  }
  if (!r) return { valid: false, tenant_id: '', reason: reason ?? 'KEY_NOT_FOUND' };
  if (reason) {
    await appendEvent(redis, r.tenant_id, 'api_key.auth_failed',
      { key_id: r.key_id, key_name: r.name, failure_reason: reason.toLowerCase() }, ev);
    return { valid: false, tenant_id: r.tenant_id, key_id: r.key_id, reason };
  }
  return compact({
    valid: true,
    tenant_id: r.tenant_id,
    key_id: r.key_id,
    permissions: r.permissions,
    scope_filter: r.scope_filter,
    expires_at: iso(r.expires_at_ms),
  });
}

const any = (g: ReadonlySet<string>, ...ps: string[]) => ps.some((p) => g.has(p));

/** introspectAuth (normative): capabilities per the AuthIntrospectResponse table. */
export function introspect(p: Principal): Record<string, unknown> {
  if (p.kind === 'admin') {
    const all = ['view_overview', 'view_budgets', 'view_events', 'view_webhooks', 'view_audit', 'view_tenants',
      'view_api_keys', 'view_policies', 'view_reservations', 'manage_budgets', 'manage_policies', 'manage_webhooks',
      'manage_tenants', 'manage_api_keys', 'manage_reservations'];
    return { authenticated: true, auth_type: 'admin', permissions: ['*'], capabilities: Object.fromEntries(all.map((c) => [c, true])) };
  }
  if (p.kind !== 'tenant') throw new ApiError('UNAUTHORIZED', 'Not authenticated');
  const g = p.permissions;
  const capabilities = {
    view_overview: false,
    view_budgets: any(g, 'budgets:read', 'admin:read', 'admin:budgets:read'),
    view_events: any(g, 'events:read', 'admin:read', 'admin:events:read'),
    view_webhooks: any(g, 'webhooks:read', 'admin:read', 'admin:webhooks:read'),
    view_audit: false,
    view_tenants: false,
    view_api_keys: false,
    view_policies: any(g, 'policies:read', 'admin:read', 'admin:policies:read'),
    view_reservations: any(g, 'reservations:list', 'reservations:create', 'reservations:commit', 'reservations:release',
      'reservations:extend', 'admin:read'),
    manage_budgets: any(g, 'budgets:write', 'admin:write', 'admin:budgets:write'),
    manage_policies: any(g, 'policies:write', 'admin:write', 'admin:policies:write'),
    manage_webhooks: any(g, 'webhooks:write', 'admin:write', 'admin:webhooks:write'),
    manage_tenants: false,
    manage_api_keys: false,
    manage_reservations: any(g, 'reservations:create', 'reservations:commit', 'reservations:release', 'reservations:extend', 'admin:write'),
  };
  return compact({
    authenticated: true,
    auth_type: 'tenant',
    permissions: [...g],
    capabilities,
    tenant_id: p.tenantId,
    scope_filter: p.scopeFilter.length > 0 ? [...p.scopeFilter] : undefined,
  });
}
