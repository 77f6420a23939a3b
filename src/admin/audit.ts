// Audit log: exactly one AuditLogEntry per admin-plane request (plus the runtime's
// admin-key releaseReservation), written by ONE pipelined Redis write issued after the
// response was handed to the socket, never failing the request (docs/decisions.md D-AUDIT).
//
// Storage (src/store/keys.ts):
//   auditEntry(log_id)        string, the entry JSON, TTL = the entry's retention tier
//   auditAll()                zset log_id by timestamp ms (every entry)
//   auditByTenant(tenant_id)  zset per audit tenant_id that fits the spec's tenant-id
//                             grammar, plus the __admin__ / __unauth__ sentinels
//   auditTenantOther()        ONE zset for every other tenant_id value (junk, over-long,
//                             [REDACTED]): request values cannot mint keys
//   auditByKey(key_id)        zset per API key
//   auditByTrace(trace_id)    zset per trace id
// log_id is derived from request_id (`log_<hex>`), so a request_id filter is one GET.
// Indexes are trimmed by time on every write (ZREMRANGEBYSCORE of the entries older than
// the tier's retention) and the per-tenant/key/trace ones expire with it (PEXPIRE), so an
// index nobody writes to any more disappears; an entry that expired before its index
// member was trimmed is skipped on read. Every request-derived string of a row is scrubbed
// of secrets in one pass over the finished row (scrubEntry, docs/decisions.md DP2).
import type { Redis } from 'ioredis';
import { keys } from '../store/keys';
import { stringify } from '../json';
import type { Config } from '../config';
import type { Logger } from 'pino';
import type { ResponseInfo } from '../http/types';

export const ADMIN_TENANT = '__admin__';
export const UNAUTH_TENANT = '__unauth__';
const DAY_MS = 86_400_000;

