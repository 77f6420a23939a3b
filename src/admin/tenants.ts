// Tenants: create (idempotent on identical content), read, list, update (status
// lifecycle; a CLOSE runs the cascade in src/admin/cascade.ts after the flip).
import type { Redis } from 'ioredis';
import { isCluster } from '../store/cluster';
import { ApiError } from '../errors';
import { keys } from '../store/keys';
import { paginate, parseLimit } from '../list/cursor';
import { canonicalJson, compact, hgetallMany, iso, runAdminScript, searchTerm, LIST_SCAN_MAX, type EventCtx } from './common';

export const TENANT_DEFAULTS = {
  default_commit_overage_policy: 'ALLOW_IF_AVAILABLE',
  default_reservation_ttl_ms: '60000',
  max_reservation_ttl_ms: '3600000',
  max_reservation_extensions: '10',
  reservation_expiry_policy: 'AUTO_RELEASE',
  observe_mode: 'ENFORCE',
} as const;

const NUMERIC = ['default_reservation_ttl_ms', 'max_reservation_ttl_ms', 'max_reservation_extensions'] as const;

/** Tenant hash → the admin spec's Tenant; `observe_mode` (v0.1.26) only with the flag on, as
 *  the v0.1.25 Tenant is a closed schema (decision DG1). */
export function renderTenant(h: Record<string, string>, v126: boolean): Record<string, unknown> {
  return compact({
    tenant_id: h.tenant_id,
    name: h.name ?? h.tenant_id,
    status: h.status,
    parent_tenant_id: h.parent_tenant_id || undefined,
    default_commit_overage_policy: h.default_commit_overage_policy || undefined,
    default_reservation_ttl_ms: h.default_reservation_ttl_ms ? Number(h.default_reservation_ttl_ms) : undefined,
    max_reservation_ttl_ms: h.max_reservation_ttl_ms ? Number(h.max_reservation_ttl_ms) : undefined,
    max_reservation_extensions: h.max_reservation_extensions ? Number(h.max_reservation_extensions) : undefined,
    reservation_expiry_policy: h.reservation_expiry_policy || undefined,
    metadata: h.metadata ? JSON.parse(h.metadata) : undefined,
    observe_mode: v126 ? h.observe_mode || 'ENFORCE' : undefined,
    created_at: iso(h.created_at_ms) ?? new Date(0).toISOString(),
    updated_at: iso(h.updated_at_ms),
    suspended_at: iso(h.suspended_at_ms),
    closed_at: iso(h.closed_at_ms),
  });
}

/** The stored field set a create request means (defaults applied). */
function createFields(body: Record<string, any>): Record<string, string> {
  const f: Record<string, string> = { tenant_id: body.tenant_id, name: body.name, status: 'ACTIVE' };
  for (const [k, def] of Object.entries(TENANT_DEFAULTS)) f[k] = body[k] !== undefined ? String(body[k]) : def;
  if (body.parent_tenant_id !== undefined) f.parent_tenant_id = body.parent_tenant_id;
  if (body.metadata !== undefined) f.metadata = canonicalJson(body.metadata);
  return f;
}

const CONTENT_FIELDS = ['name', 'parent_tenant_id', 'metadata', ...Object.keys(TENANT_DEFAULTS)];

export async function createTenant(redis: Redis, body: Record<string, any>, ev: EventCtx): Promise<{ created: boolean; tenant: Record<string, string> }> {
  if (body.metadata && Object.keys(body.metadata).length > 32) {
    throw new ApiError('INVALID_REQUEST', 'metadata may hold at most 32 entries');
  }
  const fields = createFields(body);
  const data = JSON.stringify({ tenant_id: body.tenant_id, new_status: 'ACTIVE', changed_fields: [] });
  const cluster = isCluster(redis);
  const res = await runAdminScript(redis, 'tenant_create', cluster
    ? [keys.tenant(body.tenant_id), keys.outbox(body.tenant_id)]
    : [keys.tenant(body.tenant_id), keys.tenantIndex(), keys.tenants(), keys.outbox(body.tenant_id)],
  [JSON.stringify(fields), JSON.stringify(ev), data]);
  if (cluster) {
    // the registry lives in another slot: added after the record, on every call (DK6)
    const h = (res.created ?? res.existing) as Record<string, string>;
    await Promise.all([
      redis.zadd(keys.tenantIndex(), 'NX', h.created_at_ms ?? String(Date.now()), body.tenant_id),
      redis.sadd(keys.tenants(), body.tenant_id),
    ]);
  }
  if (res.created) return { created: true, tenant: res.created };
  const stored = res.existing as Record<string, string>;
  // Idempotent repeat only when every field the request determines is what is stored.
  const differs = CONTENT_FIELDS.filter((k) => (stored[k] ?? (k === 'observe_mode' ? 'ENFORCE' : undefined)) !== fields[k]);
  if (differs.length > 0) {
    throw new ApiError('DUPLICATE_RESOURCE', `Tenant ${body.tenant_id} already exists with different content`, { conflicting_fields: differs });
  }
  return { created: false, tenant: stored };
}