export interface AuditEntry {
  log_id: string;
  timestamp: string;
  tenant_id: string;
  key_id?: string;
  user_agent?: string;
  source_ip?: string;
  operation: string;
  resource_type?: string;
  resource_id?: string;
  request_id?: string;
  trace_id?: string;
  status: number;
  error_code?: string;
  subject?: Record<string, unknown>;
  action?: Record<string, unknown>;
  amount?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

export const logIdFor = (requestId: string) => `log_${requestId.replace(/^req_/, '')}`;

import { makeScrubber, scrubEntry } from './auditScrub';

// ---------------------------------------------------------------- index keys

/** The admin spec's tenant-id grammar (Tenant / TenantCreateRequest.tenant_id:
 *  pattern ^[a-z0-9-]+$, minLength 3, maxLength 64). */
const TENANT_ID_RE = /^[a-z0-9-]{3,64}$/;

/** The tenant index a row with this stored tenant_id lives in: its own zset for a
 *  grammar-valid id or a sentinel, else the one shared zset (whose readers filter by the
 *  stored value), so arbitrary request values cannot create keys. */
export function tenantIndexKey(tenantId: string): string {
  if (tenantId === ADMIN_TENANT || tenantId === UNAUTH_TENANT || TENANT_ID_RE.test(tenantId)) {
    return keys.auditByTenant(tenantId);
  }
  return keys.auditTenantOther();
}

// ---------------------------------------------------------------- building the entry

/** Resource type (and the path parameter naming its id) per path family. */
const RESOURCE_BY_PATH: [RegExp, string, string | null][] = [
  [/^\/v1\/admin\/tenants(?:\/bulk-action)?$/, 'tenant', null],
  [/^\/v1\/admin\/tenants\/([^/]+)$/, 'tenant', 'tenant_id'],
  [/^\/v1\/admin\/budgets/, 'budget', null],
  [/^\/v1\/admin\/api-keys(?:\/([^/]+))?$/, 'api_key', 'key_id'],
  [/^\/v1\/auth\/validate$/, 'api_key', null],
  [/^\/v1\/admin\/policies(?:\/([^/]+))?$/, 'policy', 'policy_id'],
  [/^\/v1\/admin\/webhooks(?:\/bulk-action)?$/, 'webhook', null],
  [/^\/v1\/(?:admin\/)?webhooks\/([^/]+)(?:\/.*)?$/, 'webhook', 'subscription_id'],
  [/^\/v1\/webhooks$/, 'webhook', null],
  [/^\/v1\/admin\/config\//, 'config', null],
  [/^\/v1\/reservations\/([^/]+)\/release$/, 'reservation', 'reservation_id'],
];

function inferResource(info: ResponseInfo): { type?: string; id?: string } {
  const path = info.path;
  const body = (info.responseBody && typeof info.responseBody === 'object' ? info.responseBody : {}) as Record<string, any>;
  for (const [re, type, param] of RESOURCE_BY_PATH) {
    const m = re.exec(path);
    if (!m) continue;
    let id: string | undefined = param && m[1] && m[1] !== 'bulk-action' ? decodeURIComponentSafe(m[1]) : undefined;
    if (!id) {
      if (type === 'tenant') id = str(body.tenant_id);
      else if (type === 'budget') id = str(body.ledger_id) ?? str(info.query.scope);
      else if (type === 'api_key') id = str(body.key_id);
      else if (type === 'policy') id = str(body.policy_id);
      else if (type === 'webhook') id = str(body.subscription?.subscription_id) ?? str(body.subscription_id);
      else if (type === 'config') id = path.split('/').pop();
    }
    return { type, id };
  }
  return {};
}

function decodeURIComponentSafe(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** Which tenant a request is attributed to, and as which actor (see D-AUDIT). */
function attribution(info: ResponseInfo): { tenantId: string; keyId?: string; actorType?: string; target?: string } {
  const p = info.principal;
  if (!p || p.kind === 'public') return { tenantId: UNAUTH_TENANT };
  if (p.kind === 'tenant') return { tenantId: p.tenantId, keyId: p.keyId, actorType: 'api_key' };
  // admin key
  const explicit = info.audit.tenantId;
  if (explicit) return { tenantId: explicit, actorType: 'admin_on_behalf_of' };
  const dual = !!info.op && info.op.security.some((alt) => alt.includes('ApiKeyAuth'));
  if (dual) {
    const body = (info.requestBody && typeof info.requestBody === 'object' ? info.requestBody : {}) as Record<string, unknown>;
    const target = str(info.query.tenant_id) ?? str(body.tenant_id) ?? str(info.query.tenant);
    if (target) return { tenantId: target, actorType: 'admin_on_behalf_of' };
    if (info.op!.plane === 'runtime') return { tenantId: ADMIN_TENANT, actorType: 'admin_on_behalf_of' };
  }
  const tenantPath = /^\/v1\/admin\/tenants\/([^/]+)$/.exec(info.path);
  return { tenantId: ADMIN_TENANT, actorType: 'admin', target: tenantPath ? decodeURIComponentSafe(tenantPath[1]) : undefined };
}

/** The row of one response. Fields are copied as they came; scrubEntry at the end is the
 *  only place secrets are removed and strings bounded. */
export function buildEntry(info: ResponseInfo, nowMs: number, scrub: (s: string) => string): AuditEntry {
  const who = attribution(info);
  const inferred = inferResource(info);
  const operation = info.op?.operationId ?? `${info.method}:${info.path}`;
  const metadata: Record<string, unknown> = {
    method: info.method,
    path: info.path,
    duration_ms: Math.round(info.durationMs * 1000) / 1000,
  };
  if (who.actorType) metadata.actor_type = who.actorType;
  if (who.target) metadata.target_tenant_id = who.target;
  if (info.errorMessage) metadata.error_message = info.errorMessage;
  if (info.audit.metadata) Object.assign(metadata, info.audit.metadata);
  const e: AuditEntry = {
    log_id: logIdFor(info.requestId),
    timestamp: new Date(nowMs).toISOString(),
    tenant_id: who.tenantId,
    operation,
    status: info.status,
    request_id: info.requestId,
    trace_id: info.traceId,
  };
  if (who.keyId) e.key_id = who.keyId;
  if (info.userAgent) e.user_agent = info.userAgent;
  if (info.sourceIp) e.source_ip = info.sourceIp;
  const rType = info.audit.resourceType ?? inferred.type;
  const rId = info.audit.resourceId ?? inferred.id;
  if (rType) e.resource_type = rType;
  if (rId) e.resource_id = rId;
  if (info.errorCode) e.error_code = info.errorCode;
  if (info.audit.subject) e.subject = info.audit.subject;
  if (info.audit.action) e.action = info.audit.action;
  if (info.audit.amount) e.amount = info.audit.amount;
  e.metadata = metadata;
  return scrubEntry(e, scrub);
}

// ---------------------------------------------------------------- writing

export interface AuditWriterOptions {
  redis: Redis;
  config: Config;
  log: Logger;
  adminKey?: string;
}

/** Should this response produce an audit row? Admin plane: every API request. Runtime:
 *  only the admin-key mutations — releaseReservation (admin acting on behalf of a tenant)
 *  and resetActionQuotaCounter (v0.1.26, routed on both planes; DG20). */
const RUNTIME_AUDITED = new Set(['releaseReservation', 'resetActionQuotaCounter']);
export function isAudited(info: ResponseInfo): boolean {
  if (info.plane === 'admin') return true;
  return RUNTIME_AUDITED.has(info.op?.operationId ?? '') && info.principal?.kind === 'admin';
}

/** The onResponse hook: builds the row and issues one pipelined write, fire-and-forget.
 *  Synchronous up to exec() so the write is queued on the connection before the client
 *  can issue its next request (a later listAuditLogs on the same connection sees it). */
export function createAuditRecorder(opts: AuditWriterOptions): (info: ResponseInfo) => void {
  const scrub = makeScrubber(opts.adminKey);
  const authRetMs = opts.config.auditRetentionDays * DAY_MS;
  const unauthRetMs = opts.config.auditUnauthRetentionDays * DAY_MS;
  const hold = opts.config.exportDir !== undefined;
  return (info) => {
    if (!isAudited(info)) return;
    const now = Date.now();
    const entry = buildEntry(info, now, scrub);
    const retMs = entry.tenant_id === UNAUTH_TENANT ? unauthRetMs : authRetMs;
    const p = opts.redis.pipeline();
    // stringify: a BigInt copied from a request body (int64 beyond 2^53) is written exactly
    // instead of making JSON.stringify throw and the row go missing.
    const json = stringify(entry);
    // While the export job holds records (CYCLES_EXPORT_DIR, decision DX3) the entry gets no
    // TTL and the all-index (the export's enumeration) is not trimmed here: the job sets
    // the TTL once the entry's day is exported, the retention worker trims the index.
    if (retMs > 0 && !hold) p.set(keys.auditEntry(entry.log_id), json, 'PX', retMs);
    else p.set(keys.auditEntry(entry.log_id), json);
    p.zadd(keys.auditAll(), now, entry.log_id);
    // Trim by time: the all-index keeps the longest tier; the others hold one tier each
    // (an __unauth__ row has no other tenant and no key) and are trimmed to it.
    const longest = Math.max(authRetMs, unauthRetMs);
    if (longest > 0 && !(authRetMs === 0 || unauthRetMs === 0) && !hold) p.zremrangebyscore(keys.auditAll(), '-inf', `(${now - longest}`);
    // Each index below expires one retention after its newest row, so an index nobody
    // writes to any more (a deleted tenant, a revoked key, a finished trace) goes away by
    // itself; 0 = keep forever, also for a key that got a TTL under an earlier setting.
    const expire = (k: string, ms: number) => (ms > 0 ? p.pexpire(k, ms) : p.persist(k));
    const scoped = [tenantIndexKey(entry.tenant_id)];
    if (entry.key_id) scoped.push(keys.auditByKey(entry.key_id));
    for (const k of scoped) {
      p.zadd(k, now, entry.log_id);
      if (retMs > 0) p.zremrangebyscore(k, '-inf', `(${now - retMs}`);
      expire(k, retMs);
    }
    if (entry.trace_id) {
      // A trace can mix tiers (a 401 then an authenticated retry): keep it for the longest.
      const k = keys.auditByTrace(entry.trace_id);
      p.zadd(k, now, entry.log_id);
      expire(k, authRetMs === 0 || unauthRetMs === 0 ? 0 : longest);
    }
    p.exec().then(
      (res) => {
        const failed = res?.find(([err]) => err);
        if (failed) opts.log.error({ err: failed[0], request_id: info.requestId }, 'audit write failed');
      },
      (err) => opts.log.error({ err, request_id: info.requestId }, 'audit write failed'),
    );
  };
}