export async function getTenantHash(redis: Redis, tenant: string): Promise<Record<string, string> | null> {
  const h = await redis.hgetall(keys.tenant(tenant));
  return h && h.tenant_id ? h : null;
}

export async function requireTenant(redis: Redis, tenant: string): Promise<Record<string, string>> {
  const h = await getTenantHash(redis, tenant);
  if (!h) throw new ApiError('TENANT_NOT_FOUND', `Tenant ${tenant} not found`);
  return h;
}

export interface TenantPatchResult { tenant: Record<string, string>; closedNow: boolean; alreadyClosed: boolean }

export async function updateTenant(redis: Redis, tenant: string, body: Record<string, any>, ev: EventCtx): Promise<TenantPatchResult> {
  const patch: Record<string, string> = {};
  for (const k of ['name', 'status', 'default_commit_overage_policy', 'observe_mode', ...NUMERIC]) {
    if (body[k] !== undefined) patch[k] = String(body[k]);
  }
  if (body.metadata !== undefined) {
    for (const v of Object.values(body.metadata)) {
      if (typeof v !== 'string') throw new ApiError('INVALID_REQUEST', 'metadata values must be strings');
    }
    if (Object.keys(body.metadata).length > 32) throw new ApiError('INVALID_REQUEST', 'metadata may hold at most 32 entries');
    patch.metadata = canonicalJson(body.metadata);
  }
  if (patch.name !== undefined && patch.name.length > 256) throw new ApiError('INVALID_REQUEST', 'name must be at most 256 characters');
  const correlation = `tenant_close_cascade:${tenant}:${ev.request_id}`;
  const res = await runAdminScript(redis, 'tenant_update',
    [keys.tenant(tenant), keys.outbox(tenant), keys.closeCascade(tenant), keys.budgetIndex(tenant)],
    [JSON.stringify(patch), JSON.stringify(ev), `{t:${tenant}}:budget:`, correlation]);
  return { tenant: res.tenant, closedNow: res.closed_now === true, alreadyClosed: res.already_closed === true };
}

const TENANT_SORTS = {
  tenant_id: (h: Record<string, string>) => h.tenant_id,
  name: (h: Record<string, string>) => h.name ?? '',
  status: (h: Record<string, string>) => h.status ?? '',
  created_at: (h: Record<string, string>) => BigInt(h.created_at_ms ?? '0'),
} as const;

/** `v126` off: the observe_mode filter is accepted and ignored (the base spec's additive-parameter
 *  guarantee for servers without the extension). */
export async function listTenants(redis: Redis, q: Record<string, any>, v126: boolean) {
  const search = searchTerm(q.search);
  const sortBy = (q.sort_by ?? 'created_at') as keyof typeof TENANT_SORTS;
  if (!TENANT_SORTS[sortBy]) throw new ApiError('INVALID_REQUEST', `sort_by ${String(q.sort_by)} is not supported`);
  const dir = q.sort_dir ?? 'desc';
  const observe = v126 && q.observe_mode ? String(q.observe_mode) : undefined;
  if (observe && !['DISABLED', 'OBSERVE', 'ENFORCE'].includes(observe)) {
    throw new ApiError('INVALID_REQUEST', 'observe_mode must be one of DISABLED, OBSERVE, ENFORCE');
  }
  const ids = await redis.zrange(keys.tenantIndex(), 0, LIST_SCAN_MAX - 1);
  const rows = (await hgetallMany(redis, ids.map((id) => keys.tenant(id)))).filter((h) =>
    (!q.status || h.status === q.status)
    && (!q.parent_tenant_id || h.parent_tenant_id === q.parent_tenant_id)
    && (!observe || (h.observe_mode || 'ENFORCE') === observe)
    && (!search || h.tenant_id.toLowerCase().includes(search) || (h.name ?? '').toLowerCase().includes(search)));
  const page = paginate(rows, {
    sort: { name: sortBy, value: TENANT_SORTS[sortBy] },
    dir,
    id: (h) => h.tenant_id,
    limit: parseLimit(q.limit),
    filters: { status: q.status, parent_tenant_id: q.parent_tenant_id, observe_mode: observe, search },
    cursor: q.cursor,
  });
  return compact({ tenants: page.rows.map((h) => renderTenant(h, v126)), has_more: page.hasMore, next_cursor: page.nextCursor });
}
